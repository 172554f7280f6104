"""
Deploy-time constraints: a planning model (LOOP, SafeLOOP, ...) trained without a constraint plans under
one given at deployment, with no retraining, through the constrained ARC scorer.

    from sb3_loop.safe import constrain, hazard_cost

    safe_policy = constrain(loop_model, hazard_cost, cost_threshold=0.2, horizon=8)
    evaluate_policy(safe_policy, env)       # or safe_policy.predict(obs, deterministic=True)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch as th

from sb3_loop.common.planning import PlanningAlgorithmMixin, field_names, named_as_arguments
from sb3_loop.envs.goal_obs import hazard_cost_from_obs
from sb3_loop.planning import ARCPlanner, ConstrainedReturn, CostFunctionModel, MeanReturn
from sb3_loop.safe.costs import CostFunction, _resolve_cost_fn


def hazard_cost(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
    """
    The SafetyPointGoal1 hazard cost of a step read from its next observation's hazard lidar (1 inside a
    hazard, else 0): a deploy-time ``cost_fn`` for the PointGoal tasks (for the action-repeat variant it
    is the cost of the last repeated step, where the env sums the costs of all 5).

    :param obs: Observations [..., 60] (unused).
    :param action: Actions [..., 2] (unused).
    :param next_obs: Next observations [..., 60].
    """
    return hazard_cost_from_obs(next_obs)


class ConstrainedPolicy:
    """
    A planning model acting under a constraint: ``predict`` plans with its own constrained planner over the
    model's ensemble, actor and critic (shared, not copied), with the model's ``predict`` machinery
    (warm-start resets on ``episode_start``, reproducible ``deterministic=True``). Made by :func:`constrain`.

    :param model: The planning model.
    :param planner: Its constrained planner.
    """

    def __init__(self, model: PlanningAlgorithmMixin, planner: ARCPlanner) -> None:
        self.model = model
        self.planner = planner

    @property
    def observation_space(self) -> Any:
        return self.model.observation_space

    @property
    def action_space(self) -> Any:
        return self.model.action_space

    def predict(
        self,
        observation: np.ndarray,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """As the model's ``predict``, planning under the constraint."""
        policy = self.model.policy
        saved = policy.planner, policy.use_planner
        policy.planner, policy.use_planner = self.planner, True
        try:
            return self.model.predict(observation, state, episode_start, deterministic)
        finally:
            policy.planner, policy.use_planner = saved

    def reset(self) -> None:
        """Forget the planner's warm starts."""
        self.planner.reset()

    @property
    def fallbacks(self) -> int:
        """Actions planned so far whose population never had enough feasible sequences (least cost acted)."""
        return self.planner.feasibility_log.total_fallbacks

    def pop_feasibility(self) -> dict[str, float] | None:
        """Mean feasible fraction, least-cost fallbacks and iterations since the last call."""
        return self.planner.feasibility_log.pop()


def constrain(
    model: PlanningAlgorithmMixin,
    cost_fn: CostFunction | str | None,
    cost_threshold: float,
    *,
    cost_pessimism: float = 0.0,
    min_feasible: int = 10,
    max_planning_iterations: int = 25,
    widen_factor: float = 1.5,
    **planner_arguments: Any,
) -> ConstrainedPolicy:
    """
    Plan with a trained model under a constraint given now: ARC weights only the sequences whose cost
    summed over the horizon, ``mean + cost_pessimism * std`` over particles, is at most ``cost_threshold``
    (see :class:`~sb3_loop.planning.ConstrainedReturn`). The model is not changed; feasible sequences are
    scored as its own planner scores them.

    :param model: A trained LOOP, SafeLOOP or other planning model.
    :param cost_fn: ``cost_fn(obs, action, next_obs) -> cost`` on the planner's torch tensors (leading
        batch dims; actions scaled to [-1, 1]) or its import path ``"module:function"``, applied to the
        ensemble's predicted next observations, e.g. :func:`hazard_cost`. ``None``: the ensemble's learned
        cost (SafeLOOP).
    :param cost_threshold: Budget on the summed cost over the horizon (finite, >= 0).
    :param cost_pessimism: ``k`` in ``mean + k * std`` (0: the mean).
    :param min_feasible: Feasible sequences needed to weight by return rather than by least cost.
    :param max_planning_iterations: Cap on ARC's iterations while too few sequences are feasible.
    :param widen_factor: Variance widening per iteration without enough feasible sequences.
    :param planner_arguments: The model's planner arguments to use instead of its own (``horizon``,
        ``population_size``, ...): a constraint usually needs a longer horizon than LOOP's 3.
    :return: A policy with ``predict`` (works with ``evaluate_policy``).
    """
    policy = model.policy
    if not policy.dynamics.is_trained:
        raise ValueError("the model's dynamics ensemble has not been trained yet: a constraint needs its planner")
    unknown = sorted(set(planner_arguments) - set(model.arc_arguments))
    if unknown:
        raise ValueError(
            f"{unknown} are not planner arguments of {type(model).__name__}; those are {sorted(model.arc_arguments)}"
        )
    overrides = {model.arc_arguments[name]: value for name, value in planner_arguments.items()}
    with named_as_arguments(field_names(model.arc_arguments)):
        config = dataclasses.replace(policy.arc_config, **overrides) if overrides else policy.arc_config
    base = policy.scorer
    if isinstance(base, ConstrainedReturn):
        base = base.base
    with named_as_arguments({"max_iterations": "max_planning_iterations"}):
        scorer = ConstrainedReturn(
            cost_threshold, cost_pessimism, min_feasible, max_planning_iterations, widen_factor, base=base or MeanReturn()
        )
    if cost_fn is not None:
        planning_model: Any = CostFunctionModel(policy.dynamics, _resolve_cost_fn(cost_fn))  # type: ignore[arg-type]
    elif policy.dynamics.num_extra_targets > 0:
        planning_model = policy.dynamics
    else:
        raise ValueError(
            f"cost_fn=None, but the {type(model).__name__} model's ensemble learned no cost: give a "
            "cost_fn(obs, action, next_obs), e.g. sb3_loop.safe.hazard_cost for the PointGoal tasks"
        )
    return ConstrainedPolicy(model, policy.make_planner(scorer, config, planning_model))
