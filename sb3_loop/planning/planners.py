"""The planners by name, and how one planner's settings are read from another's (e.g. LOOP's ARC settings)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from sb3_loop.planning.arc import ARCPlanner
from sb3_loop.planning.cem import CEMPlanner
from sb3_loop.planning.mppi import MPPIPlanner
from sb3_loop.planning.sampling import PlanningModel, SamplingConfig, SamplingPlanner
from sb3_loop.planning.scoring import Scorer
from sb3_loop.planning.shooting import RandomShootingPlanner

#: Planner name -> planner class (its settings class is the planner's ``config_class``).
PLANNERS: dict[str, type[SamplingPlanner]] = {
    "arc": ARCPlanner,
    "cem": CEMPlanner,
    "mppi": MPPIPlanner,
    "shooting": RandomShootingPlanner,
}
PLANNER_NAMES = tuple(PLANNERS)


def check_planner_name(name: object, allowed: Sequence[str] = PLANNER_NAMES) -> str:
    """
    Return ``name`` if it names a planner in ``allowed``, else raise ``ValueError`` naming it.

    :param name: A planner name.
    :param allowed: The names accepted.
    """
    if not isinstance(name, str) or name not in allowed:
        raise ValueError(f"planner={name!r} must be one of {tuple(allowed)}")
    return name


def planner_config(name: str, settings: SamplingConfig | Mapping[str, Any]) -> SamplingConfig:
    """
    The settings of planner ``name`` read from another planner's settings: every field of the named
    planner's config that ``settings`` has (the shared ones: horizon, population, particles, iterations,
    propagation, ...) is taken from them, the others (its own constants) keep their defaults.

    :param name: One of :data:`PLANNER_NAMES`.
    :param settings: A planner config, or its fields by name (e.g. LOOP's ``arc_kwargs``).
    """
    config_class = PLANNERS[check_planner_name(name)].config_class
    if isinstance(settings, config_class):
        return settings
    values = vars(settings) if isinstance(settings, SamplingConfig) else settings
    fields = {field.name for field in dataclasses.fields(config_class)}
    return config_class(**{key: value for key, value in values.items() if key in fields})


def build_planner(
    name: str,
    model: PlanningModel,
    actor: Callable[[torch.Tensor], torch.Tensor],
    value_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    action_low: np.ndarray | torch.Tensor | Sequence[float],
    action_high: np.ndarray | torch.Tensor | Sequence[float],
    settings: SamplingConfig | Mapping[str, Any] | None = None,
    termination_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    scorer: Scorer | None = None,
) -> SamplingPlanner:
    """
    The planner ``name`` with its settings read from ``settings`` (see :func:`planner_config`); the
    other arguments are those of :class:`~sb3_loop.planning.sampling.SamplingPlanner`.

    :param name: One of :data:`PLANNER_NAMES`.
    :param settings: A planner config or its fields by name (``None``: the planner's defaults).
    """
    config = planner_config(name, settings if settings is not None else {})
    return PLANNERS[name](model, actor, value_fn, action_low, action_high, config, termination_fn, scorer)
