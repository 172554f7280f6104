"""MPPI as TD-MPC2 plans (Hansen et al. 2024): softmax-weighted elites, without actor proposals."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sb3_loop.checks import check_number
from sb3_loop.planning.sampling import (
    PlannerRandom,
    SamplingConfig,
    SamplingPlanner,
    elite_count,
    elite_weights,
)


@dataclass
class MPPIConfig(SamplingConfig):
    """
    MPPI settings. Defaults follow TD-MPC2 (512 samples, 64 elites, temperature 0.5, 6 iterations,
    standard deviation within [0.05, 2] on actions in [-1, 1], starting at 2) scaled to LOOP's
    population of 100: 13 elites (the same 1/8). Standard deviations scale with the half-width of the
    action bounds. The shared fields are those of :class:`~sb3_loop.planning.sampling.SamplingConfig`.

    :param iterations: Refinement iterations per real step (TD-MPC2: 6).
    :param elite_fraction: Fraction of the population weighted, rounded half up, at least 1 (0.125 -> 13 of 100).
    :param temperature: ``w ∝ exp(temperature * (score - max score))`` over the elites.
    :param min_std: Lower bound of the standard deviation, in half-widths of the action bounds.
    :param max_std: Upper bound of the standard deviation and its value at the start of every plan.
    """

    iterations: int = 6
    elite_fraction: float = 0.125
    temperature: float = 0.5
    min_std: float = 0.05
    max_std: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("elite_fraction", self.elite_fraction, 0.0, 1.0, low_open=True)
        for name in ("temperature", "min_std", "max_std"):
            check_number(name, getattr(self, name), 0.0, low_open=True)
        if self.min_std > self.max_std:
            raise ValueError(f"min_std={self.min_std!r} must be <= max_std={self.max_std!r}")

    @property
    def num_elites(self) -> int:
        """Elite sequences per iteration."""
        return elite_count(self.elite_fraction, self.population_size)


class MPPIPlanner(SamplingPlanner):
    """
    MPPI, TD-MPC2's planner without its policy trajectories: every iteration samples N sequences from
    a normal around the plan's mean (clipped to the bounds), weights the top ``num_elites`` by
    ``softmax(temperature * score)`` and sets the mean and standard deviation to their weighted mean and
    standard deviation (clamped to ``[min_std, max_std]``), with no momentum. The standard deviation
    restarts at ``max_std`` at every step, the mean from the shifted previous plan (a feasibility scorer's
    widening cannot push it past ``max_std``). Exploring acts, as
    TD-MPC2 in training, the first action of one elite drawn by weight plus normal noise of the final
    standard deviation. See :class:`~sb3_loop.planning.sampling.SamplingPlanner` for the arguments.
    """

    config_class = MPPIConfig
    config: MPPIConfig

    def _std_bounds(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        half_width = ((self.action_high - self.action_low) / 2).to(device)
        return self.config.min_std * half_width, self.config.max_std * half_width

    def _initial_var(self, mean: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return (self._std_bounds(mean.device)[1] ** 2).expand_as(mean)

    def _propose(
        self, mean: torch.Tensor, var: torch.Tensor, rng: PlannerRandom, low: torch.Tensor, high: torch.Tensor
    ) -> torch.Tensor:
        min_std, max_std = self._std_bounds(mean.device)
        # Clamped here too: a feasibility scorer's widening must not push the spread past max_std.
        std = torch.maximum(torch.minimum(var.sqrt(), max_std), min_std)
        noise = rng.normal((self.config.population_size, *mean.shape[1:]))
        return (mean.unsqueeze(1) + std.unsqueeze(1) * noise).clamp(low, high)

    def _weights(self, scores: torch.Tensor) -> torch.Tensor:
        return elite_weights(scores, self.config.num_elites, self.config.temperature)

    def _refit(
        self, mean: torch.Tensor, var: torch.Tensor, new_mean: torch.Tensor, new_var: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        min_std, max_std = self._std_bounds(new_mean.device)
        return new_mean, torch.maximum(torch.minimum(new_var.sqrt(), max_std), min_std) ** 2

    def _exploration_draws(self, rng: PlannerRandom) -> tuple[torch.Tensor, ...]:
        return rng.uniform((1,)), rng.normal((self.action_dim,))

    def _explore(
        self, candidates: torch.Tensor, weights: torch.Tensor, var: torch.Tensor, draws: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        uniform, noise = draws
        return self._draw_candidate(candidates, weights, uniform)[:, 0] + var[:, 0].sqrt() * noise
