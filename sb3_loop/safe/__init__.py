"""
Safe (constrained) RL: per-step costs from ``info["cost"]``, a replay buffer that stores them, episode-cost
tracking, SafeLOOP (LOOP with a constrained planner), deploy-time constraints on any planning model
(:func:`constrain`) and the SAC-Lagrangian baseline.
"""

from sb3_loop.safe.buffers import CostReplayBuffer, CostReplayBufferSamples
from sb3_loop.safe.constraint import ConstrainedPolicy, constrain, hazard_cost
from sb3_loop.safe.costs import COST_KEY, CostWrapper, MissingCostError, costs_from_infos
from sb3_loop.safe.episode_costs import EpisodeCostMixin
from sb3_loop.safe.policies import SACLagPolicy, SafeLOOPPolicy
from sb3_loop.safe.sac_lagrangian import SACLagrangian
from sb3_loop.safe.safe_loop import SafeLOOP

__all__ = [
    "COST_KEY",
    "ConstrainedPolicy",
    "CostReplayBuffer",
    "CostReplayBufferSamples",
    "CostWrapper",
    "EpisodeCostMixin",
    "MissingCostError",
    "SACLagPolicy",
    "SACLagrangian",
    "SafeLOOP",
    "SafeLOOPPolicy",
    "constrain",
    "costs_from_infos",
    "hazard_cost",
]
