"""Small analytic models standing in for a learned ensemble in planner tests."""

from __future__ import annotations

import torch

from sb3_loop.dynamics.ensemble import StepPrediction


class PointMass:
    """
    1-D point mass ``x' = x + dt * a`` with reward ``-(x' - goal)^2``, replicated over ``num_elites``
    identical "members". The noise (if any) is ignored: the model is exact.

    :param goal: Target position.
    :param dt: Step size.
    :param num_elites: Number of identical members.
    :param obs_dim: Observation size (only the first coordinate moves; the others stay put).
    """

    def __init__(self, goal: float = 1.0, dt: float = 0.5, num_elites: int = 2, obs_dim: int = 1, action_dim: int = 1):
        self.goal, self.dt = goal, dt
        self.num_elites = num_elites
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.target_dim = 1 + obs_dim

    def step_members(self, obs: torch.Tensor, action: torch.Tensor, noise: torch.Tensor | None) -> StepPrediction:
        next_obs = obs.clone()
        next_obs[..., 0] = obs[..., 0] + self.dt * action.sum(-1)
        reward = -((next_obs[..., 0] - self.goal) ** 2)
        return StepPrediction(next_obs, reward, None)


def zero_value(obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    return torch.zeros(obs.shape[0])


def zero_actor(action_dim: int):
    return lambda obs: torch.zeros(obs.shape[0], action_dim)
