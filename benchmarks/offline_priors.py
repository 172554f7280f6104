"""
Offline priors: our CRR and TD3+BC against d3rlpy's on the same datasets made here.

Each run trains one algorithm on one dataset for ``--steps`` gradient steps (one torch thread) and
evaluates the deterministic policy every ``--eval-every`` steps on ``--eval-episodes`` episodes from
the same start states (env seeds 10000, 10001, ...) for every algorithm; scores are D4RL-normalised.
Both libraries get the same settings: 2x256 ReLU networks, batch 256, learning rate 3e-4, gamma 0.99,
soft target updates tau 0.005; TD3+BC alpha 2.5 with standardised observations; CRR beta 1, exp
weights clipped at 20, advantage = Q(s, a) - mean of 4 sampled actions, twin critics.
d3rlpy builds ``s'`` from the next row of an episode, so it cannot use the last transition of an
episode cut by a timeout (ours uses the stored ``next_observations``).

Finished runs are kept as JSON records and skipped when the command is run again, so the benchmark
continues across sittings. Our trained models are saved under ``--models-dir`` (default
``benchmarks/runs_offline_priors``, ignored by git): ``benchmarks/offline_loop.py`` plans around the same
CRR priors. ``--speed`` measures gradient steps per second of all four, interleaved in
one process (ratios measured in the same run).

    pip install -e ".[benchmark-offline]"     # d3rlpy 2.8.0, a benchmark-only extra
    python -m sb3_loop behaviour Hopper-v5 --level medium && python -m sb3_loop collect Hopper-v5 --kind medium
    python benchmarks/offline_priors.py --datasets Hopper-v5-medium --seeds 0 1 2
    python benchmarks/offline_priors.py --speed
    python benchmarks/offline_priors.py --report-only
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th

from sb3_loop.datasets import OfflineDataset, load_dataset, normalized_score
from sb3_loop.datasets.registry import parse_dataset_name

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Our trained priors, kept for benchmarks/offline_loop.py (which plans around the same priors).
MODELS_DIR = Path(__file__).resolve().parent / "runs_offline_priors"
ENVS = ("Hopper-v5", "HalfCheetah-v5", "Walker2d-v5")
DEFAULT_DATASETS = [f"{env}-{kind}" for env in ENVS for kind in ("medium", "medium-replay")]
ALGOS = ("ours-crr", "d3rlpy-crr", "ours-td3bc", "d3rlpy-td3bc")
HIDDEN = [256, 256]
BATCH_SIZE = 256
EVAL_SEED = 10_000
TARGET_MARGIN = 5.0  # normalised points ours may trail d3rlpy by (the target)
LATE_EVALUATIONS = 3

Policy = Callable[[np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------------- trainers
class OursTrainer:
    """Our CRR / TD3+BC: ``train(n)`` does n gradient steps."""

    def __init__(self, algo: str, env_id: str, dataset: OfflineDataset, seed: int) -> None:
        from sb3_loop.offline import CRR, TD3BC

        common = {"dataset": dataset, "seed": seed, "device": "cpu", "batch_size": BATCH_SIZE, "learning_rate": 3e-4}
        if algo == "ours-crr":
            self.model = CRR("MlpPolicy", env_id, policy_kwargs={"net_arch": HIDDEN}, **common)
        else:
            self.model = TD3BC("MlpPolicy", env_id, policy_kwargs={"net_arch": HIDDEN}, normalize_observations=True, **common)
        self.started = False

    def train(self, steps: int) -> None:
        self.model.learn(steps, reset_num_timesteps=not self.started)
        self.started = True

    def policy(self, observations: np.ndarray) -> np.ndarray:
        return self.model.predict(observations, deterministic=True)[0]


class D3rlpyTrainer:
    """d3rlpy's CRR / TD3+BC with the settings of :class:`OursTrainer`."""

    def __init__(self, algo: str, env_id: str, dataset: OfflineDataset, seed: int) -> None:
        import d3rlpy

        d3rlpy.seed(seed)
        encoder = d3rlpy.models.VectorEncoderFactory(hidden_units=HIDDEN)
        common = {"batch_size": BATCH_SIZE, "actor_learning_rate": 3e-4, "critic_learning_rate": 3e-4,
                  "actor_encoder_factory": encoder, "critic_encoder_factory": encoder, "gamma": 0.99}  # fmt: skip
        if algo == "d3rlpy-crr":
            config = d3rlpy.algos.CRRConfig(
                beta=1.0, n_action_samples=4, advantage_type="mean", weight_type="exp", max_weight=20.0,
                n_critics=2, target_update_type="soft", tau=0.005, **common,
            )  # fmt: skip
        else:
            scaler = d3rlpy.preprocessing.StandardObservationScaler()
            config = d3rlpy.algos.TD3PlusBCConfig(alpha=2.5, tau=0.005, observation_scaler=scaler, **common)
        self.algo = config.create(device="cpu:0")
        timeouts = dataset.timeouts.copy()
        timeouts[-1] |= not dataset.terminals[-1]
        self.data = d3rlpy.dataset.MDPDataset(
            dataset.observations, dataset.actions, dataset.rewards,
            dataset.terminals.astype(np.float32), timeouts.astype(np.float32),
        )  # fmt: skip
        self.fitter = None
        self.epoch_steps = 0

    def train(self, steps: int) -> None:
        import d3rlpy

        # One "epoch" of d3rlpy's fitter is its n_steps_per_epoch steps, whatever is asked later: a fitter
        # serves only calls with the steps it was made for.
        if self.fitter is None or steps != self.epoch_steps:
            self.fitter = self.algo.fitter(
                self.data, n_steps=10**9, n_steps_per_epoch=steps, show_progress=False, save_interval=10**9,
                logger_adapter=d3rlpy.logging.NoopAdapterFactory(), experiment_name="offline_priors",
            )  # fmt: skip
            self.epoch_steps = steps
        next(self.fitter)

    def policy(self, observations: np.ndarray) -> np.ndarray:
        return self.algo.predict(observations.astype(np.float32))


