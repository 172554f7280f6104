"""
Policies of the safe algorithms: SAC-Lagrangian's (SAC's actor and reward critics plus a critic for the
constraint cost) and SafeLOOP's (SAC's networks plus a dynamics ensemble that also predicts the cost, and
the constrained ARC planner).
"""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.sac.policies import SACPolicy

from sb3_loop.common.policies import PlanningPolicyMixin
from sb3_loop.planning import ARCConfig, ARCPlanner, CostFunctionModel, PlanningCostFn, PlanningModel, Scorer


class SACLagPolicy(SACPolicy):
    """
    :class:`~stable_baselines3.sac.policies.SACPolicy` (actor, twin reward critic and its target) plus a
    cost critic: ``n_critics`` Q-networks of the discounted constraint cost (same architecture as the
    reward critic, ``net_arch["qf"]``), its target network and its own optimiser. The networks hang off the
    policy, so ``model.save``/``load`` carry them.

    Takes :class:`~stable_baselines3.sac.policies.SACPolicy`'s arguments unchanged.
    """

    cost_critic: ContinuousCritic
    cost_critic_target: ContinuousCritic

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)
        if self.share_features_extractor:
            # As SAC's reward critic: reuse the actor's extractor, trained only by the actor loss.
            self.cost_critic = self.make_critic(features_extractor=self.actor.features_extractor)
            parameters = [param for name, param in self.cost_critic.named_parameters() if "features_extractor" not in name]
        else:
            self.cost_critic = self.make_critic(features_extractor=None)
            parameters = list(self.cost_critic.parameters())
        self.cost_critic_target = self.make_critic(features_extractor=None)
        self.cost_critic_target.load_state_dict(self.cost_critic.state_dict())
        self.cost_critic_target.set_training_mode(False)
        self.cost_critic.optimizer = self.optimizer_class(
            parameters,
            lr=lr_schedule(1),  # type: ignore[call-arg]
            **self.optimizer_kwargs,
        )

    def set_training_mode(self, mode: bool) -> None:
        super().set_training_mode(mode)
        self.cost_critic.set_training_mode(mode)


MlpPolicy = SACLagPolicy


class SafeLOOPPolicy(PlanningPolicyMixin, SACPolicy):
    """
    SafeLOOP's policy: a LOOP policy (SAC's actor and critics, a dynamics ensemble, ARC planners in
    ``predict()``) whose planners score sequences with a constrained scorer and whose rollouts take the
    step cost from ``cost_fn`` when one is given, else from the ensemble's cost target.

    Takes :class:`~sb3_loop.common.policies.PlanningPolicyMixin`'s and ``SACPolicy``'s arguments, plus:

    :param cost_fn: ``cost_fn(obs, action, next_obs) -> cost`` on the planner's tensors (see
        :data:`~sb3_loop.planning.PlanningCostFn`); ``None``: the ensemble's predicted cost.
    """

    def __init__(self, *args: Any, cost_fn: PlanningCostFn | None = None, **kwargs: Any) -> None:
        self.cost_fn = cost_fn
        super().__init__(*args, **kwargs)

    def make_planner(
        self, scorer: Scorer | None = None, config: ARCConfig | None = None, model: PlanningModel | None = None
    ) -> ARCPlanner:
        if model is None and self.cost_fn is not None:
            model = CostFunctionModel(self.dynamics, self.cost_fn)
        return super().make_planner(scorer, config, model)

    @property
    def num_cost_fallbacks(self) -> int:
        """Planned actions whose population never had enough feasible sequences (least-cost fallback)."""
        return self.planner.feasibility_log.total_fallbacks + self.rollout_planner.feasibility_log.total_fallbacks

    def pop_feasibility(self) -> dict[str, float] | None:
        """Feasibility of both planners' plans since the last call (see :class:`~sb3_loop.planning.FeasibilityLog`)."""
        summaries = [s for s in (self.planner.feasibility_log.pop(), self.rollout_planner.feasibility_log.pop()) if s]
        if not summaries:
            return None
        plans = sum(s["plans"] for s in summaries)
        return {
            "feasible_fraction": sum(s["feasible_fraction"] * s["plans"] for s in summaries) / plans,
            "iterations": sum(s["iterations"] * s["plans"] for s in summaries) / plans,
            "fallbacks": sum(s["fallbacks"] for s in summaries),
            "plans": plans,
        }

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "cost_fn": self.cost_fn}
