"""A 2-D point mass that reaches a goal through a hazard disc: a fast safe-RL task with a known cost."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

GOAL = np.array([1.0, 0.0])
START = np.array([-1.0, 0.0])
HAZARD_RADIUS = 0.4
STEP = 0.1
REWARD_SCALE = 10.0
LANE_PENALTY = 2.0


def hazard_cost(obs: Any, action: Any, next_obs: Any) -> Any:
    """1 when ``next_obs`` (the position) is inside the hazard disc around the origin, else 0 (numpy or torch)."""
    if isinstance(next_obs, torch.Tensor):
        return (next_obs[..., :2].norm(dim=-1) <= HAZARD_RADIUS).to(next_obs.dtype)
    return (np.linalg.norm(np.asarray(next_obs)[..., :2], axis=-1) <= HAZARD_RADIUS).astype(np.float64)


class HazardPointEnv(gym.Env):
    """
    Position ``(x, y)``; action in [-1, 1]^2 moves it by ``STEP * action``. Reward: 10 times the decrease of
    the distance to the goal at (1, 0) (PointGoal's reward, scaled so that ARC's weights discriminate)
    minus ``2 |y|``, which keeps the unconstrained path on the line y = 0. ``info["cost"]``: 1 inside the hazard disc of
    radius 0.4 around the origin, which lies on the straight line from the start near (-1, 0).
    """

    def __init__(self, with_cost: bool = True, start_noise: float = 0.05) -> None:
        self.observation_space = spaces.Box(-3.0, 3.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.with_cost = with_cost
        self.start_noise = start_noise
        self.position = START.copy()

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.position = START + self.np_random.uniform(-self.start_noise, self.start_noise, size=2)
        return self.position.astype(np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        before = np.linalg.norm(self.position - GOAL)
        self.position = np.clip(self.position + STEP * np.clip(action, -1.0, 1.0), -3.0, 3.0)
        reward = REWARD_SCALE * float(before - np.linalg.norm(self.position - GOAL)) - LANE_PENALTY * abs(self.position[1])
        info = {"cost": float(hazard_cost(None, None, self.position))} if self.with_cost else {}
        return self.position.astype(np.float32), reward, False, False, info


def make_env(with_cost: bool = True, max_steps: int = 40) -> gym.Env:
    return gym.wrappers.TimeLimit(HazardPointEnv(with_cost), max_episode_steps=max_steps)
