"""
The main job (``make train``): LOOP's planner against its own SAC actor and against stock SAC, early on.

LOOP learns Pendulum-v1 (swing-up, 200-step episodes) for ``--steps`` environment steps; then stock SB3
``SAC`` with LOOP's SAC settings (learning rate 1e-3, the same ``--learning-starts`` random steps, the
same 2x256 networks, the same seed) learns for as many steps. Every ``--eval-freq`` steps a callback
evaluates, with deterministic actions and on the same ``--eval-episodes`` start states (one episode per
env of a ``DummyVecEnv``, which the planner plans as one batch):

* ``LOOP planner``: ``model.predict``, the ARC planner over the learned dynamics ensemble (the paper's
  settings: H=3, N=100, P=4, 5 iterations, 7 x 4x200 ensemble),
* ``LOOP's actor``: the same model ``with model.actor_only():`` (its SAC actor, no planning),
* ``SAC``: the stock SAC baseline.

It prints the table of mean returns, saves a learning-curve PNG (``--plot``, default next to ``--save``)
and the LOOP model. With the defaults (2500 steps, seed 0) the planner has swung the pendulum up (-187)
while its actor (-566) and SAC (-800) have not yet; by about 3000 steps they catch up. The lead is a
window whose timing depends on the seed: at 2500 steps it is as clear on seeds 1 and 2, not on seeds 3-5
(figures in the README).

Usage::

    python examples/quickstart.py                                  # Pendulum-v1, 2500 steps, seed 0
    python examples/quickstart.py --seed 1 --eval-episodes 10
    python examples/quickstart.py --save runs/loop_pendulum --plot runs/loop_pendulum_curve.png
    python examples/quickstart.py --env InvertedPendulum-v5 --steps 7000 --eval-freq 1000   # balanced; much longer
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_loop import LOOP

PLANNER, ACTOR, BASELINE = "LOOP planner", "LOOP's actor", "SAC"


@dataclass
class Curve:
    """Mean and std of the evaluation return at each evaluated step."""

    steps: list[int] = field(default_factory=list)
    means: list[float] = field(default_factory=list)
    stds: list[float] = field(default_factory=list)


@dataclass
class Timing:
    """Wall-clock seconds of one ``learn`` call, and the part of it spent evaluating."""

    total: float
    evaluation: float


@dataclass
class Results:
    """What ``main`` measured: one curve per evaluated policy, wall-clock per learner and the output paths."""

    curves: dict[str, Curve]
    seconds: dict[str, Timing]
    model_path: Path
    plot_path: Path | None


def make_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Pendulum-v1", help="Gymnasium env id")
    parser.add_argument("--steps", type=int, default=2500, help="environment steps for LOOP and for SAC")
    parser.add_argument("--seed", type=int, default=0, help="seed of both learners and of the evaluation starts")
    parser.add_argument("--learning-starts", type=int, default=500, help="uniform-random steps (both learners)")
    parser.add_argument("--eval-freq", type=int, default=500, help="evaluate every this many steps")
    parser.add_argument("--eval-episodes", type=int, default=5, help="episodes per evaluation (run in parallel)")
    parser.add_argument("--save", default="runs/quickstart/loop_pendulum", help="where to save the LOOP model (.zip)")
    parser.add_argument("--plot", default=None, help="learning-curve PNG (default: next to --save); 'none' to skip")
    parser.add_argument("--no-sac", action="store_true", help="skip the stock SAC baseline")
    return parser


def make_eval_env(env_id: str, n_envs: int) -> DummyVecEnv:
    """``n_envs`` monitored copies of the env, one evaluation episode each."""
    return DummyVecEnv([lambda: Monitor(gym.make(env_id)) for _ in range(n_envs)])


class CurveCallback(BaseCallback):
    """
    Every ``eval_freq`` steps (and at ``last_step``), evaluate the model once per entry of ``modes``, all
    on the same start states.

    :param eval_env: One env per evaluation episode.
    :param eval_freq: Evaluate when ``num_timesteps`` is a multiple of this.
    :param last_step: Also evaluate at this step (the end of training).
    :param seed: Seed of the evaluation start states (the same at every evaluation).
    :param modes: Curve name -> context manager factory entered around that evaluation.
    :param verbose: 1 prints each evaluation as it is made.
    """

    def __init__(
        self,
        eval_env: DummyVecEnv,
        eval_freq: int,
        last_step: int,
        seed: int,
        modes: dict[str, Callable[[], AbstractContextManager[Any]]],
        verbose: int = 1,
    ) -> None:
        super().__init__(verbose)
        self.eval_env, self.eval_freq, self.last_step, self.seed = eval_env, eval_freq, last_step, seed
        self.modes = modes
        self.curves = {name: Curve() for name in modes}
        self.eval_seconds = 0.0

    def _on_step(self) -> bool:
        if self.num_timesteps % self.eval_freq == 0 or self.num_timesteps == self.last_step:
            start = time.perf_counter()
            for name, mode in self.modes.items():
                with mode():
                    mean, std = evaluate(self.model, self.eval_env, self.seed)
                curve = self.curves[name]
                curve.steps.append(self.num_timesteps)
                curve.means.append(mean)
                curve.stds.append(std)
            self.eval_seconds += time.perf_counter() - start
            if self.verbose:
                results = ", ".join(f"{name} {curve.means[-1]:.1f}" for name, curve in self.curves.items())
                print(f"  step {self.num_timesteps}: {results}", flush=True)
        return True


def evaluate(model: BaseAlgorithm, eval_env: DummyVecEnv, seed: int) -> tuple[float, float]:
    """Mean and std return of one deterministic episode per env, from start states fixed by ``seed``."""
    eval_env.seed(seed)
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=eval_env.num_envs, deterministic=True)
    return float(mean), float(std)


def train(model: BaseAlgorithm, steps: int, callback: CurveCallback) -> Timing:
    """``model.learn`` with the evaluation callback, timed."""
    start = time.perf_counter()
    model.learn(total_timesteps=steps, callback=callback)
    return Timing(time.perf_counter() - start, callback.eval_seconds)


def describe(model: LOOP, args: argparse.Namespace) -> str:
    """One line saying what LOOP runs with."""
    arc = model.policy.arc_config
    dynamics = model.policy.dynamics_kwargs
    return (
        f"LOOP on {args.env} for {args.steps} steps (seed {args.seed}): ARC planner H={arc.horizon}, "
        f"N={arc.population_size}, P={arc.num_particles}, {arc.iterations} iterations; ensemble of "
        f"{dynamics['ensemble_size']} x {list(dynamics['hidden_sizes'])} refit every {model.dynamics_train_freq} steps; "
        f"SAC part: learning rate {model.learning_rate}, {model.learning_starts} random steps"
    )


def print_table(args: argparse.Namespace, curves: dict[str, Curve], seconds: dict[str, Timing]) -> None:
    """The evaluation returns, one row per evaluated step, one column per policy."""
    names = list(curves)
    print(
        f"\n{args.env}, seed {args.seed}: mean return (+- std) of {args.eval_episodes} deterministic episodes "
        f"from the same start states, every {args.eval_freq} steps ({args.learning_starts} random steps first)"
    )
    print(f"{'steps':>6} | " + " | ".join(f"{name:>16}" for name in names))
    for row, step in enumerate(curves[names[0]].steps):
        cells = [f"{curves[name].means[row]:8.1f} +- {curves[name].stds[row]:5.1f}" for name in names]
        print(f"{step:>6} | " + " | ".join(f"{cell:>16}" for cell in cells))
    final = ", ".join(f"{name} {curves[name].means[-1]:.1f}" for name in names)
    print(f"after {curves[names[0]].steps[-1]} steps: {final}")
    timings = [f"{name} {timing.total:.0f} s (evaluation {timing.evaluation:.0f} s)" for name, timing in seconds.items()]
    print("wall-clock: " + ", ".join(timings))


def plot_curves(args: argparse.Namespace, curves: dict[str, Curve], path: Path) -> None:
    """Save the learning curves (mean +- std per evaluation) as a small PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.2), dpi=100)
    for name, curve in curves.items():
        means, stds = np.asarray(curve.means), np.asarray(curve.stds)
        axis.plot(curve.steps, means, marker="o", label=name)
        axis.fill_between(curve.steps, means - stds, means + stds, alpha=0.2)
    axis.set_xlabel("environment steps")
    axis.set_ylabel(f"mean return +- std ({args.eval_episodes} episodes)")
    axis.set_title(f"{args.env}, seed {args.seed}")
    axis.legend(loc="best", fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def plot_path(args: argparse.Namespace) -> Path | None:
    """``--plot``, or ``<--save>.png`` by default; ``None`` for ``--plot none``."""
    if args.plot is None:
        return Path(args.save).with_suffix(".png")
    return None if args.plot.lower() == "none" else Path(args.plot)


def main(
    argv: Sequence[str] | None = None,
    shared_kwargs: dict[str, Any] | None = None,
    loop_kwargs: dict[str, Any] | None = None,
) -> Results:
    """
    Run the comparison.

    :param argv: Command-line arguments (default: ``sys.argv[1:]``).
    :param shared_kwargs: Extra arguments of both LOOP and SAC (e.g. ``policy_kwargs``), so they stay matched.
    :param loop_kwargs: Extra arguments of LOOP only (planner and dynamics settings).
    """
    parser = make_parser()
    args = parser.parse_args(argv)
    for option in ("steps", "eval_freq", "eval_episodes"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1")
    torch.set_num_threads(1)
    common = dict(learning_rate=1e-3, learning_starts=args.learning_starts, seed=args.seed, **(shared_kwargs or {}))
    eval_env = make_eval_env(args.env, args.eval_episodes)
    eval_seed = args.seed + 10_000

    model = LOOP("MlpPolicy", args.env, **common, **(loop_kwargs or {}))
    print(describe(model, args), flush=True)
    modes = {PLANNER: nullcontext, ACTOR: model.actor_only}
    callback = CurveCallback(eval_env, args.eval_freq, args.steps, eval_seed, modes)
    seconds = {"LOOP": train(model, args.steps, callback)}
    curves = dict(callback.curves)
    if not args.no_sac:
        print(f"SAC (stock SB3, the same SAC settings and seed) on {args.env} for {args.steps} steps", flush=True)
        sac = SAC("MlpPolicy", args.env, **common)
        callback = CurveCallback(eval_env, args.eval_freq, args.steps, eval_seed, {BASELINE: nullcontext})
        seconds["SAC"] = train(sac, args.steps, callback)
        curves.update(callback.curves)

    print_table(args, curves, seconds)
    figure = plot_path(args)
    if figure is not None:
        plot_curves(args, curves, figure)
        print(f"saved the learning curves to {figure}")
    model.save(args.save)
    model_path = Path(args.save).with_suffix(".zip")
    print(f"saved the LOOP model to {model_path}")
    return Results(curves, seconds, model_path, figure)


if __name__ == "__main__":
    main()
