"""
Termination functions for model-based rollouts.

A learned dynamics model predicts next observations but not whether the episode ended, so LOOP
needs a known ``termination_fn(next_obs) -> done`` per environment. The functions below
reproduce the ``terminated`` flag of the Gymnasium v5 MuJoCo environments built with their
default constructor arguments (``exclude_current_positions_from_observation=True``,
``terminate_when_unhealthy=True``, default healthy ranges), computed from the observation only.

Every function takes float observations of shape ``[..., obs_dim]`` (any leading batch shape)
and returns a bool tensor of shape ``[...]``, ``True`` meaning the episode terminated.

Deliberate choice: a non-finite observation (NaN / inf, e.g. a diverging model prediction) is
always treated as terminal by the functions of environments that can terminate. For Hopper, Ant
and InvertedPendulum this is exactly what Gymnasium does; for Walker2d and InvertedDoublePendulum
Gymnasium's comparisons would let some NaNs through, but the simulator never emits such states
(MuJoCo resets the simulation on instabilities), so this only affects model predictions.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Callable

import torch

__all__ = [
    "TerminationFn",
    "ant_termination",
    "get_termination_fn",
    "half_cheetah_termination",
    "hopper_termination",
    "inverted_double_pendulum_termination",
    "inverted_pendulum_termination",
    "never_terminates",
    "reacher_termination",
    "register_termination_fn",
    "swimmer_termination",
    "walker2d_termination",
]

#: Signature of a termination function: float next observations ``[..., obs_dim]`` -> bool ``[...]``.
TerminationFn = Callable[[torch.Tensor], torch.Tensor]


def _check_obs_dim(next_obs: torch.Tensor, allowed: tuple[int, ...], env_name: str) -> None:
    """
    Fail loudly when the observation layout is not the one the formula was derived for.

    :param next_obs: Observations of shape ``[..., obs_dim]``.
    :param allowed: Observation sizes the formula is valid for.
    :param env_name: Environment name used in the error message.
    """
    if next_obs.ndim == 0 or next_obs.shape[-1] not in allowed:
        shape = tuple(next_obs.shape)
        raise ValueError(
            f"{env_name} termination function expects observations of shape [..., obs_dim] with "
            f"obs_dim in {allowed} (Gymnasium default constructor arguments), got shape {shape}. "
            "If the environment was built with non-default arguments (e.g. "
            "exclude_current_positions_from_observation=False), pass a custom `termination_fn`."
        )


def never_terminates(next_obs: torch.Tensor) -> torch.Tensor:
    """
    Termination function of environments without a terminal condition.

    :param next_obs: Next observations of shape ``[..., obs_dim]``.
    :return: All-``False`` bool tensor of shape ``[...]``.
    """
    return torch.zeros(next_obs.shape[:-1], dtype=torch.bool, device=next_obs.device)


# HalfCheetah-v5, Swimmer-v5 and Reacher-v5 always return ``terminated=False``.
half_cheetah_termination = never_terminates
swimmer_termination = never_terminates
reacher_termination = never_terminates


def hopper_termination(next_obs: torch.Tensor) -> torch.Tensor:
    """
    Hopper-v5 (obs_dim 11): ``obs = [qpos[1:] (z, angle, 3 joints), clip(qvel, -10, 10)]``.

    Healthy iff ``0.7 < z < inf``, ``-0.2 < angle < 0.2`` and ``-100 < obs[1:] < 100``.
    Gymnasium checks the last condition on the *unclipped* velocities, which the observation does
    not contain (clipped to +-10); a velocity beyond +-100 therefore cannot be detected here.

    :param next_obs: Next observations of shape ``[..., 11]``.
    :return: Bool tensor of shape ``[...]``, ``True`` where the episode terminated.
    """
    _check_obs_dim(next_obs, (11,), "Hopper")
    z, angle, state = next_obs[..., 0], next_obs[..., 1], next_obs[..., 1:]
    healthy_state = ((state > -100.0) & (state < 100.0)).all(dim=-1)
    # ``z < inf`` also rejects NaN / +inf heights, like Gymnasium's ``min_z < z < max_z``.
    healthy_z = (z > 0.7) & (z < float("inf"))
    healthy_angle = (angle > -0.2) & (angle < 0.2)
    return ~(healthy_state & healthy_z & healthy_angle)


def walker2d_termination(next_obs: torch.Tensor) -> torch.Tensor:
    """
    Walker2d-v5 (obs_dim 17): ``obs = [qpos[1:] (z, angle, 6 joints), clip(qvel, -10, 10)]``.

    Healthy iff ``0.8 < z < 2.0`` and ``-1 < angle < 1`` (and, by our convention, finite obs).

    :param next_obs: Next observations of shape ``[..., 17]``.
    :return: Bool tensor of shape ``[...]``, ``True`` where the episode terminated.
    """
    _check_obs_dim(next_obs, (17,), "Walker2d")
    z, angle = next_obs[..., 0], next_obs[..., 1]
    finite = torch.isfinite(next_obs).all(dim=-1)
    healthy = finite & (z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0)
    return ~healthy


def ant_termination(next_obs: torch.Tensor) -> torch.Tensor:
    """
    Ant-v5: ``obs = [qpos[2:] (z, quaternion, 8 joints), qvel, clipped cfrc_ext]``.

    Healthy iff the state is finite and ``0.2 <= z <= 1.0`` (inclusive bounds, as in Gymnasium).
    obs_dim is 105 by default, 27 with ``include_cfrc_ext_in_observation=False`` (and 111 for the
    older Ant-v4 ``use_contact_forces=True`` layout); z is ``obs[0]`` in all of them.

    :param next_obs: Next observations of shape ``[..., obs_dim]``.
    :return: Bool tensor of shape ``[...]``, ``True`` where the episode terminated.
    """
    _check_obs_dim(next_obs, (27, 105, 111), "Ant")
    z = next_obs[..., 0]
    finite = torch.isfinite(next_obs).all(dim=-1)
    return ~(finite & (z >= 0.2) & (z <= 1.0))


def inverted_pendulum_termination(next_obs: torch.Tensor) -> torch.Tensor:
    """
    InvertedPendulum-v5 (obs_dim 4): ``obs = [cart x, pole angle, cart vel, pole angular vel]``.

    Terminated iff any obs is non-finite or ``|angle| > 0.2``.

    :param next_obs: Next observations of shape ``[..., 4]``.
    :return: Bool tensor of shape ``[...]``, ``True`` where the episode terminated.
    """
    _check_obs_dim(next_obs, (4,), "InvertedPendulum")
    finite = torch.isfinite(next_obs).all(dim=-1)
    return ~(finite & (next_obs[..., 1].abs() <= 0.2))


#: Pole lengths of ``inverted_double_pendulum.xml``: hinge -> hinge2 and hinge2 -> tip site.
_IDP_POLE1_LENGTH = 0.6
_IDP_POLE2_LENGTH = 0.6


def inverted_double_pendulum_termination(next_obs: torch.Tensor) -> torch.Tensor:
    """
    InvertedDoublePendulum-v5 (obs_dim 9):
    ``obs = [cart x, sin(t1), sin(t2), cos(t1), cos(t2), qvel (3), constraint force]``.

    Gymnasium terminates when the height of the ``tip`` site is ``y <= 1``. In the XML the cart and
    the first hinge are at height 0, hinge2 is 0.6 up pole 1 and the tip 0.6 up pole 2, both hinges
    rotating about the y axis, so ``y = 0.6 cos(t1) + 0.6 cos(t1 + t2)`` with
    ``cos(t1 + t2) = cos(t1) cos(t2) - sin(t1) sin(t2)``. The older 11-dim layout (v4) has the
    same first five entries and is accepted too.

    :param next_obs: Next observations of shape ``[..., 9]``.
    :return: Bool tensor of shape ``[...]``, ``True`` where the episode terminated.
    """
    _check_obs_dim(next_obs, (9, 11), "InvertedDoublePendulum")
    sin1, sin2 = next_obs[..., 1], next_obs[..., 2]
    cos1, cos2 = next_obs[..., 3], next_obs[..., 4]
    y = _IDP_POLE1_LENGTH * cos1 + _IDP_POLE2_LENGTH * (cos1 * cos2 - sin1 * sin2)
    finite = torch.isfinite(next_obs).all(dim=-1)
    return ~(finite & (y > 1.0))


# Keyed by the Gymnasium base name (the id without its "-vN" suffix). Version agnostic: the
# formulas hold for the v4 and v5 MuJoCo environments with default arguments.
_REGISTRY: dict[str, TerminationFn] = {
    "Hopper": hopper_termination,
    "Walker2d": walker2d_termination,
    "Ant": ant_termination,
    "InvertedPendulum": inverted_pendulum_termination,
    "InvertedDoublePendulum": inverted_double_pendulum_termination,
    "HalfCheetah": half_cheetah_termination,
    "Swimmer": swimmer_termination,
    "Reacher": reacher_termination,
    # Classic control task whose episodes only end by time limit.
    "Pendulum": never_terminates,
}
_WARNED_IDS: set[str | None] = set()
_LOCK = threading.Lock()
_VERSION_SUFFIX = re.compile(r"-v\d+$")


def register_termination_fn(name: str, fn: TerminationFn, overwrite: bool = False) -> None:
    """
    Register a termination function so that :func:`get_termination_fn` can find it by env id.

    :param name: A full env id (``"MyEnv-v1"``), matched first, or a base name (``"MyEnv"``),
        matched for every version of that env.
    :param fn: Termination function ``fn(next_obs [..., obs_dim]) -> bool [...]``.
    :param overwrite: Allow replacing an already registered function.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"Termination function name must be a non-empty str, got {name!r}")
    if not callable(fn):
        raise TypeError(f"Termination function must be callable, got {fn!r}")
    with _LOCK:
        if name in _REGISTRY and not overwrite and _REGISTRY[name] is not fn:
            raise ValueError(f"A termination function is already registered for {name!r}; pass overwrite=True to replace it.")
        _REGISTRY[name] = fn


