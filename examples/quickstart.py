"""The main job: a short LOOP run on InvertedPendulum-v5, then evaluation of planner vs actor.

Usage: python examples/quickstart.py [--steps 3000] [--seed 0] [--save loop_inverted_pendulum]
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import torch
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_loop import LOOP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="InvertedPendulum-v5")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--save", default="loop_inverted_pendulum")
    args = parser.parse_args()
    torch.set_num_threads(1)

    model = LOOP("MlpPolicy", args.env, learning_starts=500, seed=args.seed, verbose=0)
    model.learn(total_timesteps=args.steps, progress_bar=True)

    eval_env = gym.make(args.env)
    planner_mean, planner_std = evaluate_policy(model, eval_env, n_eval_episodes=args.eval_episodes)
    with model.actor_only():
        actor_mean, actor_std = evaluate_policy(model, eval_env, n_eval_episodes=args.eval_episodes)
    print(f"\n{args.env} after {args.steps} steps (seed {args.seed}), {args.eval_episodes} evaluation episodes:")
    print(f"  LOOP (ARC planner): {planner_mean:8.1f} +- {planner_std:.1f}")
    print(f"  SAC actor alone:    {actor_mean:8.1f} +- {actor_std:.1f}")
    model.save(args.save)
    print(f"saved the model to {args.save}.zip")


if __name__ == "__main__":
    main()
