"""Planners: pure torch, no Stable-Baselines3 import."""

from sb3_loop.planning.arc import PROPAGATION_MODES, ARCConfig, ARCPlanner, PlanningModel
from sb3_loop.planning.scoring import MeanReturn, PessimisticReturn, Scorer

__all__ = ["PROPAGATION_MODES", "ARCConfig", "ARCPlanner", "MeanReturn", "PessimisticReturn", "PlanningModel", "Scorer"]
