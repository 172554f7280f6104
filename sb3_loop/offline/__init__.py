"""Offline RL priors trained on a fixed dataset: CRR and TD3+BC."""

from sb3_loop.offline.common import ObservationNormalizer, OfflineAlgorithm
from sb3_loop.offline.crr import CRR
from sb3_loop.offline.td3bc import TD3BC

__all__ = ["CRR", "TD3BC", "ObservationNormalizer", "OfflineAlgorithm"]
