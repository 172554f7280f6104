"""CRR: Critic Regularized Regression (Wang et al., NeurIPS 2020), the offline prior of the LOOP paper."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, ReplayBufferSamples, Schedule
from stable_baselines3.sac.policies import MlpPolicy, SACPolicy

from sb3_loop.checks import check_choice, check_number
from sb3_loop.datasets import OfflineDataset
from sb3_loop.offline.common import OfflineAlgorithm, _optimize, check_offline_arguments

#: Dataset actions (scaled to [-1, 1]) are clipped into (-1 + eps, 1 - eps) before ``atanh``.
ACTION_EPS = 1e-6


class CRR(OfflineAlgorithm, SAC):
    """
    CRR: a twin critic learned by TD on the dataset, with next actions sampled from the actor, and an
    actor fitted by weighted regression on dataset actions,
    ``maximise E[f(A(s, a)) * log pi(a | s)]``, where ``A(s, a) = Q(s, a) - mean_j Q(s, a'_j)`` over
    ``n_action_samples`` actions ``a'_j ~ pi(. | s)`` (``"max"``: the max instead of the mean) and
    ``f(A) = min(exp(A / beta), max_weight)`` (``"exp"``) or ``1[A > 0]`` (``"binary"``). ``Q`` is the
    minimum of the two critics. The actor is SAC's tanh-squashed Gaussian (no entropy term);
    ``predict(deterministic=True)`` gives its mean action. Each gradient step computes both losses with the
    critic as it is before the step's update, so the TD loss's forward pass also gives ``Q(s, a)``.

    Paper: https://arxiv.org/abs/2006.15134. Defaults follow d3rlpy's ``CRRConfig`` (learning rate 3e-4
    for actor and critic, 4 action samples, advantage ``"mean"``, weight ``"exp"``, beta 1, max weight
    20, tau 5e-3) except: batch 256 (d3rlpy: 100), the batch size of the LOOP paper's offline runs and
    of TD3+BC here; twin critics with soft target updates every step (d3rlpy: one critic, hard copies
    every 100 steps; ``tau=1.0, target_update_interval=100`` gives the hard copies); 2x256 networks.

    Training and saving work as described in :class:`~sb3_loop.offline.common.OfflineAlgorithm`:
    ``learn(total_timesteps=N)`` is N gradient steps on the dataset; the dataset is not saved.

    :param policy: The policy model to use (``"MlpPolicy"``).
    :param env: The environment whose spaces the dataset must fit; callbacks evaluate on it. May be ``None``
        only to build a model for loading.
    :param dataset: The transitions to learn from: an :class:`~sb3_loop.datasets.OfflineDataset`, or a file
        path, dataset name (``"Hopper-v5-medium"``) or Minari id read by ``sb3_loop.datasets.load_dataset``.
    :param learning_rate: Learning rate of actor and critic (constant or schedule).
    :param batch_size: Minibatch size of each gradient step (at most the dataset's size).
    :param tau: Soft update coefficient of the target critics.
    :param gamma: Discount factor.
    :param target_update_interval: Update the target critics every this many gradient steps.
    :param beta: Temperature of the ``"exp"`` weights.
    :param n_action_samples: Actions sampled from the actor to estimate the state's value.
    :param advantage_type: ``"mean"`` or ``"max"`` over the sampled actions' Q-values.
    :param weight_type: ``"exp"`` or ``"binary"``.
    :param max_weight: Upper bound of the ``"exp"`` weights.
    :param normalize_observations: Standardise observations with the dataset's statistics (off in CRR and
        d3rlpy by default).
    :param stats_window_size: Window size for the rollout logging (unused offline, kept for SB3).
    :param tensorboard_log: The log location for tensorboard (if None, no logging).
    :param policy_kwargs: Additional arguments to the policy on creation (default ``net_arch=[256, 256]``).
    :param verbose: Verbosity level.
    :param seed: Seed for the pseudo random generators.
    :param device: Device on which the code should be run.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance.
    :param online_arguments: Online-only SAC arguments (``learning_starts``, ``ent_coef``, ...) are refused
        with a ``ValueError`` that says why.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy}
    policy: SACPolicy

    def __init__(
        self,
        policy: str | type[SACPolicy],
        env: GymEnv | str | None,
        dataset: OfflineDataset | str | os.PathLike | None = None,
        learning_rate: float | Schedule = 3e-4,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        target_update_interval: int = 1,
        beta: float = 1.0,
        n_action_samples: int = 4,
        advantage_type: str = "mean",
        weight_type: str = "exp",
        max_weight: float = 20.0,
        normalize_observations: bool = False,
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
        check_number("target_update_interval", target_update_interval, 1, integer=True)
        check_number("beta", beta, 0.0, low_open=True)
        check_number("n_action_samples", n_action_samples, 1, integer=True)
        check_choice("advantage_type", advantage_type, ("mean", "max"))
        check_choice("weight_type", weight_type, ("exp", "binary"))
        check_number("max_weight", max_weight, 0.0, low_open=True)
        self.beta = beta
        self.n_action_samples = n_action_samples
        self.advantage_type = advantage_type
        self.weight_type = weight_type
        self.max_weight = max_weight
        super().__init__(
            policy,
            env,  # type: ignore[arg-type]
            learning_rate=learning_rate,
            batch_size=batch_size,
            tau=tau,
            gamma=gamma,
            ent_coef=0.0,
            target_update_interval=target_update_interval,
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
        # Both losses use the critic as it is before this step's update (one forward pass serves the TD loss
        # and the advantage's Q(s, a)); only the baseline over sampled actions needs a pass of its own.
        mean, log_std, _ = self.actor.get_action_dist_params(batch.observations)
        with th.no_grad():
            next_actions, _ = self.actor.action_log_prob(batch.next_observations)
            baseline = self._baseline(batch.observations, mean.detach(), log_std.detach().exp())
        critic_loss, dataset_q = self._critic_step(batch, next_actions)
        advantages = dataset_q - baseline
        weights = self._weights(advantages)
        dataset_actions = batch.actions.clamp(-1.0 + ACTION_EPS, 1.0 - ACTION_EPS)
        log_prob = self.actor.action_dist.proba_distribution(mean, log_std).log_prob(dataset_actions)
        actor_loss = -(weights.squeeze(1) * log_prob).mean()
        _optimize(self.actor.optimizer, actor_loss)
        if self._n_updates % self.target_update_interval == 0:
            self._soft_update(self.critic, self.critic_target)
        return {
            "critic_loss": critic_loss,
            "actor_loss": actor_loss.item(),
            "advantage": advantages.mean().item(),
            "weight": weights.mean().item(),
            "log_prob": log_prob.mean().item(),
        }

    def _q_value(self, observations: th.Tensor, actions: th.Tensor) -> th.Tensor:
        return th.cat(self.critic(observations, actions), dim=1).min(dim=1, keepdim=True).values

    def _baseline(self, observations: th.Tensor, mean: th.Tensor, std: th.Tensor) -> th.Tensor:
        """The mean (or max) of ``Q(s, a')`` over ``n_action_samples`` actions ``a' ~ pi(. | s)``, ``[batch, 1]``."""
        samples = self.n_action_samples
        gaussian = mean + std * th.randn((samples, *mean.shape), device=mean.device)
        sampled_q = self._q_value(
            observations.repeat(samples, *([1] * (observations.dim() - 1))), th.tanh(gaussian).flatten(0, 1)
        )
        sampled_q = sampled_q.view(samples, -1, 1)
        return sampled_q.mean(dim=0) if self.advantage_type == "mean" else sampled_q.max(dim=0).values

    def _advantages(self, observations: th.Tensor, actions: th.Tensor, mean: th.Tensor, std: th.Tensor) -> th.Tensor:
        """``Q(s, a)`` minus :meth:`_baseline`, ``[batch, 1]``."""
        return self._q_value(observations, actions) - self._baseline(observations, mean, std)

    def _weights(self, advantages: th.Tensor) -> th.Tensor:
        if self.weight_type == "binary":
            return (advantages > 0).float()
        return th.exp(advantages / self.beta).clamp(max=self.max_weight)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "ent_coef_tensor", "log_ent_coef", "ent_coef_optimizer"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "actor.optimizer", "critic.optimizer"], []
