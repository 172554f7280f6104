"""SAC-Lagrangian: SAC for constrained MDPs, with a cost critic and a learned Lagrange multiplier."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.policies import BasePolicy, ContinuousCritic
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import get_parameters_by_name, polyak_update
from torch.nn import functional as F

from sb3_loop.checks import check_number
from sb3_loop.safe.buffers import CostReplayBuffer, CostReplayBufferSamples
from sb3_loop.safe.episode_costs import EpisodeCostMixin
from sb3_loop.safe.policies import MlpPolicy, SACLagPolicy

SelfSACLagrangian = TypeVar("SelfSACLagrangian", bound="SACLagrangian")


class SACLagrangian(EpisodeCostMixin, SAC):
    """
    SAC-Lagrangian: Soft Actor-Critic for a constrained MDP, maximise the return subject to an expected
    episode cost ``J_c <= cost_limit``, solved through its Lagrangian ``min_{lambda >= 0} max_pi
    J_r - lambda * (J_c - cost_limit)`` (Ha et al. 2020, https://arxiv.org/abs/2002.08550; the baseline of
    the SafeLOOP paper and OmniSafe's ``SACLag``).

    Per-step costs are read from ``info["cost"]`` (the ``Safety*`` envs registered by ``sb3_loop`` report
    them; wrap any other env with :class:`~sb3_loop.safe.CostWrapper`) and stored in a
    :class:`~sb3_loop.safe.CostReplayBuffer`. On top of SAC:

    - a cost critic (twin Q-networks ``Q_c``, their target networks and an optimiser, on the policy) trained
      by TD on costs: ``Q_c(s, a) <- c + cost_gamma * (1 - terminated) * max_i Q_c_target_i(s', a')``,
      ``a' ~ pi(s')``, no entropy term. The max over the twins is the cost-side mirror of SAC's min over the
      reward twins: the actor seeks actions whose cost looks low, so err on the high side;
    - the actor loss ``(alpha * log pi(a|s) - min_i Q_r_i(s, a) + lambda * max_i Q_c_i(s, a))``, divided by
      ``(1 + lambda)`` when ``normalize_actor_loss`` (keeps the gradient's scale as lambda grows);
    - the multiplier ``lambda >= 0``: projected gradient ascent on ``lambda * (J_c - cost_limit)`` with Adam
      (learning rate ``lagrangian_lr``), clipped at 0 after each step. ``J_c`` is measured, not predicted: the
      mean summed cost of the training episodes that finished since the last update (OmniSafe's SAC-Lag
      also uses the measured episode cost). One update per ``train()`` call in which episodes finished, so
      with Adam lambda moves by about ``lagrangian_lr`` per finished episode (batch), up while
      ``J_c > cost_limit``, down (to exactly 0) while below.

    Why the measured episode cost rather than ``Q_c`` against a per-step threshold
    ``cost_limit * (1 - gamma^T) / ((1 - gamma) * T)``: the constraint is on the episode cost, which the
    rollouts measure without bias; the critic is trained on replay data from older policies, is biased
    (above all early on) and a threshold derived from it needs the episode length ``T`` and assumes the cost
    spread evenly over the episode. The critic only supplies the actor's gradient direction. The price: the
    multiplier updates once per finished episode, not per gradient step. The first update also counts the
    episodes of the ``learning_starts`` warm-up (random actions).

    Logs (besides SAC's): ``train/lagrange_multiplier``, ``train/cost_critic_loss``, ``train/cost_q`` (mean
    ``Q_c(s, pi(s))`` of the batch), ``train/lagrange_ep_cost`` (the ``J_c`` of the last multiplier update)
    and ``rollout/ep_cost_mean`` (mean cost of the last ``stats_window_size`` training episodes).

    :param policy: The policy model to use (``"MlpPolicy"`` or a :class:`~sb3_loop.safe.policies.SACLagPolicy`).
    :param env: The environment to learn from (if registered in Gym, can be str); its steps must report
        ``info["cost"]``.
    :param learning_rate: Learning rate of actor, reward and cost critics and entropy coefficient.
    :param buffer_size: Size of the replay buffer.
    :param learning_starts: Steps of uniform random actions before learning starts.
    :param batch_size: Minibatch size of each gradient update.
    :param tau: Soft update coefficient of the target networks (reward and cost).
    :param gamma: Discount factor of the rewards.
    :param train_freq: Update the model every ``train_freq`` steps (or ``(n, "episode")``).
    :param gradient_steps: Gradient steps after each rollout (``-1``: as many as env steps).
    :param action_noise: Action noise for exploration (None by default).
    :param replay_buffer_class: A :class:`~sb3_loop.safe.CostReplayBuffer` subclass (default the class itself).
    :param replay_buffer_kwargs: Keyword arguments of the replay buffer.
    :param optimize_memory_usage: Not supported (must be ``False``).
    :param n_steps: Must be 1 (n-step returns are not supported).
    :param ent_coef: Entropy coefficient (``"auto"`` to learn it, ``"auto_0.1"`` to start it at 0.1).
    :param target_update_interval: Update the target networks every this many gradient steps.
    :param target_entropy: Target entropy when learning ``ent_coef``.
    :param cost_limit: Limit ``d`` on the expected summed cost of an episode (default 25, OmniSafe's
        PointGoal1 limit). Must be >= 0.
    :param cost_gamma: Discount factor of the costs in the cost critic (default ``gamma``).
    :param lagrangian_lr: Learning rate (Adam) of the Lagrange multiplier. Must be > 0.
    :param lagrangian_init: Initial value of the Lagrange multiplier. Must be >= 0.
    :param normalize_actor_loss: Divide the actor loss by ``1 + lambda``.
    :param use_sde: Whether to use generalized State Dependent Exploration.
    :param sde_sample_freq: Sample a new gSDE noise matrix every n steps (-1: at rollout start only).
    :param use_sde_at_warmup: Whether to use gSDE instead of uniform sampling during the warm-up.
    :param stats_window_size: Window (in episodes) of the rollout statistics, ``ep_cost_mean`` included.
    :param tensorboard_log: The log location for tensorboard (if None, no logging).
    :param policy_kwargs: Additional arguments to the policy on creation.
    :param verbose: Verbosity level.
    :param seed: Seed for the pseudo random generators.
    :param device: Device on which the code should be run.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy}
    policy: SACLagPolicy
    cost_critic: ContinuousCritic
    cost_critic_target: ContinuousCritic
    replay_buffer: CostReplayBuffer

    def __init__(
        self,
        policy: str | type[SACLagPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 100,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        action_noise: ActionNoise | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 1,
        ent_coef: str | float = "auto",
        target_update_interval: int = 1,
        target_entropy: str | float = "auto",
        cost_limit: float = 25.0,
        cost_gamma: float | None = None,
        lagrangian_lr: float = 0.01,
        lagrangian_init: float = 0.0,
        normalize_actor_loss: bool = True,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        use_sde_at_warmup: bool = False,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        check_number("cost_limit", cost_limit, 0.0)
        if cost_gamma is not None:
            check_number("cost_gamma", cost_gamma, 0.0, 1.0)
        check_number("lagrangian_lr", lagrangian_lr, 0.0, low_open=True)
        check_number("lagrangian_init", lagrangian_init, 0.0)
        if n_steps != 1:
            raise ValueError(f"n_steps={n_steps!r}: SACLagrangian supports only one-step returns (n_steps=1)")
        if optimize_memory_usage:
            raise ValueError("optimize_memory_usage=True is not supported by SACLagrangian (its CostReplayBuffer)")
        if replay_buffer_class is None:
            replay_buffer_class = CostReplayBuffer
        elif not (isinstance(replay_buffer_class, type) and issubclass(replay_buffer_class, CostReplayBuffer)):
            raise ValueError(
                f"replay_buffer_class={replay_buffer_class!r}: SACLagrangian needs the transitions' costs, use "
                "sb3_loop.safe.CostReplayBuffer or a subclass of it"
            )
        self.cost_limit = float(cost_limit)
        self.cost_gamma = cost_gamma
        self.lagrangian_lr = float(lagrangian_lr)
        self.lagrangian_init = float(lagrangian_init)
        self.normalize_actor_loss = normalize_actor_loss
        self.lagrange_multiplier: th.Tensor | None = None
        self.lagrange_optimizer: th.optim.Adam | None = None
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
            optimize_memory_usage=optimize_memory_usage,
            n_steps=n_steps,
            ent_coef=ent_coef,
            target_update_interval=target_update_interval,
            target_entropy=target_entropy,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            use_sde_at_warmup=use_sde_at_warmup,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
        )
        if _init_setup_model:
            self._setup_model()

    @property
    def effective_cost_gamma(self) -> float:
        """The discount of the cost critic: ``cost_gamma``, or ``gamma`` when it is ``None``."""
        return float(self.gamma if self.cost_gamma is None else self.cost_gamma)

    def _setup_model(self) -> None:
        super()._setup_model()
        self.lagrange_multiplier = th.tensor([self.lagrangian_init], device=self.device, requires_grad=True)
        self.lagrange_optimizer = th.optim.Adam([self.lagrange_multiplier], lr=self.lagrangian_lr)
        self.cost_batch_norm_stats = get_parameters_by_name(self.cost_critic, ["running_"])
        self.cost_batch_norm_stats_target = get_parameters_by_name(self.cost_critic_target, ["running_"])

    def _create_aliases(self) -> None:
        super()._create_aliases()
        self.cost_critic = self.policy.cost_critic
        self.cost_critic_target = self.policy.cost_critic_target

    @property
    def lagrange_multiplier_value(self) -> float:
        """The current Lagrange multiplier lambda."""
        assert self.lagrange_multiplier is not None
        return float(self.lagrange_multiplier.item())

    def _update_lagrange_multiplier(self) -> None:
        """One projected Adam step on lambda with the episodes finished since the last one (if any)."""
        episode_costs = self.pop_finished_episode_costs()
        if not episode_costs:
            return
        assert self.lagrange_multiplier is not None and self.lagrange_optimizer is not None
        mean_cost = float(np.mean(episode_costs))
        # d/dlambda of -lambda * (J_c - d) is -(J_c - d): descending it raises lambda while J_c > d.
        loss = -(self.lagrange_multiplier * (mean_cost - self.cost_limit)).sum()
        self.lagrange_optimizer.zero_grad()
        loss.backward()
        self.lagrange_optimizer.step()
        with th.no_grad():
            self.lagrange_multiplier.clamp_(min=0.0)
        self.logger.record("train/lagrange_ep_cost", mean_cost)

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        self.policy.set_training_mode(True)
        optimizers = [self.actor.optimizer, self.critic.optimizer, self.cost_critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers.append(self.ent_coef_optimizer)
        self._update_learning_rate(optimizers)
        self._update_lagrange_multiplier()
        assert self.lagrange_multiplier is not None
        lagrange_multiplier = self.lagrange_multiplier.detach()
        cost_gamma = self.effective_cost_gamma

        logs: dict[str, list[float]] = {
            key: [] for key in ("ent_coef", "ent_coef_loss", "actor_loss", "critic_loss", "cost_critic_loss", "cost_q")
        }
        for gradient_step in range(gradient_steps):
            batch = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            assert isinstance(batch, CostReplayBufferSamples)
            if self.use_sde:
                self.actor.reset_noise()

            actions_pi, log_prob = self.actor.action_log_prob(batch.observations)
            log_prob = log_prob.reshape(-1, 1)
            ent_coef = self._entropy_step(log_prob, logs)

            with th.no_grad():
                next_actions, next_log_prob = self.actor.action_log_prob(batch.next_observations)
                next_q = th.cat(self.critic_target(batch.next_observations, next_actions), dim=1).min(dim=1, keepdim=True)[0]
                next_q = next_q - ent_coef * next_log_prob.reshape(-1, 1)
                target_q = batch.rewards + (1 - batch.dones) * self.gamma * next_q
                next_qc = th.cat(self.cost_critic_target(batch.next_observations, next_actions), dim=1)
                next_qc = next_qc.max(dim=1, keepdim=True)[0]
                target_qc = batch.costs + (1 - batch.dones) * cost_gamma * next_qc

            critic_loss = 0.5 * sum(F.mse_loss(q, target_q) for q in self.critic(batch.observations, batch.actions))
            cost_critic_loss = 0.5 * sum(F.mse_loss(q, target_qc) for q in self.cost_critic(batch.observations, batch.actions))
            for optimizer, loss in ((self.critic.optimizer, critic_loss), (self.cost_critic.optimizer, cost_critic_loss)):
                optimizer.zero_grad()
                loss.backward()  # type: ignore[union-attr]
                optimizer.step()

            q_pi = th.cat(self.critic(batch.observations, actions_pi), dim=1).min(dim=1, keepdim=True)[0]
            qc_pi = th.cat(self.cost_critic(batch.observations, actions_pi), dim=1).max(dim=1, keepdim=True)[0]
            actor_loss = (ent_coef * log_prob - q_pi + lagrange_multiplier * qc_pi).mean()
            if self.normalize_actor_loss:
                actor_loss = actor_loss / (1.0 + lagrange_multiplier.squeeze())
            self.actor.optimizer.zero_grad()
            actor_loss.backward()
            self.actor.optimizer.step()

            if gradient_step % self.target_update_interval == 0:
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)
                polyak_update(self.cost_critic.parameters(), self.cost_critic_target.parameters(), self.tau)
                polyak_update(self.cost_batch_norm_stats, self.cost_batch_norm_stats_target, 1.0)

            logs["actor_loss"].append(actor_loss.item())
            logs["critic_loss"].append(critic_loss.item())  # type: ignore[union-attr]
            logs["cost_critic_loss"].append(cost_critic_loss.item())  # type: ignore[union-attr]
            logs["cost_q"].append(qc_pi.mean().item())

        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for key, values in logs.items():
            if values:
                self.logger.record(f"train/{key}", float(np.mean(values)))
        self.logger.record("train/lagrange_multiplier", self.lagrange_multiplier_value)

    def _entropy_step(self, log_prob: th.Tensor, logs: dict[str, list[float]]) -> th.Tensor:
        """The entropy coefficient for this gradient step (after its own update when it is learned)."""
        if self.ent_coef_optimizer is None or self.log_ent_coef is None:
            ent_coef = self.ent_coef_tensor
        else:
            ent_coef = th.exp(self.log_ent_coef.detach())
            assert isinstance(self.target_entropy, float)
            ent_coef_loss = -(self.log_ent_coef * (log_prob + self.target_entropy).detach()).mean()
            self.ent_coef_optimizer.zero_grad()
            ent_coef_loss.backward()
            self.ent_coef_optimizer.step()
            logs["ent_coef_loss"].append(ent_coef_loss.item())
        logs["ent_coef"].append(ent_coef.item())
        return ent_coef

    def learn(
        self: SelfSACLagrangian,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "SACLagrangian",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfSACLagrangian:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    def _excluded_save_params(self) -> list[str]:
        return [
            *super()._excluded_save_params(),
            "cost_critic",
            "cost_critic_target",
            "lagrange_multiplier",
            "lagrange_optimizer",
            "cost_batch_norm_stats",
            "cost_batch_norm_stats_target",
        ]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, variables = super()._get_torch_save_params()
        return [*state_dicts, "cost_critic.optimizer", "lagrange_optimizer"], [*variables, "lagrange_multiplier"]
