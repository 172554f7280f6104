"""
Does a velocity constraint bind? The episode cost that Safety-Gymnasium's velocity threshold would charge
trained, unconstrained LOOP models (a cost of 1 per step faster than the threshold), acting with their
actor alone or with the planner, from the same start states. Used to pick the velocity task of
``benchmarks/safe.py``: a threshold binds at a budget when unconstrained agents of that budget exceed the
per-episode cost limit (25).

    python benchmarks/velocity_binding.py --models RUN.zip [RUN.zip ...] [--planner] [--episodes 1]

Writes ``benchmarks/results/velocity_binding.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th

from sb3_loop import LOOP
from sb3_loop.envs.velocity import VELOCITY_THRESHOLDS

EVAL_SEED = 10_000
COST_LIMIT = 25


def episode_velocities(model: LOOP, env_id: str, seed: int, planner: bool) -> tuple[float, np.ndarray]:
    """Return and per-step x-velocities of one deterministic episode."""
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    velocities, episode_return, start = [], 0.0, True
    with contextlib.nullcontext() if planner else model.actor_only():
        while True:
            action, _ = model.predict(obs, deterministic=True, episode_start=np.array([start]))
            start = False
            obs, reward, terminated, truncated, info = env.step(action)
            episode_return += float(reward)
            velocities.append(info["x_velocity"])
            if terminated or truncated:
                return episode_return, np.asarray(velocities)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", type=Path, required=True, help="saved LOOP models of v5 locomotion envs")
    parser.add_argument("--env", help="env id of the models (default: the model file's name, as the zoo saves it)")
    parser.add_argument("--episodes", type=int, default=1)
    parser.add_argument("--planner", action="store_true", help="act with the planner (default: the actor alone)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "velocity_binding.md")
    args = parser.parse_args()
    th.set_num_threads(1)
    rows = []
    for path in args.models:
        model = LOOP.load(path, device="cpu")
        env_id = args.env or path.stem  # the zoo names a run's model after its env id
        if env_id.split("-")[0] not in VELOCITY_THRESHOLDS:
            parser.error(f"{path}: cannot tell the env from the file name, pass --env (one of {list(VELOCITY_THRESHOLDS)})")
        threshold = VELOCITY_THRESHOLDS[env_id.split("-")[0]]
        for episode in range(args.episodes):
            episode_return, velocities = episode_velocities(model, env_id, EVAL_SEED + episode, args.planner)
            cost = int((velocities > threshold).sum())
            rows.append((path, env_id, threshold, episode, episode_return, len(velocities), velocities.mean(), cost))
            print(f"{path}: return {episode_return:.1f}, {len(velocities)} steps, mean x-velocity "
                  f"{velocities.mean():.2f}, cost {cost} (threshold {threshold})", flush=True)  # fmt: skip
    acting = "planner" if args.planner else "actor alone"
    lines = [
        "# Velocity constraints on unconstrained LOOP models",
        "",
        f"Command: `python benchmarks/velocity_binding.py --models {' '.join(str(p) for p in args.models)}"
        f"{' --planner' if args.planner else ''} --episodes {args.episodes}`  ",
        f"Acting: {acting}, deterministic, env seed {EVAL_SEED} + episode. Cost = steps with x-velocity above "
        f"Safety-Gymnasium's threshold; the usual episode limit is {COST_LIMIT}.",
        "",
        "| model | env | threshold | episode | return | steps | mean x-velocity | cost | binds? |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path, env_id, threshold, episode, ret, steps, mean_v, cost in rows:
        binds = "yes" if cost > COST_LIMIT else "no"
        cells = [f"`{path}`", env_id, threshold, episode, f"{ret:.1f}", steps, f"{mean_v:.2f}", cost, binds]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
