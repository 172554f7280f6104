"""Small analytic models standing in for a learned ensemble in planner tests, and the helpers those tests share."""

from __future__ import annotations

import math

import torch

from sb3_loop.dynamics.ensemble import ProbabilisticEnsemble, StepPrediction


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


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Spy:
    """Wraps a planner's private step to record its arguments and results."""

    def __init__(self, planner, name: str) -> None:
        self.calls: list[tuple[tuple, object]] = []
        original = getattr(planner, name)

        def wrapper(*args, **kwargs):
            result = original(*args, **kwargs)
            self.calls.append((args, result))
            return result

        setattr(planner, name, wrapper)


class ActionCostModel(PointMass):
    """Point mass whose reward also penalises actions away from a per-dimension target."""

    def __init__(self, target: torch.Tensor, **kwargs) -> None:
        super().__init__(**kwargs)
        self.target = target

    def step_members(self, obs, action, noise):
        step = super().step_members(obs, action, noise)
        return StepPrediction(step.next_obs, step.reward - ((action - self.target) ** 2).sum(-1), None)


class NaNModel(PointMass):
    """Point mass returning NaN (reward or next state) for rows whose state is beyond ``threshold``."""

    def __init__(self, what: str, threshold: float = 4.0) -> None:
        super().__init__(goal=1.0, dt=0.5)
        self.what, self.threshold = what, threshold

    def step_members(self, obs, action, noise):
        next_obs, reward, _ = super().step_members(obs, action, noise)
        bad = obs[..., 0] > self.threshold
        if self.what == "reward":
            reward = torch.where(bad, torch.full_like(reward, math.nan), reward)
        else:
            next_obs = torch.where(bad[..., None], torch.full_like(next_obs, math.nan), next_obs)
        return StepPrediction(next_obs, reward, None)


def tiny_ensemble(obs_dim: int = 3, action_dim: int = 2, seed: int = 0) -> ProbabilisticEnsemble:
    torch.manual_seed(seed)
    return ProbabilisticEnsemble(obs_dim, action_dim, ensemble_size=3, num_elites=2, hidden_sizes=(16, 16))
