"""How a planner turns per-particle returns of candidate sequences into one score per sequence.

Scorers are the swappable piece between the online (mean), offline (pessimistic) and safe
(cost-constrained) planners; everything else in the planner is shared. A scorer that also judges
feasibility (:class:`ConstrainedReturn`) can make the planner iterate more, see
:mod:`sb3_loop.planning.feasibility`.
"""

from __future__ import annotations

import math
import numbers
from typing import Protocol

import numpy as np
import torch

from sb3_loop.planning.feasibility import Feasibility


class Scorer(Protocol):
    """Maps returns [B, S, K] (K = particles x members) and optional costs [B, S, K] to scores [B, S]."""

    def __call__(self, returns: torch.Tensor, costs: torch.Tensor | None) -> torch.Tensor: ...


class MeanReturn:
    """Online LOOP: the return averaged over members and particles."""

    def __call__(self, returns: torch.Tensor, costs: torch.Tensor | None = None) -> torch.Tensor:
        return returns.mean(dim=-1)


class PessimisticReturn:
    """
    Offline LOOP: ``mean - beta * std`` of the return across members and particles.

    :param beta: Pessimism coefficient (0 = plain mean).
    """

    def __init__(self, beta: float = 1.0) -> None:
        if not beta >= 0.0:
            raise ValueError(f"pessimism beta={beta} must be >= 0")
        self.beta = beta

    def __call__(self, returns: torch.Tensor, costs: torch.Tensor | None = None) -> torch.Tensor:
        spread = returns.std(dim=-1, unbiased=False) if returns.shape[-1] > 1 else torch.zeros_like(returns[..., 0])
        return returns.mean(dim=-1) - self.beta * spread


class ConstrainedReturn:
    """
    SafeLOOP's constrained ARC: a sequence is *feasible* when its predicted cumulative cost over the
    horizon stays within the budget, ``mean(C) + cost_pessimism * std(C) <= cost_threshold`` with ``C`` the
    summed cost of each particle (``cost_pessimism = 0``: the mean over particles and members; > 0: a
    pessimistic bound). When at least ``min_feasible`` sequences of an env are feasible, only they get
    weight, scored by ``base`` (the mean return); the rest score ``-inf``. With fewer, every sequence is
    scored by minus its cost bound (the planner moves towards the least cost, as in the paper's code) and
    :meth:`feasibility` asks the planner to widen the variance and iterate again, up to
    ``max_iterations`` iterations in all (see :class:`~sb3_loop.planning.feasibility.IterationSchedule`).

    :param cost_threshold: Budget on the cost summed over the planning horizon (>= 0). Exactly at the
        threshold is feasible.
    :param cost_pessimism: ``k`` in ``mean + k * std`` of the summed cost across particles (>= 0).
    :param min_feasible: Feasible sequences needed to weight by return (>= 1).
    :param max_iterations: Cap on the planner's iterations while too few sequences are feasible (>= 1).
    :param widen_factor: After its n-th retry the variance is at least ``init_var * widen_factor**n`` (>= 1).
    :param base: Scores the returns of feasible sequences (default :class:`MeanReturn`).
    """

    def __init__(
        self,
        cost_threshold: float,
        cost_pessimism: float = 0.0,
        min_feasible: int = 10,
        max_iterations: int = 25,
        widen_factor: float = 1.5,
        base: Scorer | None = None,
    ) -> None:
        self.cost_threshold = _finite_number("cost_threshold", cost_threshold, low=0.0)
        self.cost_pessimism = _finite_number("cost_pessimism", cost_pessimism, low=0.0)
        self.widen_factor = _finite_number("widen_factor", widen_factor, low=1.0)
        for name, value in (("min_feasible", min_feasible), ("max_iterations", max_iterations)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} must be an integer >= 1")
        self.min_feasible = int(min_feasible)
        self.max_iterations = int(max_iterations)
        self.base = base if base is not None else MeanReturn()

    def cost_bound(self, costs: torch.Tensor | None) -> torch.Tensor:
        """``mean + cost_pessimism * std`` of the summed costs [B, S, K] over particles: [B, S]."""
        if costs is None:
            raise ValueError(
                "the constrained scorer needs predicted costs, but the planning model predicts none: train the "
                "ensemble with a cost target (SafeLOOP does) or give a cost_fn(obs, action, next_obs)"
            )
        bound = costs.mean(dim=-1)
        if self.cost_pessimism > 0 and costs.shape[-1] > 1:
            bound = bound + self.cost_pessimism * costs.std(dim=-1, unbiased=False)
        return bound

    def feasibility(self, returns: torch.Tensor, costs: torch.Tensor | None) -> Feasibility:
        feasible = self.cost_bound(costs) <= self.cost_threshold  # NaN costs are infeasible
        return Feasibility(feasible, feasible.sum(dim=1) < self.min_feasible)

    def __call__(self, returns: torch.Tensor, costs: torch.Tensor | None) -> torch.Tensor:
        bound = self.cost_bound(costs)
        feasible = bound <= self.cost_threshold
        enough = feasible.sum(dim=1, keepdim=True) >= self.min_feasible
        by_return = torch.where(feasible, self.base(returns, costs), torch.full_like(bound, -math.inf))
        return torch.where(enough, by_return, -bound)


def _finite_number(name: str, value: object, low: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < low:
        raise ValueError(f"{name}={value!r} must be a finite number >= {low}")
    return float(value)
