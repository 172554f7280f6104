"""
Constrained planning pieces shared by every planner: a model wrapper that takes the step cost from a
function instead of the learned model, and the iteration schedule by which a scorer that judges
feasibility (:class:`~sb3_loop.planning.scoring.ConstrainedReturn`) asks ARC for more iterations with a
wider variance when too few sequences are feasible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol, runtime_checkable

import torch

from sb3_loop.dynamics.ensemble import StepPrediction

#: ``cost_fn(obs, action, next_obs) -> cost``: tensors [..., obs_dim], [..., act_dim] (the planner's
#: actions, scaled to [-1, 1]), [..., obs_dim] -> costs [...].
PlanningCostFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class Feasibility(NamedTuple):
    """
    A scorer's verdict on one iteration's population.

    :param feasible: Which sequences satisfy the constraint [B, S].
    :param retry: Envs with too few feasible sequences [B]: widen the variance and iterate again.
    """

    feasible: torch.Tensor
    retry: torch.Tensor


@runtime_checkable
class FeasibilityScorer(Protocol):
    """
    A scorer that also judges feasibility: the planner then runs at least its own ``iterations`` and, for
    the envs where ``retry`` holds, up to ``max_iterations`` in all, the variance of each retrying env
    widened to at least ``init_var * widen_factor**n`` after its n-th retry.
    """

    max_iterations: int
    widen_factor: float

    def __call__(self, returns: torch.Tensor, costs: torch.Tensor | None) -> torch.Tensor: ...

    def feasibility(self, returns: torch.Tensor, costs: torch.Tensor | None) -> Feasibility: ...


class IterationSchedule:
    """
    How many iterations ARC runs for each env of a batch, and the variance widening of the retries.

    Without a :class:`FeasibilityScorer` it is ARC's fixed ``iterations``. With one, an env stops (its plan
    frozen, so a batch plans as its envs would alone) after the first iteration at or past ``iterations``
    whose population has enough feasible sequences, or at the scorer's ``max_iterations``.

    :param scorer: The planner's scorer.
    :param iterations: ARC's (minimum) number of iterations.
    :param init_var: The initial variance [B, H, A] (the widening's unit).
    """

    def __init__(self, scorer: object, iterations: int, init_var: torch.Tensor) -> None:
        self.judge = scorer if isinstance(scorer, FeasibilityScorer) else None
        self.min_iterations = iterations
        self.max_iterations = max(iterations, self.judge.max_iterations) if self.judge is not None else iterations
        self.init_var = init_var
        batch, device = init_var.shape[0], init_var.device
        self.active = torch.ones(batch, dtype=torch.bool, device=device)
        self.iterations = torch.zeros(batch, dtype=torch.long, device=device)
        self.retries = torch.zeros(batch, dtype=torch.long, device=device)
        self.feasible_fraction = torch.zeros(batch, device=device)
        self.fallback = torch.zeros(batch, dtype=torch.bool, device=device)
        self._verdict: Feasibility | None = None

    def observe(self, returns: torch.Tensor, costs: torch.Tensor | None) -> None:
        """Judge this iteration's population (per-particle returns and costs [B, S, K])."""
        if self.judge is not None:
            self._verdict = self.judge.feasibility(returns, costs)

    def step(self, var: torch.Tensor) -> torch.Tensor:
        """
        Close an iteration: record it for the active envs, widen the variance of those that retry and
        stop those that are done.

        :param var: The variance for the next iteration [B, H, A].
        :return: That variance, widened where an env retries.
        """
        active = self.active
        self.iterations += active.long()
        if self._verdict is None:
            self.active = active & (self.iterations < self.max_iterations)
            return var
        feasible, retry = self._verdict
        self._verdict = None
        self.feasible_fraction = torch.where(active, feasible.float().mean(dim=1), self.feasible_fraction)
        self.fallback = torch.where(active, retry, self.fallback)
        widen = active & retry
        self.retries += widen.long()
        floor = self.init_var * self.judge.widen_factor ** self.retries[:, None, None].to(var.dtype)
        var = torch.where(widen[:, None, None], torch.maximum(var, floor), var)
        done = (self.iterations >= self.min_iterations) & ~retry
        self.active = active & ~done & (self.iterations < self.max_iterations)
        return var

    @property
    def extensible(self) -> bool:
        """Whether some env may run more iterations than another."""
        return self.max_iterations > self.min_iterations

    @property
    def finished(self) -> bool:
        """Whether no env plans any further."""
        return not bool(self.active.any())


class FeasibilityLog:
    """Running totals of a planner's feasibility, read and reset by :meth:`pop`."""

    def __init__(self) -> None:
        #: Plans that ended in the least-cost fallback, since the planner was made (never reset).
        self.total_fallbacks = 0
        self._reset()

    def _reset(self) -> None:
        self.plans = 0
        self.fraction_sum = 0.0
        self.fallbacks = 0
        self.iterations_sum = 0

    def record(self, schedule: IterationSchedule) -> None:
        """Add the plans of one batch (only when a feasibility scorer judged them)."""
        if schedule.judge is None:
            return
        self.plans += int(schedule.active.numel())
        self.fraction_sum += float(schedule.feasible_fraction.sum())
        self.fallbacks += int(schedule.fallback.sum())
        self.total_fallbacks += int(schedule.fallback.sum())
        self.iterations_sum += int(schedule.iterations.sum())

    def pop(self) -> dict[str, float] | None:
        """
        Since the last call: mean feasible fraction of the final population, plans that ended in the
        least-cost fallback, mean iterations per plan (``None`` if nothing was planned).
        """
        if self.plans == 0:
            return None
        summary = {
            "feasible_fraction": self.fraction_sum / self.plans,
            "fallbacks": float(self.fallbacks),
            "iterations": self.iterations_sum / self.plans,
            "plans": float(self.plans),
        }
        self._reset()
        return summary


class CostFunctionModel:
    """
    A planning model whose step cost is ``cost_fn(obs, action, next_obs)`` on its predicted next
    observation, instead of a learned cost (e.g. a hazard cost read from the observation, given at
    deployment). Everything else is the wrapped model's.

    :param model: The dynamics model (a :class:`~sb3_loop.planning.sampling.PlanningModel`).
    :param cost_fn: The step cost, see :data:`PlanningCostFn`.
    """

    def __init__(self, model: object, cost_fn: PlanningCostFn) -> None:
        if not callable(cost_fn):
            raise ValueError(f"cost_fn={cost_fn!r} is not callable")
        self.model = model
        self.cost_fn = cost_fn

    def __getattr__(self, name: str) -> object:
        # num_elites, target_dim, obs_dim, is_trained, ...: the wrapped model's.
        if name in ("model", "cost_fn"):
            raise AttributeError(name)
        return getattr(self.model, name)

    def step_members(self, obs: torch.Tensor, action: torch.Tensor, noise: torch.Tensor | None) -> StepPrediction:
        next_obs, reward, _ = self.model.step_members(obs, action, noise)  # type: ignore[attr-defined]
        cost = torch.as_tensor(self.cost_fn(obs, action, next_obs), dtype=reward.dtype, device=reward.device)
        if cost.shape != reward.shape:
            raise ValueError(
                f"cost_fn returned costs of shape {tuple(cost.shape)} for observations of shape {tuple(obs.shape)}; "
                f"it must return one cost per observation, shape {tuple(reward.shape)}"
            )
        return StepPrediction(next_obs, reward, cost)
