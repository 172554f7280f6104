"""TD3+BC: A Minimalist Approach to Offline Reinforcement Learning (Fujimoto & Gu, NeurIPS 2021)."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import torch as th
from stable_baselines3 import TD3
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, ReplayBufferSamples, Schedule
from stable_baselines3.td3.policies import MlpPolicy, TD3Policy
from torch.nn import functional as F

from sb3_loop.checks import check_number
from sb3_loop.datasets import OfflineDataset
from sb3_loop.offline.common import OfflineAlgorithm, _optimize, check_offline_arguments


class TD3BC(OfflineAlgorithm, TD3):
    """
    TD3+BC: TD3 trained offline whose actor maximises ``lambda * Q(s, pi(s)) - (pi(s) - a)^2`` over
    dataset pairs ``(s, a)``, with ``lambda = alpha / mean|Q(s, pi(s))|`` (not differentiated) so that
    the behaviour-cloning term keeps its weight whatever the scale of Q. Observations are standardised
    with the dataset's mean and std (+ 1e-3), inside the networks, so ``predict`` takes raw observations.

    Paper: https://arxiv.org/abs/2106.06860. Defaults are the authors' (github.com/sfujim/TD3_BC): alpha
    2.5, learning rate 3e-4 for actor and critic, batch 256, tau 0.005, gamma 0.99, target policy noise
    0.2 clipped at 0.5, actor and targets updated every 2nd step, 2x256 ReLU networks, normalised states.
    Actions are scaled to ``[-1, 1]`` (as SB3 stores them), so the noise and the BC term are in those
    units; for MuJoCo's ``[-1, 1]`` action boxes this is the authors' setting exactly.

    Training and saving work as described in :class:`~sb3_loop.offline.common.OfflineAlgorithm`:
    ``learn(total_timesteps=N)`` is N gradient steps on the dataset; the dataset is not saved.

    :param policy: The policy model to use (``"MlpPolicy"``).
    :param env: The environment whose spaces the dataset must fit; callbacks evaluate on it. May be ``None``
        only to build a model for loading.
    :param dataset: The transitions to learn from: an :class:`~sb3_loop.datasets.OfflineDataset`, or a file
        path, dataset name (``"Hopper-v5-medium"``) or Minari id read by ``sb3_loop.datasets.load_dataset``.
    :param learning_rate: Learning rate of actor and critic (constant or schedule).
    :param batch_size: Minibatch size of each gradient step (at most the dataset's size).
    :param tau: Soft update coefficient of the target networks.
    :param gamma: Discount factor.
    :param policy_delay: Update the actor and the targets every this many critic updates.
    :param target_policy_noise: Std of the Gaussian noise added to target actions (smoothing).
    :param target_noise_clip: Limit on the absolute value of that noise.
    :param alpha: Weight of the Q term against behaviour cloning (0: pure behaviour cloning).
    :param normalize_observations: Standardise observations with the dataset's statistics.
    :param stats_window_size: Window size for the rollout logging (unused offline, kept for SB3).
    :param tensorboard_log: The log location for tensorboard (if None, no logging).
    :param policy_kwargs: Additional arguments to the policy on creation (default ``net_arch=[256, 256]``).
    :param verbose: Verbosity level.
    :param seed: Seed for the pseudo random generators.
    :param device: Device on which the code should be run.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance.
    :param online_arguments: Online-only TD3 arguments (``learning_starts``, ``train_freq``, ...) are refused
        with a ``ValueError`` that says why.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy}
    policy: TD3Policy

    def __init__(
        self,
        policy: str | type[TD3Policy],
        env: GymEnv | str | None,
        dataset: OfflineDataset | str | os.PathLike | None = None,
        learning_rate: float | Schedule = 3e-4,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        policy_delay: int = 2,
        target_policy_noise: float = 0.2,
        target_noise_clip: float = 0.5,
        alpha: float = 2.5,
        normalize_observations: bool = True,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
        **online_arguments: Any,
    ) -> None:
        self._init_offline(dataset, normalize_observations, online_arguments)
        check_offline_arguments(learning_rate, batch_size, tau, gamma)
        check_number("alpha", alpha, 0.0)
        check_number("policy_delay", policy_delay, 1, integer=True)
        check_number("target_policy_noise", target_policy_noise, 0.0)
        check_number("target_noise_clip", target_noise_clip, 0.0)
        self.alpha = alpha
        super().__init__(
            policy,
            env,  # type: ignore[arg-type]
            learning_rate=learning_rate,
            batch_size=batch_size,
            tau=tau,
            gamma=gamma,
            policy_delay=policy_delay,
            target_policy_noise=target_policy_noise,
            target_noise_clip=target_noise_clip,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=dict(policy_kwargs or {}),  # SB3 adds keys to it: do not touch the caller's dict
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
        )
        if _init_setup_model:
            self._setup_model()

    def _gradient_step(self, batch: ReplayBufferSamples) -> dict[str, float]:
        with th.no_grad():
            noise = (th.randn_like(batch.actions) * self.target_policy_noise).clamp(
                -self.target_noise_clip, self.target_noise_clip
            )
            next_actions = (self.actor_target(batch.next_observations) + noise).clamp(-1.0, 1.0)
        logs = {"critic_loss": self._critic_step(batch, next_actions)[0]}
        if self._n_updates % self.policy_delay == 0:
            actions = self.actor(batch.observations)
            q_values = self.critic.q1_forward(batch.observations, actions)
            lmbda = self.alpha / q_values.abs().mean().detach()
            bc_loss = F.mse_loss(actions, batch.actions)
            actor_loss = -lmbda * q_values.mean() + bc_loss
            _optimize(self.actor.optimizer, actor_loss)
            self._soft_update(self.critic, self.critic_target)
            self._soft_update(self.actor, self.actor_target)
            logs.update(
                actor_loss=actor_loss.item(), bc_loss=bc_loss.item(), q_lambda=lmbda.item(), q_pi=q_values.mean().item()
            )
        return logs
