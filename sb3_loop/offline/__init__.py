"""Offline RL: the priors trained on a fixed dataset (CRR, TD3+BC) and OfflineLOOP planning around them."""

from sb3_loop.offline.common import ObservationNormalizer, OfflineAlgorithm
from sb3_loop.offline.crr import CRR
from sb3_loop.offline.offline_loop import OfflineLOOP, OfflineLOOPCRR, OfflineLOOPTD3BC
from sb3_loop.offline.policies import OfflineLOOPPolicy, OfflineLOOPTD3Policy
from sb3_loop.offline.td3bc import TD3BC

__all__ = [
    "CRR",
    "TD3BC",
    "ObservationNormalizer",
    "OfflineAlgorithm",
    "OfflineLOOP",
    "OfflineLOOPCRR",
    "OfflineLOOPPolicy",
    "OfflineLOOPTD3BC",
    "OfflineLOOPTD3Policy",
]
