"""Does a trained LOOP model see an episode's end coming? Checks the dynamics ensemble (with the
termination function its planner uses) and the critic on real episodes of the model's own actor.

For every state of an episode and every k = 1 .. horizon-1 (the model steps a plan looks ahead), the
real actions of the next k steps are pushed through the ensemble (each step from a randomly drawn elite,
with sampled noise; a particle stays ended once the termination function fires), giving the predicted
probability that the episode ends within k steps. Those probabilities are split by what really happened:
windows in which the real episode terminated (recall) and windows in which it did not (false alarms).

Usage: python benchmarks/fall_prediction.py --env Hopper-v5 --model path/to/Hopper-v5.zip [--episodes 5]
       [--particles 50] [--out benchmarks/results/fall_prediction_Hopper-v5.md]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from sb3_loop import LOOP


def actor_episode(model: LOOP, env_id: str, seed: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """One episode of the model's deterministic SAC actor: observations [T+1, d], squashed actions [T, a]
    and whether it ended by termination (not by time limit)."""
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    observations, actions = [obs], []
    terminated = truncated = False
    with model.actor_only():
        while not (terminated or truncated):
            action, _ = model.predict(obs, deterministic=True)
            obs, _, terminated, truncated, _ = env.step(action)
            observations.append(obs)
            actions.append(model.policy.scale_action(action))
    env.close()
    return np.asarray(observations, dtype=np.float32), np.asarray(actions, dtype=np.float32), bool(terminated)


@torch.no_grad()
def predicted_end_probability(model: LOOP, starts: np.ndarray, actions: np.ndarray, particles: int, seed: int) -> np.ndarray:
    """P(predicted termination within k steps) for each start [N, d] and action window [N, k, a]; returns [N, k].
    Uses the termination function the model's planner plans with."""
    dynamics, terminated_fn = model.policy.dynamics, model.policy.planner.termination_fn
    generator = torch.Generator().manual_seed(seed)
    count, steps = actions.shape[0], actions.shape[1]
    state = torch.as_tensor(starts).repeat_interleave(particles, dim=0)
    action_batch = torch.as_tensor(actions).repeat_interleave(particles, dim=0)
    ended = torch.zeros(count * particles, dtype=torch.bool)
    probabilities = []
    for step in range(steps):
        state = dynamics.sample(state, action_batch[:, step], generator=generator).next_obs
        ended = ended | terminated_fn(state)
        probabilities.append(ended.reshape(count, particles).float().mean(dim=1))
    return torch.stack(probabilities, dim=1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--particles", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = LOOP.load(args.model, device="cpu")
    horizon = model.policy.planner.config.horizon
    lookahead = max(horizon - 1, 1)
    recall = {k: [] for k in range(1, lookahead + 1)}
    false_alarm = {k: [] for k in range(1, lookahead + 1)}
    lengths, q_values, q_of_ended = [], [], []
    for episode in range(args.episodes):
        observations, actions, terminated = actor_episode(model, args.env, seed=1000 + episode)
        length = len(actions)
        lengths.append(length)
        q = model.policy.critic.q1_forward(torch.as_tensor(observations[:-1]), torch.as_tensor(actions))
        q_values.append(q.detach().numpy().reshape(-1))
        if terminated:
            q_of_ended.append(q_values[-1])
        for k in recall:
            starts = np.arange(0, length - k + 1)
            windows = np.stack([actions[s : s + k] for s in starts])
            probability = predicted_end_probability(model, observations[starts], windows, args.particles, episode)
            really_ends = terminated & (starts + k == length)  # the window's last transition is the terminal one
            recall[k] += probability[really_ends, -1].tolist()
            false_alarm[k] += probability[~really_ends & (starts + k < length), -1].tolist()
    rows = [
        f"| {k} | {np.mean(recall[k]):.2f} ({len(recall[k])} falls) | {np.mean(false_alarm[k]):.3f} "
        f"({len(false_alarm[k])} windows) |"
        for k in recall
        if recall[k]
    ]
    before_end = [n for n in (1, 2, 3, 5, 10, 20, 40) if q_of_ended and all(len(q) >= n for q in q_of_ended)]
    q_row = " | ".join(f"{np.mean([q[-n] for q in q_of_ended]):.1f}" for n in before_end)
    q_median = float(np.median(np.concatenate(q_values)))
    shown = args.model.name if args.model.is_absolute() else args.model
    lines = [
        f"# Does the model see the end coming? {args.env}",
        "",
        f"Command: `python benchmarks/fall_prediction.py --env {args.env} --model {shown} --episodes {args.episodes} "
        f"--particles {args.particles}`  ",
        f"Model: {model.num_timesteps} env steps, planning horizon {horizon} ({lookahead} model steps). "
        f"{args.episodes} episodes of its SAC actor (reset seeds 1000..), lengths {lengths}.",
        "",
        "Predicted probability (ensemble + termination function, real actions, "
        f"{args.particles} particles) that the episode ends within the last k steps of a window:",
        "",
        "| k | windows ending in a real termination | windows without one |",
        "|---|---|---|",
        *rows,
        "",
        f"Critic Q1 at the n-th last state-action of the {len(q_of_ended)} episodes that ended by termination "
        f"(n = 1: the action that ended it; mean over episodes). Median over all visited state-actions: {q_median:.1f}.",
        "",
        "| " + " | ".join(f"n = {n}" for n in before_end) + " |",
        "|" + "---|" * len(before_end),
        f"| {q_row} |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
