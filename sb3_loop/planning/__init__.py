"""Planners: pure torch, no Stable-Baselines3 import."""

from sb3_loop.planning.arc import PROPOSAL_MODES, ARCConfig, ARCPlanner
from sb3_loop.planning.cem import CEMConfig, CEMPlanner
from sb3_loop.planning.feasibility import (
    CostFunctionModel,
    Feasibility,
    FeasibilityLog,
    FeasibilityScorer,
    IterationSchedule,
    PlanningCostFn,
)
from sb3_loop.planning.mppi import MPPIConfig, MPPIPlanner
from sb3_loop.planning.planners import PLANNER_NAMES, PLANNERS, build_planner, check_planner_name, planner_config
from sb3_loop.planning.sampling import PROPAGATION_MODES, PlanningModel, SamplingConfig, SamplingPlanner
from sb3_loop.planning.scoring import ConstrainedReturn, MeanReturn, PessimisticReturn, Scorer
from sb3_loop.planning.shooting import RandomShootingPlanner, ShootingConfig

__all__ = [
    "PLANNERS",
    "PLANNER_NAMES",
    "PROPAGATION_MODES",
    "PROPOSAL_MODES",
    "ARCConfig",
    "ARCPlanner",
    "CEMConfig",
    "CEMPlanner",
    "ConstrainedReturn",
    "CostFunctionModel",
    "Feasibility",
    "FeasibilityLog",
    "FeasibilityScorer",
    "IterationSchedule",
    "MPPIConfig",
    "MPPIPlanner",
    "MeanReturn",
    "PessimisticReturn",
    "PlanningCostFn",
    "PlanningModel",
    "RandomShootingPlanner",
    "SamplingConfig",
    "SamplingPlanner",
    "Scorer",
    "ShootingConfig",
    "build_planner",
    "check_planner_name",
    "planner_config",
]
