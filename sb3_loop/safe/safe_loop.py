"""SafeLOOP: LOOP with a constrained ARC planner (Sikchi, Zhou & Held, CoRL 2021, section 6.3)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import safe_mean

from sb3_loop.common.planning import named_as_arguments
from sb3_loop.dynamics.termination import get_termination_fn, never_terminates, register_termination_fn
from sb3_loop.envs import POINT_GOAL_ENV_IDS
from sb3_loop.loop import LOOP
from sb3_loop.planning import ConstrainedReturn, PlanningCostFn, Scorer
from sb3_loop.safe.buffers import CostReplayBuffer, check_cost_penalty
from sb3_loop.safe.costs import CostFunction, _resolve_cost_fn
from sb3_loop.safe.episode_costs import EpisodeCostMixin
from sb3_loop.safe.policies import SafeLOOPPolicy

SelfSafeLOOP = TypeVar("SelfSafeLOOP", bound="SafeLOOP")

#: ConstrainedReturn fields -> SafeLOOP arguments, where they differ.
_SCORER_FIELDS = {"max_iterations": "max_planning_iterations"}


def register_safety_terminations() -> None:
    """
    Let the planners find the termination functions of the safety tasks by env id (idempotent): a
    ``Safety<Robot>Velocity-v1`` task ends as the v5 env it is built on, the PointGoal tasks never end.
    """
    for robot in ("HalfCheetah", "Hopper", "Walker2d", "Ant", "Swimmer"):
        register_termination_fn(f"Safety{robot}Velocity", get_termination_fn(robot))
    for env_id in POINT_GOAL_ENV_IDS:
        register_termination_fn(env_id, never_terminates)


register_safety_terminations()


def resolve_planning_cost_fn(cost_fn: CostFunction | str | None) -> PlanningCostFn | None:
    """
    A planner cost function from a callable or an import path ``"module:function"`` (``None`` stays ``None``).

    :param cost_fn: ``cost_fn(obs, action, next_obs) -> cost`` on torch tensors with leading batch dims.
    """
    return None if cost_fn is None else _resolve_cost_fn(cost_fn)  # type: ignore[return-value]


class SafeLOOP(EpisodeCostMixin, LOOP):
    """
    SafeLOOP: LOOP (SAC + a dynamics ensemble + the ARC planner) for a constrained MDP. The ensemble
    also learns the per-step constraint cost ``info["cost"]`` (stored by a
    :class:`~sb3_loop.safe.CostReplayBuffer`), the planner sums each particle's predicted cost over the
    horizon, and ARC weights only *feasible* sequences: those whose summed cost, ``mean + cost_pessimism *
    std`` over particles and members, is at most ``cost_threshold``. When fewer than ``min_feasible``
    sequences are feasible, ARC weights by lowest cost instead, widens the variance and iterates again,
    up to ``max_planning_iterations`` (see :class:`~sb3_loop.planning.ConstrainedReturn`). With
    ``cost_fn`` the planner takes the step cost from that function of the predicted next observation
    (e.g. a hazard cost read from the lidar) instead of the learned cost.

    ``cost_threshold`` is a budget per planning horizon, not per episode: the planner only looks
    ``horizon - 1`` model steps ahead (the critic scores the last action and knows nothing of costs). A
    per-episode limit ``D`` over ``T`` steps spread evenly is ``(horizon - 1) * D / T`` per horizon: 0.175
    for the velocity tasks' ``D = 25, T = 1000`` with ``horizon = 8``. The default 0.2 is the paper's
    code's threshold: with 0/1 step costs it asks for no predicted cost at all, a stricter goal than
    ``D``. Planning cannot guarantee an episode limit; ``rollout/ep_cost_mean`` measures it.

    Logs, besides LOOP's: ``rollout/ep_cost_mean`` (measured cost of the training episodes),
    ``safe/predicted_episode_cost`` (the planning model's cost summed over the same kind of episode, for
    episodes planned from start to end), ``planner/feasible_fraction`` (mean fraction of feasible
    sequences in the final population of a plan), ``planner/fallbacks`` (planned actions whose population
    never had ``min_feasible`` feasible sequences: the least-cost fallback; cumulative),
    ``planner/iterations`` (mean ARC iterations per action) and ``planner/nonfinite_fallbacks`` (what
    LOOP logs as ``planner/fallbacks``: actions replaced by the actor's because the model's predictions
    went non-finite).

    Defaults are the paper's safety configuration where it has one (horizon 8, 100 samples, 4
    particles, ``min_feasible`` 10, threshold 0.2, widening factor 1.5, up to 25 iterations) and LOOP's
    online ARC otherwise (5 iterations, mixture 0.05, kappa 1). How the iterations differ from the paper's
    code (``controllers/arc_safety.py``): at least ``planning_iterations`` (paper: 6), then stop after the
    first iteration whose population has ``min_feasible`` feasible sequences, at most
    ``max_planning_iterations`` in all (paper: 26); an env's variance is widened to at least
    ``init_var * widen_factor**n`` after its n-th iteration without enough feasible sequences (paper: reset
    to ``init_var * 1.5**k`` at every 6th iteration, whatever the feasibility); feasibility is judged on
    the mean (or mean + k std) of the summed cost over particles and members (paper: the maximum over them,
    threshold 0.2, strictly below).

    :param policy: The policy model to use (``"MlpPolicy"``).
    :param env: The environment to learn from; its steps must report ``info["cost"]`` (the ``Safety*``
        envs registered by ``sb3_loop`` do; wrap others with :class:`~sb3_loop.safe.CostWrapper`).
    :param cost_threshold: Budget on the predicted cost summed over the planning horizon (finite, >= 0).
    :param cost_pessimism: ``k`` of the feasibility bound ``mean + k * std`` of the summed cost over
        particles and members (0: the mean).
    :param min_feasible: Feasible sequences needed to weight by return rather than by least cost.
    :param max_planning_iterations: Cap on ARC's iterations per action while too few sequences are
        feasible (``planning_iterations`` is the minimum).
    :param widen_factor: Variance widening per iteration without enough feasible sequences (>= 1).
    :param cost_fn: ``cost_fn(obs, action, next_obs) -> cost`` on the planner's torch tensors (actions
        scaled to [-1, 1], leading batch dims), or its import path ``"module:function"``; ``None``: the
        ensemble's learned cost. The ensemble learns the cost in either case, so it can be switched with
        :meth:`configure_planner`.
    :param critic_cost_penalty: ``lambda`` of the reward ``r - lambda * cost`` that SAC's critic and actor
        learn (finite, >= 0). 0 (the paper's SafeLOOP): they learn the reward alone, so the actor's
        proposals and the critic's terminal value know nothing of costs and only the planner's horizon
        does. A positive penalty makes the actor propose, and the critic value, behaviour that stays cheap
        beyond the horizon. The ensemble and the planner's predicted rewards stay raw.
    :param replay_buffer_class: A :class:`~sb3_loop.safe.CostReplayBuffer` (sub)class (default).

    The other arguments are :class:`~sb3_loop.LOOP`'s, with ``horizon`` 8 by default.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": SafeLOOPPolicy}
    policy: SafeLOOPPolicy
    replay_buffer: CostReplayBuffer
    scorer_arguments: ClassVar[tuple[str, ...]] = (
        "cost_threshold",
        "cost_pessimism",
        "min_feasible",
        "max_planning_iterations",
        "widen_factor",
    )

    def __init__(
        self,
        policy: str | type[SafeLOOPPolicy],
        env: GymEnv | str,
        cost_threshold: float = 0.2,
        cost_pessimism: float = 0.0,
        min_feasible: int = 10,
        max_planning_iterations: int = 25,
        widen_factor: float = 1.5,
        cost_fn: CostFunction | str | None = None,
        critic_cost_penalty: float = 0.0,
        learning_rate: float | Schedule = 1e-3,
        buffer_size: int = 1_000_000,
        learning_starts: int = 1000,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        action_noise: ActionNoise | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        ent_coef: str | float = "auto",
        target_update_interval: int = 1,
        target_entropy: str | float = "auto",
        horizon: int = 8,
        population_size: int = 100,
        num_particles: int = 4,
        planning_iterations: int = 5,
        mixture_coef: float = 0.05,
        kappa: float = 1.0,
        var_momentum: float = 0.1,
        propagation: str = "random_elite",
        ensemble_size: int = 7,
        num_elites: int = 5,
        dynamics_hidden_sizes: Sequence[int] = (200, 200, 200, 200),
        dynamics_learning_rate: float = 1e-3,
        dynamics_batch_size: int = 256,
        dynamics_train_freq: int = 250,
        dynamics_max_epochs: int | None = 100,
        dynamics_max_gradient_steps: int | None = 100,
        dynamics_holdout_ratio: float = 0.2,
        dynamics_refit_selection: str = "best_epoch",
        termination_fn: str | Callable[[th.Tensor], th.Tensor] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        self.cost_threshold = cost_threshold
        self.cost_pessimism = cost_pessimism
        self.min_feasible = min_feasible
        self.max_planning_iterations = max_planning_iterations
        self.widen_factor = widen_factor
        self._make_scorer()  # check the constraint settings before anything is built
        self.cost_fn = cost_fn
        resolve_planning_cost_fn(cost_fn)
        check_cost_penalty("critic_cost_penalty", critic_cost_penalty)
        self.critic_cost_penalty = float(critic_cost_penalty)
        if replay_buffer_class is None:
            replay_buffer_class = CostReplayBuffer
        elif not (isinstance(replay_buffer_class, type) and issubclass(replay_buffer_class, CostReplayBuffer)):
            raise ValueError(
                f"replay_buffer_class={replay_buffer_class!r}: SafeLOOP's ensemble learns the transitions' costs, "
                "use sb3_loop.safe.CostReplayBuffer or a subclass of it"
            )
        self.predicted_ep_cost_buffer: deque | None = None
        self._predicted_cost_sums: np.ndarray | None = None
        self._predicted_cost_complete: np.ndarray | None = None
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            tau=tau,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            action_noise=action_noise,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            ent_coef=ent_coef,
            target_update_interval=target_update_interval,
            target_entropy=target_entropy,
            horizon=horizon,
            population_size=population_size,
            num_particles=num_particles,
            planning_iterations=planning_iterations,
            mixture_coef=mixture_coef,
            kappa=kappa,
            var_momentum=var_momentum,
            propagation=propagation,
            ensemble_size=ensemble_size,
            num_elites=num_elites,
            dynamics_hidden_sizes=dynamics_hidden_sizes,
            dynamics_learning_rate=dynamics_learning_rate,
            dynamics_batch_size=dynamics_batch_size,
            dynamics_train_freq=dynamics_train_freq,
            dynamics_max_epochs=dynamics_max_epochs,
            dynamics_max_gradient_steps=dynamics_max_gradient_steps,
            dynamics_holdout_ratio=dynamics_holdout_ratio,
            dynamics_refit_selection=dynamics_refit_selection,
            termination_fn=termination_fn,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=_init_setup_model,
        )

    # ------------------------------------------------------------------------------ the planner
    def _make_scorer(self) -> Scorer:
        with named_as_arguments(_SCORER_FIELDS):
            return ConstrainedReturn(
                cost_threshold=self.cost_threshold,
                cost_pessimism=self.cost_pessimism,
                min_feasible=self.min_feasible,
                max_iterations=self.max_planning_iterations,
                widen_factor=self.widen_factor,
            )

    def _planning_policy_kwargs(self) -> dict[str, Any]:
        return {
            **super()._planning_policy_kwargs(),
            "num_extra_targets": 1,
            "cost_fn": resolve_planning_cost_fn(self.cost_fn),
        }

    def configure_planner(self, **arguments: Any) -> None:
        """
        Change planner settings of a built model, weights untouched: LOOP's planner arguments
        (``horizon``, ...), the constraint's (``cost_threshold``, ``cost_pessimism``, ``min_feasible``,
        ``max_planning_iterations``, ``widen_factor``) and ``cost_fn`` (``None``: the learned cost).
        Warm starts are forgotten.

        :param arguments: Planner arguments by their constructor names.
        """
        if "cost_fn" not in arguments:
            super().configure_planner(**arguments)
            return
        previous = self.cost_fn
        self.cost_fn = arguments.pop("cost_fn")
        self.policy.cost_fn = resolve_planning_cost_fn(self.cost_fn)
        try:
            super().configure_planner(**arguments)
        except ValueError:
            self.cost_fn = previous
            self.policy.cost_fn = resolve_planning_cost_fn(previous)
            raise

    # ------------------------------------------------------------------------------- training
    def _replay_costs(self) -> np.ndarray:
        """The stored costs, in the row order of :func:`~sb3_loop.common.replay_buffer_transitions`."""
        buffer = self.replay_buffer
        upper = buffer.buffer_size if buffer.full else buffer.pos
        return np.asarray(buffer.costs[:upper], dtype=np.float32).reshape(-1)

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        # Set on every call rather than once: a loaded or replaced replay buffer must learn the same reward.
        self.replay_buffer.reward_cost_penalty = self.critic_cost_penalty
        super().train(gradient_steps, batch_size)

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, Any]:
        env_reset = reset_num_timesteps or self._last_obs is None
        result = super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        if self.predicted_ep_cost_buffer is None or reset_num_timesteps:
            self.predicted_ep_cost_buffer = deque(maxlen=self._stats_window_size)
        if env_reset or self._predicted_cost_sums is None or self._predicted_cost_sums.shape != (self.n_envs,):
            self._predicted_cost_sums = np.zeros(self.n_envs)
            # An episode already running when learning starts was not watched from its start.
            self._predicted_cost_complete = np.full(self.n_envs, env_reset)
        return result

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: np.ndarray | dict[str, np.ndarray],
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        self._track_predicted_cost(buffer_action, dones)
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)

    def predicted_step_cost(self, obs: np.ndarray, scaled_action: np.ndarray) -> np.ndarray | None:
        """
        The planning model's cost of taking ``scaled_action`` in ``obs`` (mean prediction of the elites;
        with ``cost_fn``, that function of the predicted next observation), ``None`` before the first fit.

        :param obs: Observations [n, obs_dim].
        :param scaled_action: Actions scaled to [-1, 1], [n, act_dim].
        """
        model = self.policy.planner.model
        if not self.policy.dynamics.is_trained:
            return None
        members = model.num_elites
        obs_t = th.as_tensor(np.asarray(obs), dtype=th.float32, device=self.device).reshape(len(obs), -1)
        action_t = th.as_tensor(np.asarray(scaled_action), dtype=th.float32, device=self.device).reshape(len(obs), -1)
        with th.no_grad():
            step = model.step_members(obs_t.expand(members, -1, -1), action_t.expand(members, -1, -1), None)
        assert step.cost is not None
        return step.cost.mean(dim=0).cpu().numpy()

    def _track_predicted_cost(self, scaled_action: np.ndarray, dones: np.ndarray) -> None:
        assert self._predicted_cost_sums is not None and self._predicted_cost_complete is not None
        assert self.predicted_ep_cost_buffer is not None
        predicted = self.predicted_step_cost(self._last_obs, scaled_action)  # type: ignore[arg-type]
        if predicted is None:
            self._predicted_cost_complete[:] = False
        else:
            self._predicted_cost_sums += predicted
        for index in np.flatnonzero(dones):
            if self._predicted_cost_complete[index]:
                self.predicted_ep_cost_buffer.append(float(self._predicted_cost_sums[index]))
            self._predicted_cost_sums[index] = 0.0
            self._predicted_cost_complete[index] = True

    # ---------------------------------------------------------------------------------- logging
    def _record_planner_logs(self) -> None:
        super()._record_planner_logs()
        self.logger.record("planner/nonfinite_fallbacks", self.policy.num_fallbacks)
        self.logger.record("planner/fallbacks", self.policy.num_cost_fallbacks)
        summary = self.policy.pop_feasibility()
        if summary is not None:
            self.logger.record("planner/feasible_fraction", summary["feasible_fraction"])
            self.logger.record("planner/iterations", summary["iterations"])
        if self.predicted_ep_cost_buffer:
            self.logger.record("safe/predicted_episode_cost", float(safe_mean(list(self.predicted_ep_cost_buffer))))

    # ------------------------------------------------------------------------------ save / load
    def _excluded_save_params(self) -> list[str]:
        return [
            *super()._excluded_save_params(),
            "predicted_ep_cost_buffer",
            "_predicted_cost_sums",
            "_predicted_cost_complete",
        ]

    def learn(
        self: SelfSafeLOOP,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "SafeLOOP",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfSafeLOOP:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
