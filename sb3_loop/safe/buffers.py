"""A replay buffer that also stores the per-step constraint cost of each transition."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.vec_env import VecNormalize

from sb3_loop.safe.costs import costs_from_infos


def check_cost_penalty(name: str, value: float) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name}={value!r}: must be a finite number >= 0")


class CostReplayBufferSamples(NamedTuple):
    """:class:`~stable_baselines3.common.type_aliases.ReplayBufferSamples` plus the transitions' ``costs``."""

    observations: th.Tensor
    actions: th.Tensor
    next_observations: th.Tensor
    dones: th.Tensor
    rewards: th.Tensor
    costs: th.Tensor
    # As in SB3's samples (n-step buffers fill it); always None here: one-step transitions.
    discounts: th.Tensor | None = None


class CostReplayBuffer(ReplayBuffer):
    """
    SB3's :class:`~stable_baselines3.common.buffers.ReplayBuffer` that also stores the per-step constraint
    cost ``info["cost"]`` of each transition (float32 ``costs``, shaped like ``rewards``) and returns it in
    :class:`CostReplayBufferSamples`. Costs are stored and sampled raw (``VecNormalize`` does not touch them).

    A step whose info has no ``"cost"`` raises :class:`~sb3_loop.safe.costs.MissingCostError` (a
    ``ValueError``) before anything is stored.

    :param buffer_size: Max number of transitions (over all envs).
    :param observation_space: Observation space.
    :param action_space: Action space.
    :param device: PyTorch device of the sampled tensors.
    :param n_envs: Number of parallel environments.
    :param optimize_memory_usage: Not supported (must be ``False``).
    :param handle_timeout_termination: Bootstrap through time-limit truncations (``info["TimeLimit.truncated"]``).
    :param env_id: Named in the error raised when a step has no cost.
    :param reward_cost_penalty: ``lambda`` of the sampled rewards ``r - lambda * cost`` (finite, >= 0; 0: the
        raw rewards). Only sampling sees it: the stored rewards stay raw.
    """

    costs: np.ndarray
    reward_cost_penalty: float = 0.0  # class default: also for buffers pickled before the attribute existed

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        env_id: str | None = None,
        reward_cost_penalty: float = 0.0,
    ) -> None:
        check_cost_penalty("reward_cost_penalty", reward_cost_penalty)
        if optimize_memory_usage:
            raise ValueError(
                "CostReplayBuffer does not support optimize_memory_usage=True (it stores next observations "
                "separately): pass optimize_memory_usage=False"
            )
        super().__init__(
            buffer_size,
            observation_space,
            action_space,
            device=device,
            n_envs=n_envs,
            optimize_memory_usage=False,
            handle_timeout_termination=handle_timeout_termination,
        )
        self.env_id = env_id
        self.reward_cost_penalty = float(reward_cost_penalty)
        self.costs = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        costs = costs_from_infos(infos, env_id=self.env_id)
        if costs.shape != (self.n_envs,):
            raise ValueError(f"CostReplayBuffer.add: got {len(infos)} infos for {self.n_envs} envs")
        self.costs[self.pos] = costs  # the row super().add() fills next (it then moves pos on)
        super().add(obs, next_obs, action, reward, done, infos)

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> CostReplayBufferSamples:
        env_inds = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))
        costs = self.costs[batch_inds, env_inds].reshape(-1, 1)
        rewards = self.rewards[batch_inds, env_inds].reshape(-1, 1)
        if self.reward_cost_penalty:
            rewards = rewards - self.reward_cost_penalty * costs
        # Transitions that ended in a termination (not a time-limit truncation) do not bootstrap.
        dones = self.dones[batch_inds, env_inds] * (1.0 - self.timeouts[batch_inds, env_inds])
        arrays = (
            self._normalize_obs(self.observations[batch_inds, env_inds], env),
            self.actions[batch_inds, env_inds],
            self._normalize_obs(self.next_observations[batch_inds, env_inds], env),
            dones.reshape(-1, 1),
            self._normalize_reward(rewards, env),
            costs,
        )
        return CostReplayBufferSamples(*(self.to_torch(array) for array in arrays))