def _lookup(env_id: str) -> TerminationFn | None:
    """
    :param env_id: ``"Hopper-v5"``, ``"module.path:Hopper-v5"`` or ``"Hopper"``.
    :return: The registered function, or ``None`` when unknown.
    """
    # Exact id first (lets users register a specific version), then without the entry-point
    # module prefix, then the base name without "-vN".
    short_id = env_id.rsplit(":", 1)[-1]
    for key in (env_id, short_id, _VERSION_SUFFIX.sub("", short_id)):
        if key in _REGISTRY:
            return _REGISTRY[key]
    return None


def get_termination_fn(env_id_or_fn: str | TerminationFn | None) -> TerminationFn:
    """
    Resolve the termination function to use for model rollouts.

    :param env_id_or_fn: A user termination function (returned unchanged), a Gymnasium env id
        (``"Hopper-v5"``, ``"gymnasium.envs.mujoco:Hopper-v5"`` or a base name ``"Hopper"``;
        case-sensitive), or ``None``. Unknown ids and ``None`` resolve to
        :func:`never_terminates` with one ``UserWarning`` per id and process.
    :return: A termination function ``fn(next_obs [..., obs_dim]) -> bool [...]``.
    """
    if env_id_or_fn is not None and not isinstance(env_id_or_fn, str):
        if callable(env_id_or_fn):
            return env_id_or_fn
        raise TypeError(
            "termination_fn must be an env id (str), a callable or None, "
            f"got {env_id_or_fn!r} of type {type(env_id_or_fn).__name__}"
        )
    with _LOCK:
        fn = None if env_id_or_fn is None else _lookup(env_id_or_fn)
        if fn is not None:
            return fn
        first_time = env_id_or_fn not in _WARNED_IDS
        _WARNED_IDS.add(env_id_or_fn)
    if first_time:
        warnings.warn(
            f"Termination function is unknown for env id {env_id_or_fn!r}: the model will assume "
            "the episode never ends. If the environment can terminate, pass a custom "
            "`termination_fn(next_obs: Tensor [..., obs_dim]) -> bool Tensor [...]`, or register "
            "one with `sb3_loop.dynamics.termination.register_termination_fn(name, fn)`.",
            UserWarning,
            stacklevel=2,
        )
    return never_terminates
