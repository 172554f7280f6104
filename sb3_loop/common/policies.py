"""
What every planning policy shares (LOOP, OfflineLOOP, lookahead): a dynamics ensemble and planners (ARC,
CEM, MPPI or random shooting) hung off an SB3 actor-critic policy, so that ``predict()`` plans and SB3's
save/load carries the ensemble.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.td3.policies import Actor as TD3Actor

from sb3_loop.dynamics import ProbabilisticEnsemble, get_termination_fn
from sb3_loop.planning import ARCConfig, PlanningModel, SamplingPlanner, Scorer, build_planner, check_planner_name

if TYPE_CHECKING:
    _PolicyBase = BasePolicy
else:
    _PolicyBase = object

#: Independent random streams derived from a policy's ``planning_seed``.
PLANNING_STREAMS = ("deterministic", "predict", "explore")


def check_planning_seed(planning_seed: Any) -> int:
    """
    Return ``planning_seed`` as an ``int``, or raise ``ValueError`` if it cannot seed a torch generator.

    :param planning_seed: An integer in ``[0, 2**64)``.
    """
    is_integer = isinstance(planning_seed, (int, np.integer)) and not isinstance(planning_seed, bool)
    if not (is_integer and 0 <= int(planning_seed) < 2**64):
        raise ValueError(f"planning_seed={planning_seed!r} must be an integer in [0, 2**64)")
    return int(planning_seed)


def stream_seed(planning_seed: int, stream: str) -> int:
    """
    The seed of one of the :data:`PLANNING_STREAMS`: statistically independent seeds for each stream.

    :param planning_seed: The policy's planning seed.
    :param stream: One of :data:`PLANNING_STREAMS`.
    """
    if stream not in PLANNING_STREAMS:
        raise ValueError(f"stream={stream!r} must be one of {PLANNING_STREAMS}")
    sequence = np.random.SeedSequence([planning_seed, PLANNING_STREAMS.index(stream)])
    return int(sequence.generate_state(1, dtype=np.uint64)[0])


def check_loop_spaces(observation_space: spaces.Space, action_space: spaces.Space, algorithm: str = "LOOP") -> None:
    """
    Raise ``ValueError`` for spaces a model-based planner over flat vectors cannot handle.

    :param observation_space: Must be a flat (1-D), non-image ``Box``.
    :param action_space: Must be a bounded ``Box``.
    :param algorithm: Name used in the message.
    """
    if not isinstance(observation_space, spaces.Box) or is_image_space(observation_space, check_channels=False):
        raise ValueError(
            f"{algorithm} does not support the observation space {observation_space}: the dynamics model "
            "needs a flat continuous Box observation space (Dict, Discrete, MultiDiscrete, MultiBinary and "
            "image observations are not supported; flatten them with a wrapper first)."
        )
    if len(observation_space.shape) != 1:
        raise ValueError(
            f"{algorithm} needs 1-D Box observations, got shape {observation_space.shape} "
            f"({observation_space}); use gymnasium.wrappers.FlattenObservation."
        )
    if not isinstance(action_space, spaces.Box):
        raise ValueError(
            f"{algorithm} does not support the action space {action_space}: only continuous Box action spaces "
            "are supported (Discrete, MultiDiscrete, MultiBinary and Dict actions are not)."
        )
    if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
        raise ValueError(f"{algorithm} needs finite action bounds, got {action_space}")


def deterministic_action(policy: BasePolicy, obs: th.Tensor) -> th.Tensor:
    """
    The deterministic action of an SB3 actor-critic policy's actor, squashed to [-1, 1].

    :param policy: A SAC, TD3 or TQC policy (or ours built on them).
    :param obs: Observations [M, obs_dim].
    """
    actor = policy.actor  # type: ignore[attr-defined]
    if isinstance(actor, TD3Actor):
        return actor(obs)
    return actor(obs, deterministic=True)


def terminal_value(policy: BasePolicy, obs: th.Tensor, action: th.Tensor) -> th.Tensor:
    """
    The critic's estimate ``Q(obs, action)`` used as the planner's terminal value: the first twin critic
    (as in the LOOP paper's code), or for TQC the mean over all critics' quantiles (the value its actor
    maximises).

    :param policy: A SAC, TD3 or TQC policy (or ours built on them).
    :param obs: Observations [M, obs_dim].
    :param action: Actions in [-1, 1], [M, act_dim].
    :return: [M, 1] values.
    """
    critic = policy.critic  # type: ignore[attr-defined]
    if hasattr(critic, "q1_forward"):
        return critic.q1_forward(obs, action)
    return critic(obs, action).mean(dim=(1, 2)).unsqueeze(1)


class PlanningPolicyMixin(_PolicyBase):
    """
    Mixin (before the SB3 policy in the bases) that gives an actor-critic policy a dynamics ensemble
    and planners: ``predict()`` plans (ARC proposing with the deterministic actor; every planner scoring the
    last action with the critic, :func:`terminal_value`). The ensemble and planner settings are constructor
    arguments, so SB3's save/load carries them.

    Set ``use_planner = False`` (or use the algorithm's ``actor_only()``) to act with the actor alone.
    Until the ensemble has been trained once, the policy acts with the actor too.

    :param ensemble_size: Dynamics ensemble members.
    :param num_elites: Members used for planning.
    :param dynamics_hidden_sizes: Hidden layer widths of each member.
    :param dynamics_learning_rate: Adam learning rate of the ensemble.
    :param arc_kwargs: :class:`~sb3_loop.planning.ARCConfig` fields; the other planners read the fields
        they share with it (:func:`~sb3_loop.planning.planner_config`).
    :param planner_name: The planner that acts: ``"arc"``, ``"cem"``, ``"mppi"`` or ``"shooting"``.
    :param termination_fn: Env id or callable, see :func:`~sb3_loop.dynamics.get_termination_fn`.
    :param num_extra_targets: Extra predicted quantities (1 for SafeLOOP's constraint cost).
    :param planning_seed: Seeds the planner's random numbers. With ``deterministic=True`` every
        environment's planner draws from a generator seeded afresh with it at each call, so the action
        depends only on the weights, the observation and the warm start. Stochastic acting draws from
        persistent generators seeded with it, one for ``predict`` and one for training rollouts.
    :param scorer: How the planner scores sequences from their per-particle returns (``None``: the mean
        return, online LOOP's); see :mod:`sb3_loop.planning.scoring`.
    """

    dynamics: ProbabilisticEnsemble
    planner: SamplingPlanner
    rollout_planner: SamplingPlanner

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        *args: Any,
        ensemble_size: int = 7,
        num_elites: int = 5,
        dynamics_hidden_sizes: Sequence[int] = (200, 200, 200, 200),
        dynamics_learning_rate: float = 1e-3,
        arc_kwargs: dict[str, Any] | None = None,
        planner_name: str = "arc",
        termination_fn: str | Callable[[th.Tensor], th.Tensor] | None = None,
        num_extra_targets: int = 0,
        planning_seed: int = 0,
        scorer: Scorer | None = None,
        **kwargs: Any,
    ) -> None:
        check_loop_spaces(observation_space, action_space)
        self.planning_seed = check_planning_seed(planning_seed)
        if not dynamics_learning_rate > 0:
            raise ValueError(f"dynamics_learning_rate={dynamics_learning_rate} must be > 0")
        self.dynamics_kwargs = dict(
            ensemble_size=ensemble_size,
            num_elites=num_elites,
            hidden_sizes=tuple(dynamics_hidden_sizes),
            num_extra_targets=num_extra_targets,
        )
        self.dynamics_learning_rate = dynamics_learning_rate
        self.arc_config = ARCConfig(**(arc_kwargs or {}))
        self.planner_name = check_planner_name(planner_name)
        self.termination_fn = termination_fn
        self.scorer = scorer
        super().__init__(observation_space, action_space, *args, **kwargs)

    def _build(self, lr_schedule: Callable[[float], float]) -> None:
        super()._build(lr_schedule)  # type: ignore[misc]
        self._build_planning()

    def _build_planning(self) -> None:
        """The ensemble with its optimiser and the two planners (after the actor and critic exist)."""
        obs_dim = int(np.prod(self.observation_space.shape))
        action_dim = int(np.prod(self.action_space.shape))
        self.dynamics = ProbabilisticEnsemble(obs_dim, action_dim, **self.dynamics_kwargs).to(self.device)
        self.dynamics.optimizer = th.optim.Adam(self.dynamics.parameters(), lr=self.dynamics_learning_rate)
        self.use_planner = True
        # One planner answers predict(); the other acts during training, so that evaluation episodes
        # (e.g. EvalCallback) do not disturb the warm start of the training episodes.
        self.planner = self.make_planner()
        self.rollout_planner = self.make_planner()
        self._plan_seconds = 0.0
        self._plan_actions = 0
        self._divergence_sum = 0.0
        self._stochastic_generators: dict[str, th.Generator] = {}

    # ------------------------------------------------------------------------------ the planner
    def planning_actor(self, obs: th.Tensor) -> th.Tensor:
        """The deterministic actor the planner rolls out (squashed actions in [-1, 1])."""
        return deterministic_action(self, obs)  # type: ignore[arg-type]

    def planning_value(self, obs: th.Tensor, action: th.Tensor) -> th.Tensor:
        """The terminal value of the planner's sequences."""
        return terminal_value(self, obs, action)  # type: ignore[arg-type]

    def actor_action(self, observation: th.Tensor, deterministic: bool) -> th.Tensor:
        """The action of the actor alone (no planning)."""
        return super()._predict(observation, deterministic)  # type: ignore[safe-super]

    def make_planner(
        self,
        scorer: Scorer | None = None,
        config: ARCConfig | None = None,
        model: PlanningModel | None = None,
        planner_name: str | None = None,
    ) -> SamplingPlanner:
        """
        A planner in the squashed action space [-1, 1] (where the actor, critic and model live).

        :param scorer: Sequence scoring (default: the policy's ``scorer``, else the mean return).
        :param config: Planner settings (default: the policy's ``arc_config``); a planner other than ARC
            reads the fields it shares with them.
        :param model: The model the planner rolls out (default: the ensemble), e.g. the ensemble with a
            cost function (:class:`~sb3_loop.planning.CostFunctionModel`).
        :param planner_name: Which planner (default: the policy's ``planner_name``).
        """
        action_dim = int(np.prod(self.action_space.shape))
        return build_planner(
            planner_name if planner_name is not None else self.planner_name,
            model=model if model is not None else self.dynamics,
            actor=self.planning_actor,
            value_fn=self.planning_value,
            action_low=-np.ones(action_dim, dtype=np.float32),
            action_high=np.ones(action_dim, dtype=np.float32),
            settings=config if config is not None else self.arc_config,
            termination_fn=get_termination_fn(self.termination_fn),
            scorer=scorer if scorer is not None else self.scorer,
        )

    def configure_planner(
        self, arc_config: ARCConfig | None = None, scorer: Scorer | None = None, planner_name: str | None = None
    ) -> None:
        """
        Replace the planner settings, the scorer and/or the planner of a built policy (weights untouched);
        the warm starts are forgotten.

        :param arc_config: New planner settings (``None``: keep).
        :param scorer: New scorer (``None``: keep).
        :param planner_name: New planner, see :data:`~sb3_loop.planning.PLANNER_NAMES` (``None``: keep).
        """
        if planner_name is not None:
            self.planner_name = check_planner_name(planner_name)
        if arc_config is not None:
            self.arc_config = arc_config
        if scorer is not None:
            self.scorer = scorer
        self.planner = self.make_planner()
        self.rollout_planner = self.make_planner()

    @contextlib.contextmanager
    def actor_only(self) -> Iterator[None]:
        """Act with the actor alone inside the block (no planning)."""
        previous = self.use_planner
        self.use_planner = False
        try:
            yield
        finally:
            self.use_planner = previous

    @property
    def num_fallbacks(self) -> int:
        """Plans replaced by the actor's action because the model's predictions were not finite."""
        return self.planner.num_fallbacks + self.rollout_planner.num_fallbacks

    def pop_planning_stats(self) -> dict[str, float] | None:
        """
        Since the last call (``None`` if nothing was planned): ``ms_per_action``, the mean milliseconds per
        planned action, and ``actor_divergence``, the mean squared distance ``|a_plan - a_actor|^2`` between
        the planned actions and the deterministic actor's actions on the same observations.
        """
        if self._plan_actions == 0:
            return None
        stats = {
            "ms_per_action": 1e3 * self._plan_seconds / self._plan_actions,
            "actor_divergence": self._divergence_sum / self._plan_actions,
        }
        self._plan_seconds, self._plan_actions, self._divergence_sum = 0.0, 0, 0.0
        return stats

    def pop_planning_time(self) -> float | None:
        """Mean milliseconds per planned action since the last call (``None`` if nothing was planned)."""
        stats = self.pop_planning_stats()
        return None if stats is None else stats["ms_per_action"]

    # ----------------------------------------------------------------------------------- acting
    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """
        As SB3's ``predict``; ``episode_start`` (as passed by ``evaluate_policy``) resets the
        planner's warm start for the environments whose episode begins.
        """
        if episode_start is not None:
            self.planner.reset(np.asarray(episode_start, dtype=bool))
        return super().predict(observation, state, episode_start, deterministic)  # type: ignore[safe-super]

    def _predict(self, observation: th.Tensor, deterministic: bool = False) -> th.Tensor:
        return self._act(self.planner, observation, deterministic, stream="predict")

    def explore(self, observation: np.ndarray) -> np.ndarray:
        """
        Plan the training action (stochastic choice) with the rollout planner.

        :param observation: Batched observations [n_envs, obs_dim].
        :return: Squashed actions in [-1, 1], [n_envs, act_dim].
        """
        self.set_training_mode(False)
        obs_tensor, _ = self.obs_to_tensor(observation)
        with th.no_grad():
            action = self._act(self.rollout_planner, obs_tensor, deterministic=False, stream="explore")
        return action.cpu().numpy().reshape((-1, *self.action_space.shape))

    def planning_generators(
        self, num_envs: int, deterministic: bool, stream: str = "predict"
    ) -> th.Generator | list[th.Generator]:
        """
        The generators the planner draws from, on the policy's device.

        :param num_envs: Observations planned at once.
        :param deterministic: One generator per environment, each seeded afresh with ``planning_seed``:
            an environment's action then depends neither on earlier calls nor on the rest of the batch.
            Otherwise the persistent generator of ``stream``, which keeps drawing fresh numbers.
        :param stream: ``"predict"`` or ``"explore"`` (training rollouts), so that evaluating a model
            during training leaves the training rollouts' random numbers unchanged.
        """
        if stream not in ("predict", "explore"):
            raise ValueError(f"stream={stream!r} must be 'predict' or 'explore'")
        if deterministic:
            seed = stream_seed(self.planning_seed, "deterministic")
            return [th.Generator(device=self.device).manual_seed(seed) for _ in range(num_envs)]
        generator = self._stochastic_generators.get(stream)
        if generator is None or generator.device != self.device:
            generator = th.Generator(device=self.device).manual_seed(stream_seed(self.planning_seed, stream))
            self._stochastic_generators[stream] = generator
        return generator

    def _act(self, planner: SamplingPlanner, observation: th.Tensor, deterministic: bool, stream: str) -> th.Tensor:
        if not (self.use_planner and self.dynamics.is_trained):
            return self.actor_action(observation, deterministic)
        obs = observation.float().reshape(observation.shape[0], -1)
        generator = self.planning_generators(obs.shape[0], deterministic, stream)
        start = time.perf_counter()
        action = planner.plan(obs, deterministic=deterministic, generator=generator)
        self._plan_seconds += time.perf_counter() - start
        self._plan_actions += obs.shape[0]
        with th.no_grad():
            self._divergence_sum += float(((action - self.planning_actor(obs)) ** 2).sum())
        return action

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()  # type: ignore[safe-super]
        data.update(
            dict(
                ensemble_size=self.dynamics_kwargs["ensemble_size"],
                num_elites=self.dynamics_kwargs["num_elites"],
                dynamics_hidden_sizes=self.dynamics_kwargs["hidden_sizes"],
                dynamics_learning_rate=self.dynamics_learning_rate,
                arc_kwargs=vars(self.arc_config).copy(),
                planner_name=self.planner_name,
                termination_fn=self.termination_fn,
                num_extra_targets=self.dynamics_kwargs["num_extra_targets"],
                planning_seed=self.planning_seed,
                scorer=self.scorer,
            )
        )
        return data
