"""
Safe (constrained) RL: per-step costs from ``info["cost"]``, a replay buffer that stores them, episode-cost
tracking and the SAC-Lagrangian baseline.
"""

from sb3_loop.safe.buffers import CostReplayBuffer, CostReplayBufferSamples
from sb3_loop.safe.costs import COST_KEY, CostWrapper, MissingCostError, costs_from_infos
from sb3_loop.safe.episode_costs import EpisodeCostMixin
from sb3_loop.safe.policies import SACLagPolicy
from sb3_loop.safe.sac_lagrangian import SACLagrangian

__all__ = [
    "COST_KEY",
    "CostReplayBuffer",
    "CostReplayBufferSamples",
    "CostWrapper",
    "EpisodeCostMixin",
    "MissingCostError",
    "SACLagPolicy",
    "SACLagrangian",
    "costs_from_infos",
]
