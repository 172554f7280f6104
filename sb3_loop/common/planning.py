"""
The one way LOOP, OfflineLOOP and SafeLOOP declare their planner and ensemble settings: constructor
arguments turned into :class:`PlanningSettings` (validated, errors naming the argument), and
:class:`PlanningAlgorithmMixin`, which builds the planning policy from them, refits the ensemble with
the fixed holdout by buffer index, logs ``dynamics/*`` and ``planner/*``, saves and loads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import pathlib
import secrets
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import torch as th
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.common.vec_env import VecEnv

from sb3_loop.common.policies import PlanningPolicyMixin, check_loop_spaces
from sb3_loop.dynamics import EnsembleTrainingConfig, EnsembleTrainingStats, print_fit_progress, train_ensemble
from sb3_loop.dynamics.ensemble import check_ensemble_shape
from sb3_loop.planning import PLANNER_NAMES, ARCConfig, MeanReturn, Scorer, check_planner_name

if TYPE_CHECKING:
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

    _Base = OffPolicyAlgorithm
else:
    _Base = object

SelfPlanning = TypeVar("SelfPlanning", bound="PlanningAlgorithmMixin")

#: LOOP's planner arguments -> ARCConfig fields (the online ARC).
ARC_ARGUMENTS: dict[str, str] = {
    "horizon": "horizon",
    "population_size": "population_size",
    "num_particles": "num_particles",
    "planning_iterations": "iterations",
    "mixture_coef": "mixture_coef",
    "kappa": "kappa",
    "var_momentum": "var_momentum",
    "propagation": "propagation",
}
#: Ensemble training arguments -> EnsembleTrainingConfig fields.
TRAINING_ARGUMENTS: dict[str, str] = {
    "dynamics_batch_size": "batch_size",
    "dynamics_max_epochs": "max_epochs",
    "dynamics_max_gradient_steps": "max_gradient_steps",
    "dynamics_holdout_ratio": "holdout_ratio",
    "dynamics_refit_selection": "refit_selection",
}
#: Arguments fixing the ensemble's shape and optimiser (the policy's ``dynamics_policy_kwargs``).
ENSEMBLE_ARGUMENTS = ("ensemble_size", "num_elites", "dynamics_hidden_sizes", "dynamics_learning_rate")
#: Fields of the ensemble's own checks -> argument names.
_ENSEMBLE_FIELDS = {"hidden_sizes": "dynamics_hidden_sizes"}

#: SB3 policy names the planning algorithms do not provide, with what to do instead.
UNSUPPORTED_POLICY_NAMES = {
    "MultiInputPolicy": "for Dict observations, flatten them first with gymnasium.wrappers.FlattenObservation",
    "CnnPolicy": "image observations are not supported (the dynamics model predicts flat state vectors)",
}


@contextlib.contextmanager
def named_as_arguments(names: Mapping[str, str]) -> Iterator[None]:
    """
    Re-raise a config's ``ValueError("field=...")`` as naming the constructor argument ``names[field]``.

    :param names: Config field -> argument name, for the fields whose names differ.
    """
    try:
        yield
    except ValueError as error:
        message = str(error)
        field = message.split("=", 1)[0]
        if field in names:
            raise ValueError(names[field] + message[len(field) :]) from error
        raise


@dataclasses.dataclass
class PlanningSettings:
    """
    The planner and ensemble settings of a planning algorithm, checked, in the form the algorithm keeps
    (and saves) them.

    :param arc_kwargs: :class:`~sb3_loop.planning.ARCConfig` fields.
    :param dynamics_policy_kwargs: The ensemble's shape and learning rate (:data:`ENSEMBLE_ARGUMENTS`).
    :param dynamics_training_config: How a refit trains the ensemble.
    :param termination_fn: Env id, callable or ``None`` (inferred from the env id).
    :param planner: The planner that acts, one of :data:`~sb3_loop.planning.PLANNER_NAMES`; planners other
        than ARC read the settings they share with ``arc_kwargs`` (:func:`~sb3_loop.planning.planner_config`).
    """

    arc_kwargs: dict[str, Any]
    dynamics_policy_kwargs: dict[str, Any]
    dynamics_training_config: EnsembleTrainingConfig
    termination_fn: str | Callable[[th.Tensor], th.Tensor] | None = None
    planner: str = "arc"

    @classmethod
    def from_arguments(
        cls,
        arguments: Mapping[str, Any],
        arc_arguments: Mapping[str, str] = ARC_ARGUMENTS,
        planners: Sequence[str] = PLANNER_NAMES,
        **fixed_arc: Any,
    ) -> PlanningSettings:
        """
        Settings from an algorithm's constructor arguments; a bad value raises ``ValueError`` naming the argument.

        :param arguments: The constructor's arguments by name (e.g. its ``locals()``); the names of
            ``arc_arguments``, :data:`TRAINING_ARGUMENTS`, :data:`ENSEMBLE_ARGUMENTS`, ``termination_fn``
            and ``planner`` (default ``"arc"``) are read, the rest ignored.
        :param arc_arguments: The algorithm's planner arguments -> ARCConfig fields.
        :param planners: The planners the algorithm may act with.
        :param fixed_arc: ARCConfig fields the algorithm fixes (e.g. its proposal mode).
        """
        planner = check_planner_name(arguments.get("planner", "arc"), planners)
        names = field_names(arc_arguments)
        arc_kwargs = {field: arguments[name] for name, field in arc_arguments.items() if name in arguments}
        arc_kwargs.update(fixed_arc)
        with named_as_arguments(names):
            ARCConfig(**arc_kwargs)
        shape = {name: arguments[name] for name in ENSEMBLE_ARGUMENTS if name in arguments}
        shape["dynamics_hidden_sizes"] = tuple(shape.get("dynamics_hidden_sizes", (200, 200, 200, 200)))
        with named_as_arguments(names):
            check_ensemble_shape(shape.get("ensemble_size", 7), shape.get("num_elites", 5), shape["dynamics_hidden_sizes"])
        training = {field: arguments[name] for name, field in TRAINING_ARGUMENTS.items() if name in arguments}
        with named_as_arguments(names):
            config = EnsembleTrainingConfig(**training)
        return cls(arc_kwargs, shape, config, arguments.get("termination_fn"), planner)


def field_names(arc_arguments: Mapping[str, str]) -> dict[str, str]:
    """Config field -> constructor argument, for the fields named differently."""
    pairs = {**arc_arguments, **TRAINING_ARGUMENTS}
    return {**{field: name for name, field in pairs.items() if field != name}, **_ENSEMBLE_FIELDS}


def replay_buffer_transitions(buffer: ReplayBuffer, obs_dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """
    All stored (obs, scaled action, reward, next_obs) of an SB3 replay buffer, float32, flattened over
    envs (row ``i`` is buffer slot ``i // n_envs``, env ``i % n_envs``: a stable index per slot).

    :param buffer: A replay buffer that stores ``next_observations`` (not ``optimize_memory_usage``).
    :param obs_dim: Flattened observation size.
    """
    if getattr(buffer, "optimize_memory_usage", False):
        raise ValueError("a replay buffer with optimize_memory_usage=True does not store next_observations")
    upper = buffer.buffer_size if buffer.full else buffer.pos

    def flat(array: np.ndarray, width: int | None) -> np.ndarray:
        array = np.asarray(array[:upper], dtype=np.float32)
        return array.reshape(-1, width) if width is not None else array.reshape(-1)

    return (
        flat(buffer.observations, obs_dim),
        flat(buffer.actions, buffer.action_dim),
        flat(buffer.rewards, None),
        flat(buffer.next_observations, obs_dim),
    )


def vec_env_id(env: VecEnv | None) -> str | None:
    """The Gymnasium id of a VecEnv's first env (``None`` without an env or a spec)."""
    if env is None:
        return None
    try:
        spec = env.get_attr("spec", indices=[0])[0]
    except (AttributeError, IndexError):
        return None
    return getattr(spec, "id", None)


class PlanningAlgorithmMixin(_Base):
    """
    Mixin (before the SB3 algorithm in the bases) for algorithms that act by planning over a dynamics
    ensemble with their actor and critic: ``LOOP(PlanningAlgorithmMixin, SAC)``, ``OfflineLOOP``, ...

    In ``__init__`` call :meth:`_init_planning` with the constructor's arguments before the SB3
    constructor, then :meth:`_resolve_termination_fn` after it. The mixin then

    - builds the policy (``policy_aliases["MlpPolicy"]``, a :class:`PlanningPolicyMixin`) with the
      ensemble, the planner settings, the scorer (:meth:`_make_scorer`) and the ``planning_seed``;
    - refits the ensemble (:meth:`fit_dynamics`, fixed holdout by buffer index) and logs ``dynamics/*``;
    - logs ``planner/ms_per_action``, ``planner/actor_divergence`` and ``planner/fallbacks`` at every dump;
    - acts with the actor alone in :meth:`actor_only`;
    - saves the ensemble's optimiser and loads with planner / training overrides (:meth:`load`).

    The settings live in ``arc_kwargs``, ``planner_name``, ``dynamics_policy_kwargs``,
    ``dynamics_training_config``, ``termination_fn`` and ``planning_seed`` (saved with the model; a model
    saved before ``planner_name`` existed loads with ARC).
    """

    policy: PlanningPolicyMixin
    #: The algorithm's planner arguments -> ARCConfig fields.
    arc_arguments: ClassVar[dict[str, str]] = ARC_ARGUMENTS
    #: ARCConfig fields the algorithm fixes.
    fixed_arc_settings: ClassVar[dict[str, Any]] = {}
    #: Attributes that configure the scorer (:meth:`_make_scorer`), e.g. a pessimism coefficient.
    scorer_arguments: ClassVar[tuple[str, ...]] = ()
    #: The planners the algorithm may act with (its ``planner`` argument).
    planner_names: ClassVar[tuple[str, ...]] = PLANNER_NAMES

    arc_kwargs: dict[str, Any]
    planner_name: str
    dynamics_policy_kwargs: dict[str, Any]
    dynamics_training_config: EnsembleTrainingConfig
    termination_fn: str | Callable[[th.Tensor], th.Tensor] | None
    planning_seed: int
    dynamics_log: list[dict[str, float | int | None]]

    # ------------------------------------------------------------------------------ construction
    def _init_planning(self, arguments: Mapping[str, Any], seed: int | None) -> None:
        """
        Check and keep the planner and ensemble settings (call first in ``__init__``).

        :param arguments: The constructor's arguments by name, see :meth:`PlanningSettings.from_arguments`.
        :param seed: The algorithm's seed, which is also the policy's ``planning_seed`` (``None``: one is
            drawn; it is saved with the model).
        """
        policy = arguments.get("policy")
        if isinstance(policy, type) and not self._accepts_policy_class(policy):
            base = self._policy_base().__name__
            raise ValueError(
                f"policy {policy.__name__} is not a {base}: {type(self).__name__} supports 'MlpPolicy' "
                f"({base}) on flat Box observations."
            )
        settings = PlanningSettings.from_arguments(
            arguments, self.arc_arguments, self.planner_names, **self.fixed_arc_settings
        )
        self.arc_kwargs = settings.arc_kwargs
        self.planner_name = settings.planner
        self.dynamics_policy_kwargs = settings.dynamics_policy_kwargs
        self.dynamics_training_config = settings.dynamics_training_config
        self.termination_fn = settings.termination_fn
        # Saved with the model (a loaded model keeps it, even when created with seed=None).
        self.planning_seed = int(seed) if seed is not None else secrets.randbits(63)
        self.dynamics_log = []

    def _resolve_termination_fn(self) -> None:
        """Pick the termination function from the env id when none was given (after the SB3 constructor)."""
        if self.termination_fn is None:
            self.termination_fn = self._env_id()

    @classmethod
    def _policy_base(cls) -> type[BasePolicy]:
        return cls.policy_aliases["MlpPolicy"]

    @classmethod
    def _accepts_policy_class(cls, policy_class: Any) -> bool:
        """Whether a policy class (given or saved) belongs to this algorithm."""
        return isinstance(policy_class, type) and issubclass(policy_class, cls._policy_base())

    def _get_policy_from_name(self, policy_name: str) -> type[BasePolicy]:
        if policy_name in UNSUPPORTED_POLICY_NAMES:
            raise ValueError(
                f"policy {policy_name!r} is not supported by {type(self).__name__}: it supports 'MlpPolicy' on "
                f"flat Box observations; {UNSUPPORTED_POLICY_NAMES[policy_name]}."
            )
        return super()._get_policy_from_name(policy_name)

    @classmethod
    def _wrap_env(cls, env: GymEnv, verbose: int = 0, monitor_wrapper: bool = True) -> VecEnv:
        check_loop_spaces(env.observation_space, env.action_space, cls.__name__)
        return super()._wrap_env(env, verbose, monitor_wrapper)  # type: ignore[misc]

    def _env_id(self) -> str | None:
        """The Gymnasium id of the env, used to pick the termination function."""
        return vec_env_id(self.env)

    def _setup_model(self) -> None:
        user_policy_kwargs = self.policy_kwargs
        self.policy_kwargs = {**self._planning_policy_kwargs(), **user_policy_kwargs}
        try:
            super()._setup_model()
        finally:
            self.policy_kwargs = user_policy_kwargs
        self._dynamics_generator = th.Generator().manual_seed(int(self.seed) if self.seed is not None else 0)

    def _planning_policy_kwargs(self) -> dict[str, Any]:
        """What the policy needs to build the ensemble and the planner."""
        return dict(
            arc_kwargs=self.arc_kwargs,
            planner_name=self.planner_name,
            termination_fn=self.termination_fn,
            planning_seed=self.planning_seed,
            scorer=self._make_scorer(),
            **self.dynamics_policy_kwargs,
        )

    def _make_scorer(self) -> Scorer:
        """How the planner scores sequences (online LOOP: the mean return)."""
        return MeanReturn()

    def configure_planner(self, **arguments: Any) -> None:
        """
        Change planner settings of a built model, weights untouched (e.g. to compare settings on one
        trained model): ``planner`` (which planner acts: ``"arc"``, ``"cem"``, ``"mppi"``, ``"shooting"``), the
        constructor's planner arguments (``horizon``, ``kappa``, ...) and scorer arguments
        (:attr:`scorer_arguments`). Warm starts are forgotten.

        :param arguments: Planner arguments by their constructor names.
        """
        known = ("planner", *self.arc_arguments, *self.scorer_arguments)
        unknown = sorted(set(arguments) - set(known))
        if unknown:
            raise ValueError(f"{unknown} are not planner arguments of {type(self).__name__}; those are {sorted(known)}")
        planner = check_planner_name(arguments.get("planner", self.planner_name), self.planner_names)
        arc = {self.arc_arguments[name]: value for name, value in arguments.items() if name in self.arc_arguments}
        merged = {**self.arc_kwargs, **arc}
        with named_as_arguments(field_names(self.arc_arguments)):
            config = ARCConfig(**merged)
        previous = {name: getattr(self, name) for name in self.scorer_arguments}
        vars(self).update({name: value for name, value in arguments.items() if name in self.scorer_arguments})
        try:
            scorer = self._make_scorer()
        except ValueError:
            vars(self).update(previous)
            raise
        self.arc_kwargs = merged
        self.planner_name = planner
        self.policy.configure_planner(config, scorer, planner)

    # ------------------------------------------------------------------------------------ acting
    @contextlib.contextmanager
    def actor_only(self: SelfPlanning) -> Iterator[SelfPlanning]:
        """
        Act with the actor alone inside the block (no planning), e.g. to compare or for speed::

            with model.actor_only():
                evaluate_policy(model, env)
        """
        with self.policy.actor_only():
            yield self

    # ------------------------------------------------------------------------------- the ensemble
    def _replay_transitions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """All stored (obs, scaled action, reward, next_obs), flattened over envs."""
        assert self.replay_buffer is not None
        return replay_buffer_transitions(self.replay_buffer, int(np.prod(self.observation_space.shape)))

    def _replay_costs(self) -> np.ndarray | None:
        """Constraint costs for the ensemble's extra target (none without a cost)."""
        return None

    def _fit_dynamics_on_replay_buffer(
        self, fresh: np.ndarray | None = None, print_epochs: bool = False
    ) -> EnsembleTrainingStats:
        """Fit the ensemble on every stored transition, each row's buffer position fixing its holdout membership."""
        obs, actions, rewards, next_obs = self._replay_transitions()
        return self.fit_dynamics(
            obs,
            actions,
            rewards,
            next_obs,
            cost=self._replay_costs(),
            indices=np.arange(len(rewards)),
            fresh=fresh,
            print_epochs=print_epochs,
        )

    def fit_dynamics(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        cost: np.ndarray | None = None,
        indices: np.ndarray | None = None,
        fresh: np.ndarray | None = None,
        print_epochs: bool = False,
    ) -> EnsembleTrainingStats:
        """
        Fit the policy's ensemble on transitions with ``dynamics_training_config`` and log the result
        under ``dynamics/*`` (once the model has a logger) and in ``dynamics_log``.

        :param obs: Observations [N, obs_dim].
        :param actions: Actions scaled to [-1, 1] [N, act_dim].
        :param rewards: Rewards [N].
        :param next_obs: Next observations [N, obs_dim].
        :param cost: Constraint costs [N] when the ensemble predicts them.
        :param indices: Stable id per transition (e.g. buffer slot) fixing its holdout membership.
        :param fresh: Mask of the transitions the model has never seen (reported as ``fresh_mse``).
        :param print_epochs: Print every epoch's holdout error (the progress of a long one-off fit).
        """
        dynamics = self.policy.dynamics
        dynamics.train()
        stats = train_ensemble(
            dynamics,
            dynamics.optimizer,
            obs,
            actions,
            rewards,
            next_obs,
            cost=cost,
            config=self.dynamics_training_config,
            generator=self._dynamics_generator,
            indices=indices,
            fresh=fresh,
            on_epoch=print_fit_progress(len(rewards)) if print_epochs else None,
        )
        dynamics.eval()
        entry = {
            "num_timesteps": self.num_timesteps,
            "holdout_mse": float(np.mean(stats.holdout_mse[: dynamics.num_elites])),
            "fresh_mse": stats.fresh_mse,
            "kept_previous": stats.kept_previous,
            "epochs": stats.epochs,
            "gradient_steps": stats.gradient_steps,
            "train_seconds": stats.seconds,
            "train_loss": stats.train_loss,
            "num_samples": stats.num_samples,
        }
        self.dynamics_log.append(entry)
        if getattr(self, "_logger", None) is None:  # called outside learn() before any learn()
            return stats
        for key, value in entry.items():
            if key != "num_timesteps" and value is not None:
                self.logger.record(f"dynamics/{key}", value)
        return stats

    # ----------------------------------------------------------------------------------- logging
    def _record_planner_logs(self) -> None:
        for key, value in (self.policy.pop_planning_stats() or {}).items():
            self.logger.record(f"planner/{key}", value)
        self.logger.record("planner/fallbacks", self.policy.num_fallbacks)

    def dump_logs(self) -> None:
        self._record_planner_logs()
        super().dump_logs()

    # ------------------------------------------------------------------------------- save / load
    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_dynamics_generator"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, variables = super()._get_torch_save_params()
        return [*state_dicts, "policy.dynamics.optimizer"], variables

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfPlanning],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfPlanning:
        """
        As SB3's ``load``, but first checks that the file holds a model of this class. Planner settings
        (``planner``, ``horizon``, ``population_size``, ...) and ensemble training settings passed as
        ``kwargs`` replace the saved ones; the ensemble's shape cannot change.
        """
        data = cls._check_saved_class(path, custom_objects)
        kwargs = cls._merge_saved_settings(data, kwargs)
        return super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)  # type: ignore[misc]

    @classmethod
    def _merge_saved_settings(cls, data: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Turn constructor-style overrides into the saved attributes they live in."""
        kwargs = dict(kwargs)
        if "planning_seed" not in data and "planning_seed" not in kwargs:
            # Saved before the planning seed was: plan with the training seed, the same one at every load.
            kwargs["planning_seed"] = int(data["seed"]) if data.get("seed") is not None else 0
        names = field_names(cls.arc_arguments)
        if "planner" in kwargs:
            kwargs["planner_name"] = check_planner_name(kwargs.pop("planner"), cls.planner_names)
        arc_overrides = {cls.arc_arguments[name]: kwargs.pop(name) for name in list(kwargs) if name in cls.arc_arguments}
        if arc_overrides:
            merged = {**data.get("arc_kwargs", {}), **arc_overrides}
            with named_as_arguments(names):
                ARCConfig(**merged)
            kwargs["arc_kwargs"] = merged
        training_overrides = {field: kwargs.pop(name) for name, field in TRAINING_ARGUMENTS.items() if name in kwargs}
        if training_overrides and "dynamics_training_config" in data:
            with named_as_arguments(names):
                kwargs["dynamics_training_config"] = dataclasses.replace(
                    data["dynamics_training_config"], **training_overrides
                )
        saved_shape = data.get("dynamics_policy_kwargs", {})
        for name in list(kwargs):
            if name in saved_shape:
                value = kwargs.pop(name)
                saved = saved_shape[name]
                if name == "dynamics_hidden_sizes":
                    value, saved = tuple(value), tuple(saved)
                if value != saved:
                    raise ValueError(
                        f"cannot change {name} when loading (saved: {saved!r}, given: {value!r}); "
                        "the saved ensemble has that shape"
                    )
        return kwargs

    @classmethod
    def _check_saved_class(
        cls, path: str | pathlib.Path | io.BufferedIOBase, custom_objects: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The saved data, after checking that the file holds a model of this class."""
        if isinstance(path, (str, pathlib.Path)):
            candidate = pathlib.Path(path)
            if not candidate.exists() and candidate.with_suffix(".zip").exists():
                candidate = candidate.with_suffix(".zip")
            if not candidate.exists():
                raise FileNotFoundError(f"no saved model at {str(path)!r}")
            if not zipfile.is_zipfile(candidate):
                raise ValueError(f"{str(path)!r} is not a Stable-Baselines3 model file (not a zip archive)")
        data, _, _ = load_from_zip_file(path, load_data=True, custom_objects=custom_objects, device="cpu")
        if isinstance(path, io.BufferedIOBase):
            path.seek(0)
        data = data or {}
        policy_class = data.get("policy_class")
        if not cls._accepts_policy_class(policy_class):
            name = getattr(policy_class, "__name__", repr(policy_class))
            raise ValueError(
                f"{str(path)!r} does not hold a {cls.__name__} model (its policy class is {name}); "
                f"load it with the algorithm that saved it."
            )
        return data
