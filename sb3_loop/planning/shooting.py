"""Random shooting: uniformly random action sequences, the best one acted."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sb3_loop.planning.sampling import PlannerRandom, SamplingConfig, SamplingPlanner, elite_weights


@dataclass
class ShootingConfig(SamplingConfig):
    """
    Random shooting settings (the shared fields of :class:`~sb3_loop.planning.sampling.SamplingConfig`).
    Random shooting does not iterate: it draws ``population_size * iterations`` sequences at once, so that
    it rolls out as many sequences as the iterative planners with the same settings (as PETS's random
    shooting, 2500 sequences against CEM's 500 x 5).

    :param iterations: Multiplies the population (default 1: ``population_size`` sequences).
    """

    iterations: int = 1

    @property
    def num_sequences(self) -> int:
        """Sequences drawn per plan."""
        return self.population_size * self.iterations


class RandomShootingPlanner(SamplingPlanner):
    """
    Random shooting: ``population_size * iterations`` sequences drawn uniformly within the bounds, each
    scored like any planner's, and the first action of the best one acted, exploring or not (a scorer
    that judges feasibility may make it draw again). No warm start and no actor proposals. See
    :class:`~sb3_loop.planning.sampling.SamplingPlanner` for the arguments.
    """

    config_class = ShootingConfig
    config: ShootingConfig

    def _iterations(self) -> int:
        return 1

    def _initial_var(self, mean: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return ((high - low) ** 2 / 12.0).expand_as(mean)  # the uniform's variance; unused by the sampling

    def _propose(
        self, mean: torch.Tensor, var: torch.Tensor, rng: PlannerRandom, low: torch.Tensor, high: torch.Tensor
    ) -> torch.Tensor:
        return low + (high - low) * rng.uniform((self.config.num_sequences, *mean.shape[1:]))

    def _weights(self, scores: torch.Tensor) -> torch.Tensor:
        return elite_weights(scores, 1, temperature=0.0)

    def _refit(
        self, mean: torch.Tensor, var: torch.Tensor, new_mean: torch.Tensor, new_var: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return new_mean, var
