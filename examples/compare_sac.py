"""Train LOOP and SAC on the same env for the same number of steps and compare evaluation returns.

Usage: python examples/compare_sac.py [--env InvertedPendulum-v5] [--steps 5000] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_loop import LOOP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="InvertedPendulum-v5")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-episodes", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)

    eval_env = gym.make(args.env)
    for name, algo in (("SAC", SAC), ("LOOP", LOOP)):
        start = time.perf_counter()
        # Same learning_starts for both so that they see the same amount of random data.
        model = algo("MlpPolicy", args.env, learning_starts=1000, seed=args.seed)
        model.learn(total_timesteps=args.steps)
        minutes = (time.perf_counter() - start) / 60
        mean, std = evaluate_policy(model, eval_env, n_eval_episodes=args.eval_episodes)
        print(f"{name:>4}: {mean:8.1f} +- {std:6.1f} after {args.steps} steps ({minutes:.1f} min)", flush=True)


if __name__ == "__main__":
    main()
