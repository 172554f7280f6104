"""How a planner turns per-particle returns of candidate sequences into one score per sequence.

Scorers are the swappable piece between the online (mean), offline (pessimistic) and safe
(cost-constrained) planners; everything else in the planner is shared.
"""

from __future__ import annotations

from typing import Protocol

import torch


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
