"""
Per-step constraint costs: where they come from (``info["cost"]``), the error when an env has none, and
:class:`CostWrapper` to give any env a cost function.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

#: The ``info`` key every safe algorithm of this package reads the per-step cost from.
COST_KEY = "cost"

CostFunction = Callable[[Any, Any, Any], SupportsFloat]


def _safety_env_ids() -> tuple[str, ...]:
    from sb3_loop.envs import SAFETY_ENV_IDS

    return SAFETY_ENV_IDS


class MissingCostError(ValueError):
    """
    An env step's ``info`` has no ``"cost"`` entry. The message names the env (when known), says which
    envs report a cost and how to add one to any other env.

    :param env_id: The env's id or a description of it (``None``: unknown).
    :param info_keys: The keys the step's ``info`` had instead.
    """

    def __init__(self, env_id: str | None = None, info_keys: Sequence[str] = ()) -> None:
        self.env_id = env_id
        self.info_keys = tuple(info_keys)
        env = f"env {env_id!r}" if env_id else "the env"
        super().__init__(
            f"{env} does not report a per-step constraint cost in info[{COST_KEY!r}] (its step info has "
            f"{list(self.info_keys)}). Safe algorithms need one. Envs that report it: {', '.join(_safety_env_ids())} "
            "(registered on `import sb3_loop`). For any other env, wrap it with "
            "`sb3_loop.safe.CostWrapper(env, cost_fn)`, cost_fn(obs, action, next_obs) -> float."
        )


def costs_from_infos(infos: Sequence[Mapping[str, Any]], env_id: str | None = None) -> np.ndarray:
    """
    The per-step costs of one VecEnv step, ``info["cost"]`` of each env.

    :param infos: The step's infos, one per env.
    :param env_id: Named by the error when a cost is missing.
    :return: float32 array of shape ``(len(infos),)``.
    :raises MissingCostError: An info has no ``"cost"``.
    :raises ValueError: A cost is not a finite number.
    """
    costs = np.empty(len(infos), dtype=np.float32)
    for index, info in enumerate(infos):
        if COST_KEY not in info:
            raise MissingCostError(env_id, list(info))
        value = float(info[COST_KEY])
        if not math.isfinite(value):
            env = f"env {env_id!r}" if env_id else "the env"
            raise ValueError(f"{env} reported info[{COST_KEY!r}] = {value} (env index {index}): costs must be finite")
        costs[index] = value
    return costs


def describe_vec_env(env: Any) -> str | None:
    """The id(s) of a VecEnv's envs (``"Pendulum-v1"``), or their class name when unregistered; ``None`` if unknown."""
    if env is None:
        return None
    try:
        specs = env.get_attr("spec")
        ids = sorted({spec.id for spec in specs if spec is not None})
        if ids:
            return ", ".join(ids)
        return type(env.get_attr("unwrapped", indices=[0])[0]).__name__
    except Exception:  # a description for an error message must never raise itself
        return None


def _resolve_cost_fn(cost_fn: CostFunction | str) -> CostFunction:
    if isinstance(cost_fn, str):
        module_name, sep, attribute = cost_fn.partition(":")
        if not sep or not module_name or not attribute:
            raise ValueError(f"cost_fn={cost_fn!r}: give a callable or an import path 'module:function'")
        cost_fn = getattr(importlib.import_module(module_name), attribute)
    if not callable(cost_fn):
        raise ValueError(f"cost_fn={cost_fn!r} is not callable")
    return cost_fn


class CostWrapper(gym.Wrapper):
    """
    Adds ``info["cost"] = cost_fn(obs, action, next_obs)`` to every step of an env (replacing any cost the
    env reported), for safe RL on envs without a built-in cost.

    ``obs`` is the observation the action was taken in, ``next_obs`` the one the step returned (the final
    observation when the episode ends), both as the wrapped env gives them.

    :param env: The env to wrap.
    :param cost_fn: ``cost_fn(obs, action, next_obs) -> float``, or its import path ``"module:function"``
        (usable from an rl-zoo3 YAML ``env_wrapper`` entry).
    """

    def __init__(self, env: gym.Env, cost_fn: CostFunction | str) -> None:
        super().__init__(env)
        self.cost_fn = _resolve_cost_fn(cost_fn)
        self._last_obs: Any = None

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._last_obs = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._last_obs is None:
            raise RuntimeError("CostWrapper: call reset() before step()")
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        info[COST_KEY] = float(self.cost_fn(self._last_obs, action, next_obs))
        self._last_obs = next_obs
        return next_obs, reward, terminated, truncated, info
