"""Do the two propagation modes plan equally well? Train LOOP once, then evaluate the same model's
planner with ``propagation="paper"`` and ``"random_elite"`` on the same evaluation seeds.

Usage: python benchmarks/propagation_quality.py [--env Pendulum-v1] [--steps 3000] [--seed 0]
       [--episodes 5] [--out benchmarks/results/propagation_quality.md]
       # or evaluate a model trained elsewhere (e.g. by benchmarks/compare.py), skipping the slow mode:
       python benchmarks/propagation_quality.py --env HalfCheetah-v5 --model path/to/HalfCheetah-v5.zip \
           --modes random_elite --episodes 3 --out benchmarks/results/planner_vs_actor_HalfCheetah-v5.md

Every run also evaluates the model's SAC actor alone, which shows what planning adds to that model.

This isolates planning quality (same ensemble, same critic, same start states); it is not a learning
curve of each mode (that would need a full training run per mode and seed).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_loop import LOOP


def evaluate(model: LOOP, env_id: str, episodes: int, seed: int) -> tuple[float, float, float]:
    """Mean and std of episode returns and ms per action, with fixed reset seeds."""
    returns, steps, start = [], 0, time.perf_counter()
    for episode in range(episodes):
        env = gym.make(env_id)
        env.reset(seed=seed + episode)
        torch.manual_seed(seed + episode)
        episode_returns, lengths = evaluate_policy(model, env, n_eval_episodes=1, return_episode_rewards=True)
        returns += episode_returns
        steps += sum(lengths)
    return float(np.mean(returns)), float(np.std(returns)), 1e3 * (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--model", type=Path, default=None, help="a saved LOOP model to evaluate instead of training one")
    parser.add_argument("--modes", nargs="+", default=["paper", "random_elite"], choices=["paper", "random_elite"])
    parser.add_argument("--horizon", type=int, default=None, help="plan with this horizon instead of the model's")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "propagation_quality.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.model is None:
        model = LOOP("MlpPolicy", args.env, learning_starts=1000, seed=args.seed)
        model.learn(args.steps)
        origin = f"One LOOP model trained for {args.steps} steps (seed {args.seed}, default config)"
        command = f"--steps {args.steps} --seed {args.seed}"
    else:
        model = LOOP.load(args.model, device="cpu")
        origin = f"The saved LOOP model `{args.model.name}` ({model.num_timesteps} env steps)"
        shown = args.model.name if args.model.is_absolute() else args.model  # no machine-specific path
        command = f"--model {shown} --modes {' '.join(args.modes)}"
    if args.horizon is not None:
        command += f" --horizon {args.horizon}"
    rows = []
    base = model.policy.planner.config
    horizon = base.horizon if args.horizon is None else args.horizon
    for propagation in args.modes:
        model.policy.planner.config = dataclasses.replace(base, propagation=propagation, horizon=horizon)
        mean, std, ms = evaluate(model, args.env, args.episodes, seed=1000)
        rows.append((propagation, mean, std, ms))
        print(f"{propagation:>12}: return {mean:9.1f} +- {std:7.1f}   {ms:6.1f} ms/action", flush=True)
    with model.actor_only():
        mean, std, ms = evaluate(model, args.env, args.episodes, seed=1000)
    rows.append(("(SAC actor alone)", mean, std, ms))
    lines = [
        f"# Planning quality on {args.env}: propagation {' and '.join(args.modes)} vs the SAC actor alone",
        "",
        f"Command: `python benchmarks/propagation_quality.py --env {args.env} {command} --episodes {args.episodes}`  ",
        f"{origin}, then its planner (horizon {horizon}) evaluated deterministically with each propagation mode, "
        "and its SAC actor "
        f"alone, on the same {args.episodes} reset seeds (1000..). One thread.",
        "",
        "| planner | mean return | std | ms per action |",
        "|---|---|---|---|",
        *[f"| {name} | {mean:.1f} | {std:.1f} | {ms:.1f} |" for name, mean, std, ms in rows],
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
