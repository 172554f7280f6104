"""What the planning algorithms (LOOP, OfflineLOOP, SafeLOOP, lookahead) share: settings, mixins."""

from sb3_loop.common.planning import PlanningAlgorithmMixin, PlanningSettings, replay_buffer_transitions
from sb3_loop.common.policies import PlanningPolicyMixin

__all__ = ["PlanningAlgorithmMixin", "PlanningPolicyMixin", "PlanningSettings", "replay_buffer_transitions"]
