"""
D4RL normalized scores: ``100 * (R - random) / (expert - random)`` with D4RL's reference returns, so
0 is a random policy and 100 an expert one.
"""

from __future__ import annotations

import numpy as np

from sb3_loop.datasets import registry

#: D4RL's reference episode returns ``(random, expert)`` per environment.
REFERENCE_RETURNS: dict[str, tuple[float, float]] = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}


def _environment_name(env: str) -> str:
    """The key of :data:`REFERENCE_RETURNS` that ``env`` refers to."""
    parsed = registry.parse_dataset_name(env)
    candidates = [parsed[0]] if parsed is not None else []
    candidates += env.split("/")  # Minari ids: "mujoco/hopper/medium-v0"
    for candidate in candidates:
        name = candidate.split("-")[0].lower()  # "Hopper-v5", "hopper-medium-v2" -> "hopper"
        if name in REFERENCE_RETURNS:
            return name
    raise ValueError(
        f"no D4RL reference returns for {env!r}: known environments are {', '.join(REFERENCE_RETURNS)} "
        "(as env ids like Hopper-v5, D4RL names like hopper-medium-v2, or dataset names like Hopper-v5-medium)"
    )


def reference_returns(env: str) -> tuple[float, float]:
    """
    D4RL's ``(random, expert)`` episode returns for ``env``.

    :param env: An env id (``Hopper-v5``, any version), a D4RL name (``hopper``, ``hopper-medium-v2``)
        or a dataset name (``Hopper-v5-medium``).
    :raises ValueError: When there are no reference returns for ``env``.
    """
    return REFERENCE_RETURNS[_environment_name(env)]


def normalized_score(env: str, returns: float | np.ndarray) -> float | np.ndarray:
    """
    D4RL normalized score: 0 for the random policy's return, 100 for the expert's.

    :param env: As for :func:`reference_returns`.
    :param returns: One episode return or an array of them.
    :return: A float for a scalar ``returns``, otherwise an array of the same shape.
    """
    low, high = reference_returns(env)
    scores = 100.0 * (np.asarray(returns, dtype=np.float64) - low) / (high - low)
    return float(scores) if scores.ndim == 0 else scores
