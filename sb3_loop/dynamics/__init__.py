"""Probabilistic dynamics ensemble, its training, and termination functions (no SB3 import)."""

from sb3_loop.dynamics.ensemble import EnsembleLinear, ProbabilisticEnsemble, StepPrediction
from sb3_loop.dynamics.termination import get_termination_fn, never_terminates, register_termination_fn
from sb3_loop.dynamics.training import (
    EnsembleTrainingConfig,
    EnsembleTrainingStats,
    holdout_mask,
    print_fit_progress,
    scaled_mse,
    train_ensemble,
)

__all__ = [
    "EnsembleLinear",
    "EnsembleTrainingConfig",
    "EnsembleTrainingStats",
    "ProbabilisticEnsemble",
    "StepPrediction",
    "get_termination_fn",
    "holdout_mask",
    "never_terminates",
    "print_fit_progress",
    "register_termination_fn",
    "scaled_mse",
    "train_ensemble",
]
