"""Which model should an ensemble refit keep? Returns and model error of LOOP runs whose refits differ.

Variants (all with the default capped refit, 100 minibatch updates every 250 env steps):
  best_epoch   each member keeps its best epoch of the refit (the paper's code: "best" starts at +inf)
  keep_better  a member keeps its pre-refit weights (and their normaliser) when they predict the fixed
               holdout better than the refit's best epoch
  before_fix   the committed records made before the honest holdout (benchmarks/results/refit_before_fix/): the
               pre-refit weights judged on a holdout they had partly trained on, under a moved normaliser
The runs themselves are made by benchmarks/compare.py (commands in the report); this script only reads
their records and writes ``benchmarks/results/refit_selection.md`` and ``refit_selection.png``:

  python benchmarks/refit_selection.py [--envs HalfCheetah-v5 Hopper-v5]

Model error comes from each record's ``dynamics_log`` (one entry per refit): ``fresh_mse`` is the elite
members' one-step error on the transitions collected since the previous refit, before refitting (data
the model has never seen), ``holdout_mse`` the error on the fixed holdout after the refit; both in units
of the standard deviation of the training targets. The before_fix runs did not log them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import RunResult, read_records

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {
    "best_epoch": RESULTS / "refit_best_epoch",
    "keep_better": RESULTS / "refit_keep_better",
    "before_fix": RESULTS / "refit_before_fix",
}
CHECKPOINTS = (5000, 10000, 15000, 20000)
#: Windows of env steps over which fresh_mse is averaged (refits every 250 steps).
WINDOWS = ((1000, 5000), (5000, 10000), (10000, 15000), (15000, 20000))
COMMAND = (
    "python benchmarks/compare.py --only ENV loop SEED --steps loop=20000 --eval-freq 5000 --eval-episodes 3 "
    '--no-report --extra "loop=-params dynamics_refit_selection:\\"\'VARIANT\'\\"" '
    "--runs-dir benchmarks/runs_refit_VARIANT --results-dir benchmarks/results/refit_VARIANT"
)


def loop_runs(variant: str, env: str) -> list[RunResult]:
    return sorted((r for r in read_records(VARIANTS[variant], env) if r.algo == "loop"), key=lambda r: r.seed)


def return_at(run: RunResult, step: int) -> float | None:
    hits = np.nonzero(run.timesteps == step)[0]
    return float(run.returns[hits[0]]) if len(hits) else None


def window_mean(run: RunResult, key: str, window: tuple[int, int]) -> float | None:
    values = [
        entry[key]
        for entry in run.dynamics_log or []
        if entry.get(key) is not None and window[0] < entry["num_timesteps"] <= window[1]
    ]
    return float(np.mean(values)) if values else None


def kept_fraction(run: RunResult, ensemble_size: int = 7) -> float | None:
    refits = [entry["kept_previous"] for entry in (run.dynamics_log or [])[1:] if "kept_previous" in entry]
    return float(np.sum(refits)) / (ensemble_size * len(refits)) if refits else None


def _cell(values: list[float | None], digits: int = 1) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    per_seed = " / ".join("-" if v is None else f"{v:.{digits}f}" for v in values)
    if len(present) < 2:
        return per_seed
    return f"**{np.mean(present):.{digits}f}** ({per_seed})"


def env_tables(env: str) -> list[str]:
    lines = [f"## {env}", "", "Evaluation return (3 episodes, deterministic planner): mean (seed 0 / seed 1 ...)", ""]
    lines += ["| variant | seeds | " + " | ".join(str(c) for c in CHECKPOINTS) + " |", "|---|---|" + "---|" * len(CHECKPOINTS)]
    runs = {variant: loop_runs(variant, env) for variant in VARIANTS}
    for variant, found in runs.items():
        cells = [_cell([return_at(run, c) for run in found]) for c in CHECKPOINTS]
        seeds = ", ".join(f"{run.seed}{'' if run.done else ' (incomplete)'}" for run in found) or "none yet"
        lines.append(f"| {variant} | {seeds} | " + " | ".join(cells) + " |")
    lines += ["", "Model error on never-seen data, `fresh_mse` averaged over the refits in each window of env steps;",
              "`holdout_mse` (fixed holdout, after the refit) over the same windows; share of member-refits that kept",
              "their pre-refit weights:", ""]  # fmt: skip
    header = " | ".join(f"fresh {a // 1000}k-{b // 1000}k" for a, b in WINDOWS)
    lines += [f"| variant | {header} | holdout 15k-20k | kept previous |", "|---|" + "---|" * (len(WINDOWS) + 2)]
    for variant, found in runs.items():
        if not any(run.dynamics_log for run in found):
            continue
        fresh = [_cell([window_mean(run, "fresh_mse", w) for run in found], 3) for w in WINDOWS]
        holdout = _cell([window_mean(run, "holdout_mse", WINDOWS[-1]) for run in found], 3)
        kept = _cell([kept_fraction(run) for run in found], 2)
        lines.append(f"| {variant} | " + " | ".join(fresh) + f" | {holdout} | {kept} |")
    return [*lines, ""]


def plot(envs: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(envs), 2, figsize=(10, 3.2 * len(envs)), squeeze=False)
    colors = {"best_epoch": "tab:blue", "keep_better": "tab:orange", "before_fix": "tab:gray"}
    for row, env in zip(axes, envs):
        for variant in VARIANTS:
            for run in loop_runs(variant, env):
                label = f"{variant} s{run.seed}"
                style = "-" if run.seed == 0 else "--"
                row[0].plot(run.timesteps, run.returns, style, color=colors[variant], label=label)
                log = [e for e in run.dynamics_log or [] if e.get("fresh_mse") is not None]
                if log:
                    steps = [e["num_timesteps"] for e in log]
                    row[1].plot(steps, [e["fresh_mse"] for e in log], style, color=colors[variant], label=label, lw=0.8)
        row[0].set(title=f"{env}: evaluation return", xlabel="env steps")
        row[1].set(title=f"{env}: fresh_mse (never-seen transitions)", xlabel="env steps", yscale="log")
        for ax in row:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["HalfCheetah-v5", "Hopper-v5"])
    parser.add_argument("--output", type=Path, default=RESULTS / "refit_selection.md")
    args = parser.parse_args(argv)
    variants = ("    " + line for line in (__doc__ or "").split("\n\n")[1].splitlines())
    lines = ["# Which model should an ensemble refit keep?", "", *variants, "", "Runs:", "",
             f"    {COMMAND}", "", "(ENV in HalfCheetah-v5 / Hopper-v5, SEED 0 and 1, VARIANT best_epoch / keep_better;",
             "one torch thread per run, two runs at a time on a 2-core machine.)", ""]  # fmt: skip
    for env in args.envs:
        lines += env_tables(env)
    notes = RESULTS / "notes" / "refit_selection.md"
    if notes.is_file():
        lines += [notes.read_text().rstrip(), ""]
    text = "\n".join(lines)
    args.output.write_text(text)
    plot(args.envs, args.output.with_suffix(".png"))
    print(text)
    print(f"wrote {args.output} and {args.output.with_suffix('.png')}")


if __name__ == "__main__":
    main()
