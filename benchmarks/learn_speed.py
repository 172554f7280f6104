"""Env steps per second of LOOP.learn() vs SAC.learn() on the same env, in the same run.

Usage: python benchmarks/learn_speed.py [--env HalfCheetah-v5] [--steps 3000] [--learning-starts 1000]
       [--seed 0] [--out benchmarks/results/learn_speed.md]

Both algorithms use one thread, the same learning_starts and one gradient step per env step. LOOP uses
the paper's configuration with the default propagation mode, dynamics retraining included (every 250
steps on the whole replay buffer). The rate is measured after learning_starts (the steady regime where
the planner acts and the networks train) and over the whole run.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback

from sb3_loop import LOOP


class StepTimer(BaseCallback):
    """Records the wall-clock time when learning starts and at the end."""

    def __init__(self, learning_starts: int) -> None:
        super().__init__()
        self.learning_starts = learning_starts
        self.t_start = self.t_learning = self.t_end = 0.0
        self.steps_at_learning = 0

    def _on_training_start(self) -> None:
        self.t_start = time.perf_counter()

    def _on_step(self) -> bool:
        if self.t_learning == 0.0 and self.num_timesteps >= self.learning_starts:
            self.t_learning, self.steps_at_learning = time.perf_counter(), self.num_timesteps
        return True

    def _on_training_end(self) -> None:
        self.t_end = time.perf_counter()


def measure(algo: str, env_id: str, steps: int, learning_starts: int, seed: int) -> dict[str, float]:
    cls = LOOP if algo == "LOOP" else SAC
    model = cls("MlpPolicy", env_id, learning_starts=learning_starts, seed=seed, verbose=0)
    timer = StepTimer(learning_starts)
    model.learn(steps, callback=timer)
    steady_steps = model.num_timesteps - timer.steps_at_learning
    result = {
        "steady_sps": steady_steps / (timer.t_end - timer.t_learning),
        "overall_sps": model.num_timesteps / (timer.t_end - timer.t_start),
        "seconds": timer.t_end - timer.t_start,
    }
    if isinstance(model, LOOP):
        result["dynamics_trainings"] = int(model.policy.dynamics.num_trainings)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "learn_speed.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for algo in ("SAC", "LOOP"):
        results[algo] = measure(algo, args.env, args.steps, args.learning_starts, args.seed)
        print(algo, {k: round(v, 2) for k, v in results[algo].items()}, flush=True)
    sac, loop = results["SAC"], results["LOOP"]
    ratio = loop["steady_sps"] / sac["steady_sps"]
    print(f"LOOP / SAC steady-state steps per second: {ratio:.3f} (target >= 0.25)")
    lines = [
        f"# LOOP vs SAC learning speed on {args.env}",
        "",
        f"Command: `python benchmarks/learn_speed.py --env {args.env} --steps {args.steps} "
        f"--learning-starts {args.learning_starts} --seed {args.seed}`  ",
        f"One thread (`torch.set_num_threads(1)`), torch {torch.__version__}, {platform.machine()}; both runs in the "
        "same process, one after the other. LOOP: paper config (H=3, N=100, P=4, 5 iterations, 7x4x200 ensemble, "
        f"retrained every 250 steps), default propagation. Steady = after learning_starts.",
        "",
        "| algorithm | steady env steps/s | overall env steps/s | wall-clock (s) |",
        "|---|---|---|---|",
        f"| SAC | {sac['steady_sps']:.1f} | {sac['overall_sps']:.1f} | {sac['seconds']:.0f} |",
        f"| LOOP | {loop['steady_sps']:.1f} | {loop['overall_sps']:.1f} | {loop['seconds']:.0f} |",
        "",
        f"LOOP / SAC (steady): **{ratio:.2f}** (target: at least 0.25). "
        f"LOOP refit its ensemble {loop['dynamics_trainings']} times in this run.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
