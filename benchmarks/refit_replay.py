"""Refit rules compared on one fixed stream of transitions: a paired, low-noise look at model error.

A LOOP run's replay buffer holds its transitions in the order they were collected. This replays LOOP's
refit schedule on that stream (first fit at ``--start`` steps, then a refit every ``--freq`` steps on
everything collected so far, capped at ``--max-gradient-steps`` updates, as LOOP does) once per refit
rule, from the same initial weights, and records at every refit the elite error on the transitions
collected since the previous refit, before refitting (``fresh_mse``: data the model has never seen).
Both rules see exactly the same data, so their difference is not the noise of two diverging runs.

  python benchmarks/refit_replay.py BUFFER.pkl --env Hopper-v5 [--seeds 0 1] [--until 15000]

BUFFER.pkl: a checkpoint's ``replay_buffer_rows.pkl`` (``python -m sb3_loop train --checkpoint-dir``,
e.g. under a ``benchmarks/compare.py`` run folder) or a replay buffer saved with SB3's
``save_replay_buffer``. Writes ``benchmarks/results/refit_replay_<env>.md`` and ``.png``.
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path

import numpy as np
import torch

from sb3_loop.dynamics import EnsembleTrainingConfig, ProbabilisticEnsemble, train_ensemble
from sb3_loop.dynamics.training import REFIT_SELECTIONS

RESULTS = Path(__file__).resolve().parent / "results"
WINDOW = 2500


def load_transitions(path: Path) -> dict[str, np.ndarray]:
    """The stored transitions of a pickled replay buffer, in collection order, flattened over envs."""
    with open(path, "rb") as file:
        data = pickle.load(file)
    buffer = data["buffer"] if isinstance(data, dict) and "buffer" in data else data
    rows = buffer.buffer_size if buffer.full else buffer.pos
    if buffer.full:
        raise ValueError(f"{path}: the buffer has wrapped around; its collection order is lost")

    def flat(array: np.ndarray) -> np.ndarray:
        array = np.asarray(array[:rows], dtype=np.float32)
        return array.reshape(rows * buffer.n_envs, -1)

    return {
        "obs": flat(buffer.observations),
        "action": flat(buffer.actions),
        "reward": flat(buffer.rewards).reshape(-1),
        "next_obs": flat(buffer.next_observations),
    }


def replay(data: dict[str, np.ndarray], rule: str, seed: int, args: argparse.Namespace) -> list[dict[str, float]]:
    torch.manual_seed(seed)
    obs_dim, action_dim = data["obs"].shape[1], data["action"].shape[1]
    model = ProbabilisticEnsemble(obs_dim, action_dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    config = EnsembleTrainingConfig(max_gradient_steps=args.max_gradient_steps, refit_selection=rule)
    log, previous = [], 0
    for step in range(args.start, min(args.until, len(data["obs"])) + 1, args.freq):
        ids = np.arange(step)
        stats = train_ensemble(
            model, optimizer, *(data[key][:step] for key in ("obs", "action", "reward", "next_obs")),
            config=config, generator=generator, indices=ids, fresh=ids >= previous,
        )  # fmt: skip
        previous = step
        log.append({"step": step, "fresh_mse": stats.fresh_mse, "holdout_mse": float(np.mean(stats.holdout_mse[:5])),
                    "kept_previous": stats.kept_previous})  # fmt: skip
    return log


def summarize(logs: dict[tuple[str, int], list[dict]], args: argparse.Namespace, seconds: float) -> str:
    seeds = sorted({seed for _, seed in logs})
    last = max(entry["step"] for log in logs.values() for entry in log)
    windows = [(a, min(a + WINDOW, last)) for a in range(args.start, last, WINDOW)]

    def mean_fresh(rule: str, seed: int, window: tuple[int, int]) -> float:
        log = logs[(rule, seed)]
        values = [e["fresh_mse"] for e in log if e["fresh_mse"] is not None and window[0] < e["step"] <= window[1]]
        return float(np.mean(values)) if values else float("nan")

    lines = [
        f"# Refit rules on one fixed stream of transitions: {args.env}",
        "",
        f"Command: `python benchmarks/refit_replay.py BUFFER --env {args.env} --seeds {' '.join(map(str, seeds))} "
        f"--start {args.start} --until {args.until} --freq {args.freq} --max-gradient-steps {args.max_gradient_steps}`",
        f"(buffer: {args.buffer_label}; {seconds:.0f} s on one thread). Paper-sized ensemble (7 members, 4x200),",
        "first fit at the first step shown, then a refit every "
        f"{args.freq} steps capped at {args.max_gradient_steps} updates, as LOOP does.",
        "",
        "`fresh_mse`: elite one-step error on the transitions collected since the previous refit, measured",
        "before refitting (never-seen data), averaged over the refits in each window; in units of the",
        "training targets' standard deviation. Same data and same initial weights for both rules (per seed).",
        "",
        "| window (env steps) | "
        + " | ".join(f"{rule} (seeds {', '.join(map(str, seeds))})" for rule in args.rules)
        + " | ratio keep_better / best_epoch |",
        "|---|" + "---|" * (len(args.rules) + 1),
    ]
    for window in windows:
        cells, means = [], {}
        for rule in args.rules:
            values = [mean_fresh(rule, seed, window) for seed in seeds]
            means[rule] = float(np.mean(values))
            cells.append(f"{means[rule]:.4f} ({' / '.join(f'{v:.4f}' for v in values)})")
        ratio = means.get("keep_better", np.nan) / means.get("best_epoch", np.nan)
        lines.append(f"| {window[0]}-{window[1]} | " + " | ".join(cells) + f" | {ratio:.3f} |")
    kept = {rule: np.mean([np.mean([e["kept_previous"] for e in logs[(rule, s)][1:]]) for s in seeds]) for rule in args.rules}
    lines += ["", "Members (of 7) that kept their pre-refit weights, mean per refit: "
              + ", ".join(f"{rule} {value:.2f}" for rule, value in kept.items()), ""]  # fmt: skip
    return "\n".join(lines)


def plot(logs: dict[tuple[str, int], list[dict]], path: Path, env: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    colors = {"best_epoch": "tab:blue", "keep_better": "tab:orange"}
    for (rule, seed), log in sorted(logs.items()):
        entries = [e for e in log if e["fresh_mse"] is not None]
        ax.plot([e["step"] for e in entries], [e["fresh_mse"] for e in entries], "-" if seed == 0 else "--",
                color=colors.get(rule), lw=0.8, label=f"{rule} seed {seed}")  # fmt: skip
    ax.set(title=f"{env}: fresh_mse on one replayed stream", xlabel="env steps", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("buffer", type=Path)
    parser.add_argument("--env", required=True, help="env id the buffer comes from (for the report's name)")
    parser.add_argument("--buffer-label", default=None, help="how the report names the buffer's origin")
    parser.add_argument("--rules", nargs="+", default=list(REFIT_SELECTIONS), choices=REFIT_SELECTIONS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--start", type=int, default=1000)
    parser.add_argument("--until", type=int, default=20000)
    parser.add_argument("--freq", type=int, default=250)
    parser.add_argument("--max-gradient-steps", type=int, default=100)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    args.buffer_label = args.buffer_label or args.buffer.name
    torch.set_num_threads(1)
    data = load_transitions(args.buffer)
    start = time.perf_counter()
    logs = {}
    for seed in args.seeds:
        for rule in args.rules:
            logs[(rule, seed)] = replay(data, rule, seed, args)
            print(f"{rule} seed {seed}: {len(logs[(rule, seed)])} refits, {time.perf_counter() - start:.0f} s", flush=True)
    output = args.output or RESULTS / f"refit_replay_{args.env}.md"
    text = summarize(logs, args, time.perf_counter() - start)
    output.write_text(text + "\n")
    plot(logs, output.with_suffix(".png"), args.env)
    print(text)


if __name__ == "__main__":
    main()
