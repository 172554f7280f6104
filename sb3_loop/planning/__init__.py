"""Planners: pure torch, no Stable-Baselines3 import."""

from sb3_loop.planning.arc import PROPAGATION_MODES, PROPOSAL_MODES, ARCConfig, ARCPlanner, PlanningModel
from sb3_loop.planning.feasibility import (
    CostFunctionModel,
    Feasibility,
    FeasibilityLog,
    FeasibilityScorer,
    IterationSchedule,
    PlanningCostFn,
)
from sb3_loop.planning.scoring import ConstrainedReturn, MeanReturn, PessimisticReturn, Scorer

__all__ = [
    "PROPAGATION_MODES",
    "PROPOSAL_MODES",
    "ARCConfig",
    "ARCPlanner",
    "ConstrainedReturn",
    "CostFunctionModel",
    "Feasibility",
    "FeasibilityLog",
    "FeasibilityScorer",
    "IterationSchedule",
    "MeanReturn",
    "PessimisticReturn",
    "PlanningCostFn",
    "PlanningModel",
    "Scorer",
]
