"""LOOP: Learning Off-Policy with Online Planning (Sikchi, Zhou & Held, CoRL 2021)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule

from sb3_loop.common.planning import PlanningAlgorithmMixin
from sb3_loop.dynamics import EnsembleTrainingStats
from sb3_loop.loop.policies import LOOPPolicy, MlpPolicy

SelfLOOP = TypeVar("SelfLOOP", bound="LOOP")

#: SAC arguments LOOP accepts only at their default (SAC's) value, with the reason.
_UNSUPPORTED_SAC_ARGUMENTS = {
    "use_sde": (False, "LOOP explores with the ARC planner, not with the actor's gSDE noise"),
    "sde_sample_freq": (-1, "it only matters with use_sde, which LOOP does not support"),
    "use_sde_at_warmup": (False, "LOOP's warm-up actions are uniform random, not gSDE samples"),
    "optimize_memory_usage": (False, "the dynamics ensemble is trained on the stored next_observations"),
}


def _check_unsupported_sac_arguments(algorithm: str, **arguments: Any) -> None:
    """Raise ``ValueError`` naming a SAC argument ``algorithm`` does not support, given a non-default value."""
    for name, value in arguments.items():
        default, reason = _UNSUPPORTED_SAC_ARGUMENTS[name]
        if value != default:
            raise ValueError(f"{name}={value!r} is not supported by {algorithm}: {reason}. Remove it or use {default!r}.")


class LOOP(PlanningAlgorithmMixin, SAC):
    """
    LOOP: SAC whose actions in the environment come from ARC, a planner over a learned probabilistic
    dynamics ensemble that scores H-step action sequences by predicted rewards plus the critic's
    terminal value. The replay buffer, critic and actor updates are SAC's; the ensemble is refit on
    the whole replay buffer every ``dynamics_train_freq`` steps.

    Paper: https://arxiv.org/abs/2008.10066. Defaults are the paper's online configuration.

    :param policy: The policy model to use (``"MlpPolicy"``).
    :param env: The environment to learn from (if registered in Gym, can be str).
    :param learning_rate: Learning rate of actor, critics and entropy coefficient.
    :param buffer_size: Size of the replay buffer.
    :param learning_starts: Uniform-random steps before learning and planning start.
    :param batch_size: Minibatch size of each SAC gradient update.
    :param tau: Soft update coefficient of the target critics.
    :param gamma: Discount factor.
    :param train_freq: Update the actor and critics every ``train_freq`` steps.
    :param gradient_steps: Gradient steps after each rollout.
    :param action_noise: Extra noise added to the planned actions (normally ``None``).
    :param replay_buffer_class: Replay buffer class.
    :param replay_buffer_kwargs: Keyword arguments of the replay buffer.
    :param ent_coef: Entropy coefficient (``"auto"``: learned, target entropy ``-|A|``).
    :param target_update_interval: Target network update interval in gradient steps.
    :param target_entropy: Target entropy when ``ent_coef="auto"``.
    :param optimize_memory_usage: Not supported (only ``False``); accepted so that SAC configurations fail
        with a clear message.
    :param use_sde: Not supported (only ``False``).
    :param sde_sample_freq: Not supported (only ``-1``).
    :param use_sde_at_warmup: Not supported (only ``False``).
    :param planner: The planner that acts, in training and in ``predict``: ``"arc"`` (the paper's ARC),
        ``"cem"`` (the cross-entropy method, as PETS), ``"mppi"`` (as TD-MPC2) or ``"shooting"`` (random
        shooting); see :mod:`sb3_loop.planning`. The others use ``horizon``, ``population_size``,
        ``num_particles``, ``planning_iterations`` and ``propagation`` as ARC does (the same model compute)
        and their own constants for the rest; ``configure_planner(planner=...)`` switches a trained model.
    :param horizon: Planning horizon H.
    :param population_size: Sequences sampled per planning iteration N.
    :param num_particles: Particles per sequence P.
    :param planning_iterations: Planning iterations per step.
    :param mixture_coef: Fraction of N added as actor trajectories (ARC's actor regularisation).
    :param kappa: Temperature of ARC's exponential weighting.
    :param var_momentum: Momentum ``alpha`` of the plan variance.
    :param propagation: ``"random_elite"`` (each particle follows one random elite) or ``"paper"``
        (every elite carries every particle; about 5x slower, see benchmarks/results/planner_speed.md).
    :param ensemble_size: Dynamics ensemble members.
    :param num_elites: Members used for planning.
    :param dynamics_hidden_sizes: Hidden layers of each member.
    :param dynamics_learning_rate: Adam learning rate of the ensemble.
    :param dynamics_batch_size: Minibatch size of ensemble training.
    :param dynamics_train_freq: Refit the ensemble every this many env steps.
    :param dynamics_max_epochs: Epoch cap per refit (early stopping usually stops first).
    :param dynamics_max_gradient_steps: Cap on ensemble minibatch updates per refit. The paper trains to
        convergence (``None``); on a CPU an epoch over a large buffer takes seconds, so the default bounds a
        refit's cost (100 updates of 256 transitions per 250 env steps, warm-started from the last fit).
    :param dynamics_holdout_ratio: Fraction of the buffer held out for early stopping and elites. Each
        replay buffer slot is assigned to the holdout or to training once, so held-out transitions are
        never trained on.
    :param dynamics_refit_selection: After a refit, each member keeps its best epoch of the refit
        (``"best_epoch"``, the paper's code; its error on new data was lower in
        benchmarks/results/refit_replay_Hopper-v5*.md) or its pre-refit weights when those predict the
        holdout better (``"keep_better"``).
    :param termination_fn: Env id or callable ``next_obs -> done``; ``None`` infers it from the env id.
    :param stats_window_size: Window size for rollout logging.
    :param tensorboard_log: The log location for tensorboard (if None, no logging).
    :param policy_kwargs: Additional arguments to the policy on creation.
    :param verbose: Verbosity level.
    :param seed: Seed for the pseudo random generators. It is also the policy's ``planning_seed``, which
        makes ``predict(deterministic=True)`` reproducible across calls, save/load and copies
        (``None``: a random planning seed is drawn, and saved with the model).
    :param device: Device on which the code should be run.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy}
    policy: LOOPPolicy

    def __init__(
        self,
        policy: str | type[LOOPPolicy],
        env: GymEnv | str,
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
        optimize_memory_usage: bool = False,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        use_sde_at_warmup: bool = False,
        planner: str = "arc",
        horizon: int = 3,
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
        _check_unsupported_sac_arguments(
            type(self).__name__,
            optimize_memory_usage=optimize_memory_usage,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            use_sde_at_warmup=use_sde_at_warmup,
        )
        self._init_planning(locals(), seed)
        if not isinstance(dynamics_train_freq, int) or dynamics_train_freq < 1:
            raise ValueError(f"dynamics_train_freq={dynamics_train_freq!r} must be an integer >= 1")
        self.dynamics_train_freq = dynamics_train_freq
        if replay_buffer_kwargs and replay_buffer_kwargs.get("optimize_memory_usage"):
            raise ValueError("optimize_memory_usage=True is not supported by LOOP (the ensemble needs next_observations)")
        self._last_dynamics_train = 0

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
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
        )
        self._resolve_termination_fn()
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        super()._setup_model()
        if self.replay_buffer is not None and getattr(self.replay_buffer, "optimize_memory_usage", False):
            raise ValueError("optimize_memory_usage=True is not supported by LOOP (the ensemble needs next_observations)")

    # --------------------------------------------------------------------------------- acting
    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        planning = self.policy.use_planner and self.policy.dynamics.is_trained
        if self.num_timesteps < learning_starts or not planning:
            return super()._sample_action(learning_starts, action_noise, n_envs)
        assert self._last_obs is not None, "self._last_obs was not set"
        scaled_action = self.policy.explore(self._last_obs)  # type: ignore[arg-type]
        if action_noise is not None:
            scaled_action = np.clip(scaled_action + action_noise(), -1, 1)
        return self.policy.unscale_action(scaled_action), scaled_action

    # ------------------------------------------------------------------------------- training
    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: np.ndarray | dict[str, np.ndarray],
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)
        if np.any(dones):
            self.policy.rollout_planner.reset(dones)

    def _on_step(self) -> None:
        super()._on_step()
        if self._dynamics_update_due():
            self.train_dynamics()

    def _dynamics_update_due(self) -> bool:
        if self.num_timesteps < self.learning_starts or self.replay_buffer is None or self.replay_buffer.size() < 2:
            return False
        if not self.policy.dynamics.is_trained:
            return True
        return self.num_timesteps - self._last_dynamics_train >= self.dynamics_train_freq

    def train_dynamics(self) -> EnsembleTrainingStats:
        """
        Refit the dynamics ensemble on the whole replay buffer and log its statistics.

        ``dynamics/fresh_mse`` is the model's error on the transitions collected since the previous
        refit, measured before refitting: data it has never seen.
        """
        stats = self._fit_dynamics_on_replay_buffer(fresh=self._fresh_rows())
        self._last_dynamics_train = self.num_timesteps
        return stats

    def _fresh_rows(self) -> np.ndarray:
        """Mask over the flattened buffer rows of the transitions stored since the previous refit."""
        buffer = self.replay_buffer
        assert buffer is not None
        fresh = np.zeros((buffer.size(), buffer.n_envs), dtype=bool)
        if self.policy.dynamics.is_trained:
            new_positions = min((self.num_timesteps - self._last_dynamics_train) // buffer.n_envs, len(fresh))
            fresh[(buffer.pos - 1 - np.arange(new_positions)) % len(fresh)] = True
        return fresh.reshape(-1)

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, Any]:
        result = super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        if self._vec_normalize_env is not None:
            raise ValueError(
                "LOOP does not support VecNormalize: its dynamics ensemble standardises inputs itself and must "
                "see the same observations and rewards as the critic. Remove the VecNormalize wrapper."
            )
        if reset_num_timesteps:
            self._last_dynamics_train = 0
            self.policy.rollout_planner.reset()
        return result

    def learn(
        self: SelfLOOP,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "LOOP",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfLOOP:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
