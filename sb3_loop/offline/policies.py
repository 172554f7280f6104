"""OfflineLOOP's policies: the offline prior's networks plus a dynamics ensemble and the offline ARC."""

from __future__ import annotations

from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy

from sb3_loop.common.policies import PlanningPolicyMixin


class OfflineLOOPPolicy(PlanningPolicyMixin, SACPolicy):
    """
    OfflineLOOP with a CRR prior: CRR's actor (SAC's squashed Gaussian, its mean proposes) and twin
    critic (the first is the terminal value), plus the ensemble; ``predict()`` plans. All ``SACPolicy``
    and :class:`~sb3_loop.common.policies.PlanningPolicyMixin` arguments are accepted.
    """


class OfflineLOOPTD3Policy(PlanningPolicyMixin, TD3Policy):
    """
    OfflineLOOP with a TD3+BC prior: TD3's deterministic actor and twin critic (the first is the terminal
    value), plus the ensemble; ``predict()`` plans. All ``TD3Policy`` and
    :class:`~sb3_loop.common.policies.PlanningPolicyMixin` arguments are accepted.
    """
