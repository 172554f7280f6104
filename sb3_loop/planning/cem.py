"""CEM: the cross-entropy method over action sequences (as in PETS), without actor proposals."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sb3_loop.checks import check_number
from sb3_loop.planning.sampling import (
    SamplingConfig,
    TruncatedGaussianPlanner,
    elite_count,
    elite_weights,
)


@dataclass
class CEMConfig(SamplingConfig):
    """
    CEM settings. Defaults follow PETS (Chua et al. 2018: 500 samples, 50 elites, 5 iterations,
    ``alpha`` 0.1, initial variance ``(high - low)^2 / 16``, samples truncated at 2 standard deviations)
    scaled to LOOP's population of 100: 10 elites. The shared fields are those of
    :class:`~sb3_loop.planning.sampling.SamplingConfig`.

    :param elite_fraction: Fraction of the population refitted to, rounded half up, at least 1 (0.1 -> 10 of 100).
    :param momentum: ``alpha`` in ``mean <- alpha * mean + (1 - alpha) * elite_mean`` and likewise for the variance.
    :param init_var_divisor: Initial variance is ``(high - low)^2 / init_var_divisor``.
    :param truncation: Samples are truncated normal within ``+-truncation`` standard deviations.
    """

    elite_fraction: float = 0.1
    momentum: float = 0.1
    init_var_divisor: float = 16.0
    truncation: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("elite_fraction", self.elite_fraction, 0.0, 1.0, low_open=True)
        check_number("momentum", self.momentum, 0.0, 1.0)
        for name in ("init_var_divisor", "truncation"):
            check_number(name, getattr(self, name), 0.0, low_open=True)

    @property
    def num_elites(self) -> int:
        """Elite sequences per iteration."""
        return elite_count(self.elite_fraction, self.population_size)


class CEMPlanner(TruncatedGaussianPlanner):
    """
    CEM: every iteration samples N sequences from a truncated normal around the plan's mean (variance
    capped to keep samples in bounds, as ARC and PETS), keeps the top ``num_elites`` by score and moves
    the mean and variance towards the elites' with momentum. The actor is not consulted (it only
    replaces a plan gone non-finite). Exploring acts the first action of one elite of the last iteration
    drawn uniformly. See :class:`~sb3_loop.planning.sampling.SamplingPlanner` for the arguments.
    """

    config_class = CEMConfig
    config: CEMConfig

    def _weights(self, scores: torch.Tensor) -> torch.Tensor:
        return elite_weights(scores, self.config.num_elites, temperature=0.0)

    def _refit(
        self, mean: torch.Tensor, var: torch.Tensor, new_mean: torch.Tensor, new_var: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = self.config.momentum
        return alpha * mean + (1.0 - alpha) * new_mean, alpha * var + (1.0 - alpha) * new_var
