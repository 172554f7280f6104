"""LOOP policy: SAC's actor and critics plus a dynamics ensemble and the ARC planner."""

from __future__ import annotations

from stable_baselines3.sac.policies import SACPolicy

from sb3_loop.common.policies import (
    PLANNING_STREAMS,
    PlanningPolicyMixin,
    check_loop_spaces,
    check_planning_seed,
    stream_seed,
)

__all__ = ["PLANNING_STREAMS", "LOOPPolicy", "MlpPolicy", "check_loop_spaces", "check_planning_seed", "stream_seed"]


class LOOPPolicy(PlanningPolicyMixin, SACPolicy):
    """
    SAC policy that acts by planning: ``predict()`` runs ARC over the learned dynamics ensemble,
    with the actor proposing trajectories and the first critic as terminal value.

    Set ``use_planner = False`` (or use ``LOOP.actor_only()``) to act with the SAC actor alone.
    All ``SACPolicy`` arguments are accepted, plus the planning arguments of
    :class:`~sb3_loop.common.policies.PlanningPolicyMixin` (ensemble shape, ``arc_kwargs``,
    ``termination_fn``, ``planning_seed``, ``scorer``).
    """


MlpPolicy = LOOPPolicy