def make_trainer(algo: str, env_id: str, dataset: OfflineDataset, seed: int) -> OursTrainer | D3rlpyTrainer:
    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}: choose from {ALGOS}")
    return (OursTrainer if algo.startswith("ours") else D3rlpyTrainer)(algo, env_id, dataset, seed)


# ------------------------------------------------------------------------------- evaluation
def evaluate(policy: Policy, env_id: str, episodes: int) -> np.ndarray:
    """Undiscounted returns of ``episodes`` episodes, all stepped together, env k reset with seed 10000 + k."""
    envs = [gym.make(env_id) for _ in range(episodes)]
    observations = np.stack([env.reset(seed=EVAL_SEED + k)[0] for k, env in enumerate(envs)])
    returns = np.zeros(episodes)
    running = np.ones(episodes, dtype=bool)
    while running.any():
        actions = policy(observations[running].astype(np.float32))
        for action, k in zip(actions, np.flatnonzero(running)):
            observation, reward, terminated, truncated, _ = envs[k].step(action)
            returns[k] += reward
            observations[k] = observation
            running[k] = not (terminated or truncated)
    return returns


def run(
    dataset_name: str, algo: str, seed: int, steps: int, eval_every: int, episodes: int, models_dir: Path | None = None
) -> dict[str, Any]:
    """One run; with ``models_dir``, our trained model is saved as ``models_dir/<dataset>/<algo>_seed<k>.zip``."""
    env_id, kind = parse_dataset_name(dataset_name) or (None, None)
    if env_id is None:
        raise ValueError(f"{dataset_name!r} is not a dataset name made here (e.g. Hopper-v5-medium)")
    dataset = load_dataset(dataset_name, env=env_id)
    th.set_num_threads(1)
    th.manual_seed(seed)
    trainer = make_trainer(algo, env_id, dataset, seed)
    evaluations, train_seconds = [], 0.0
    for done in range(eval_every, steps + 1, eval_every):
        start = time.perf_counter()
        trainer.train(eval_every)
        train_seconds += time.perf_counter() - start
        returns = evaluate(trainer.policy, env_id, episodes)
        scores = normalized_score(env_id, returns)
        evaluations.append({"gradient_steps": done, "score_mean": float(scores.mean()), "score_std": float(scores.std()),
                            "return_mean": float(returns.mean())})  # fmt: skip
        print(f"[{dataset_name} {algo} seed{seed}] {done} steps: {scores.mean():.1f} ({train_seconds:.0f} s training)")
    if models_dir is not None and isinstance(trainer, OursTrainer):
        path = model_path(models_dir, dataset_name, algo, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        trainer.model.save(path)
    return {"dataset": dataset_name, "env_id": env_id, "kind": kind, "algo": algo, "seed": seed, "steps": steps,
            "eval_every": eval_every, "eval_episodes": episodes, "evaluations": evaluations,
            "train_seconds": train_seconds, "steps_per_second": steps / train_seconds,
            "dataset_checksum": dataset.checksum(), "dataset_transitions": len(dataset)}  # fmt: skip


def model_path(models_dir: Path, dataset_name: str, algo: str, seed: int) -> Path:
    return models_dir / dataset_name / f"{algo}_seed{seed}.zip"


def record_path(results_dir: Path, dataset_name: str, algo: str, seed: int) -> Path:
    return results_dir / "offline_priors" / "runs" / dataset_name / f"{algo}_seed{seed}.json"


# ------------------------------------------------------------------------------------ speed
def measure_speed(rounds: int, steps: int) -> dict[str, float]:
    """Gradient steps per second of each algorithm, interleaved round by round on one random dataset."""
    rng = np.random.default_rng(0)
    n, obs_dim, act_dim = 20_000, 17, 6
    terminals = np.zeros(n, dtype=bool)
    timeouts = (np.arange(n) % 1000) == 999
    dataset = OfflineDataset(rng.normal(size=(n, obs_dim)), rng.uniform(-1, 1, (n, act_dim)), rng.normal(size=n),
                             rng.normal(size=(n, obs_dim)), terminals, timeouts)  # fmt: skip
    th.set_num_threads(1)
    trainers = {algo: make_trainer(algo, "HalfCheetah-v5", dataset, 0) for algo in ALGOS}
    for trainer in trainers.values():
        trainer.train(200)  # warm-up: graph building, first allocations
    seconds = dict.fromkeys(ALGOS, 0.0)
    for _ in range(rounds):
        for algo, trainer in trainers.items():
            start = time.perf_counter()
            trainer.train(steps)
            seconds[algo] += time.perf_counter() - start
    return {algo: rounds * steps / seconds[algo] for algo in ALGOS}


def write_speed(rates: dict[str, float], rounds: int, steps: int, results_dir: Path) -> None:
    lines = [
        "# Offline priors: gradient steps per second, ours vs d3rlpy",
        "",
        f"`python benchmarks/offline_priors.py --speed --rounds {rounds} --round-steps {steps}`: one torch thread,",
        "2x256 networks, batch 256, a random dataset of 20000 rows (obs 17, action 6, HalfCheetah-v5's spaces);",
        f"the four algorithms train {steps} steps each in turn, {rounds} rounds, in one process.",
        "",
        "| algorithm | ours [steps/s] | d3rlpy [steps/s] | ours / d3rlpy |",
        "|---|---|---|---|",
    ]
    for name in ("crr", "td3bc"):
        ours, theirs = rates[f"ours-{name}"], rates[f"d3rlpy-{name}"]
        lines.append(f"| {name.upper()} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f} |")
    path = results_dir / "offline_priors_speed.md"
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


# ----------------------------------------------------------------------------------- report
def load_records(results_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted((results_dir / "offline_priors" / "runs").glob("*/*.json"))]


def run_scores(records: list[dict[str, Any]], last: int = 1) -> dict[tuple[str, str], list[float]]:
    """Per (dataset, algorithm), each run's score averaged over its ``last`` evaluations (1: the final policy)."""
    table: dict[tuple[str, str], list[float]] = {}
    for record in records:
        score = np.mean([evaluation["score_mean"] for evaluation in record["evaluations"][-last:]])
        table.setdefault((record["dataset"], record["algo"]), []).append(float(score))
    return table


def _score_table(table: dict[tuple[str, str], list[float]], datasets: list[str]) -> list[str]:
    lines = [
        "| dataset | " + " | ".join(ALGOS) + " | CRR ours - d3rlpy | TD3+BC ours - d3rlpy |",
        "|---|" + "---|" * (len(ALGOS) + 2),
    ]
    for dataset in datasets:
        cells = [_cell(table.get((dataset, algo), [])) for algo in ALGOS]
        diffs = [_diff(table, dataset, name) for name in ("crr", "td3bc")]
        lines.append(f"| {dataset} | " + " | ".join(cells + diffs) + " |")
    return lines


def _misses(table: dict[tuple[str, str], list[float]], datasets: list[str], margin: float = TARGET_MARGIN) -> str:
    """The cells where ours trails d3rlpy by more than ``margin`` normalised points, as one sentence."""
    gaps = {(dataset, name): _gap(table, dataset, name) for dataset in datasets for name in ("crr", "td3bc")}
    misses = [
        f"{name.upper()} on {dataset} ({gap:+.2f})"
        for (dataset, name), gap in gaps.items()
        if gap is not None and gap < -margin
    ]
    target = f"Target (ours no worse than d3rlpy by more than {margin:g} points on any dataset)"
    return f"{target}: met on every cell." if not misses else f"{target}: missed by " + ", ".join(misses) + "."


def write_report(results_dir: Path) -> None:
    records = load_records(results_dir)
    if not records:
        print("no records yet")
        return
    table = run_scores(records)
    datasets = sorted({record["dataset"] for record in records})
    steps = sorted({record["steps"] for record in records})
    lines = [
        "# Offline priors: our CRR and TD3+BC vs d3rlpy's, same datasets and budgets",
        "",
        f"D4RL-normalised score of the final policy (mean ± std over seeds; n = seeds), {steps} gradient steps, "
        "evaluation episodes from the same start states for every algorithm. Datasets made here "
        "(`python -m sb3_loop collect`); command and settings in `benchmarks/offline_priors.py`.",
        "",
    ]
    lines += [*_score_table(table, datasets), "", _misses(table, datasets)]
    late = run_scores(records, last=LATE_EVALUATIONS)
    lines += [
        "",
        f"The final evaluation of one run swings by tens of points between neighbouring checkpoints on Walker2d "
        f"(see the plot), so the same runs scored by each run's mean over its last {LATE_EVALUATIONS} "
        "evaluations (the last third of training), then mean ± std over seeds:",
        "",
        *_score_table(late, datasets),
        "",
        _misses(late, datasets),
    ]
    speeds = {algo: [r["steps_per_second"] for r in records if r["algo"] == algo] for algo in ALGOS}
    lines += ["", "Training speed inside these runs (gradient steps/s, mean over runs; runs shared the machine):", ""]
    lines += [f"- {algo}: {np.mean(v):.1f} ({len(v)} runs)" for algo, v in speeds.items() if v]
    (results_dir / "offline_priors.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(records, datasets, results_dir / "offline_priors.png")


def _cell(values: list[float]) -> str:
    return "n/a" if not values else f"{np.mean(values):.1f} ± {np.std(values):.1f} (n={len(values)})"


def _gap(table: dict[tuple[str, str], list[float]], dataset: str, name: str) -> float | None:
    """Our mean score minus d3rlpy's for algorithm ``name`` on ``dataset``; None unless both have runs."""
    ours, theirs = table.get((dataset, f"ours-{name}")), table.get((dataset, f"d3rlpy-{name}"))
    return None if not ours or not theirs else float(np.mean(ours) - np.mean(theirs))


def _diff(table: dict[tuple[str, str], list[float]], dataset: str, name: str) -> str:
    gap = _gap(table, dataset, name)
    return "n/a" if gap is None else f"{gap:+.1f}"


def plot(records: list[dict[str, Any]], datasets: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    columns = min(3, len(datasets))
    rows = (len(datasets) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.5 * rows), squeeze=False)
    for axis, dataset in zip(axes.flat, datasets):
        for algo in ALGOS:
            runs = [r for r in records if r["dataset"] == dataset and r["algo"] == algo]
            if not runs:
                continue
            length = min(len(r["evaluations"]) for r in runs)
            x = [e["gradient_steps"] for e in runs[0]["evaluations"][:length]]
            y = np.array([[e["score_mean"] for e in r["evaluations"][:length]] for r in runs])
            axis.plot(x, y.mean(axis=0), label=f"{algo} (n={len(runs)})", linestyle="-" if algo.startswith("ours") else "--")
            axis.fill_between(x, y.min(axis=0), y.max(axis=0), alpha=0.15)
        axis.set_title(dataset)
        axis.set_xlabel("gradient steps")
        axis.set_ylabel("normalised score")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    print(f"saved {path}")


# ------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=DEFAULT_DATASETS)
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=30_000, help="gradient steps per run")
    parser.add_argument("--eval-every", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="where our trained priors are saved")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--speed", action="store_true", help="only measure gradient steps per second")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-steps", type=int, default=500)
    args = parser.parse_args()
    if args.speed:
        write_speed(measure_speed(args.rounds, args.round_steps), args.rounds, args.round_steps, args.results_dir)
        return
    if not args.report_only:
        for dataset_name in args.datasets:
            for seed in args.seeds:
                for algo in args.algos:
                    path = record_path(args.results_dir, dataset_name, algo, seed)
                    if path.is_file():
                        if json.loads(path.read_text())["steps"] != args.steps:
                            raise SystemExit(f"{path} was made with other --steps: delete it or keep the budget")
                        continue
                    record = run(dataset_name, algo, seed, args.steps, args.eval_every, args.eval_episodes,
                                 args.models_dir)  # fmt: skip
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(record, indent=1) + "\n")
    write_report(args.results_dir)


if __name__ == "__main__":
    main()
