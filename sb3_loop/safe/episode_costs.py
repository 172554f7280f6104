"""
Episode costs of the training rollouts, for the safe off-policy algorithms (SAC-Lagrangian, SafeLOOP).

SB3's ``Monitor`` sums rewards, not costs. :class:`EpisodeCostMixin` sums ``info["cost"]`` per env while
the algorithm collects rollouts (it hooks ``_update_info_buffer``, which SB3 calls on every VecEnv step
with the step's infos and dones), keeps the costs of the last ``stats_window_size`` episodes and logs
their mean as ``rollout/ep_cost_mean`` next to ``rollout/ep_rew_mean``. Episodes end where the VecEnv
says ``done`` (termination or time limit). The first step without a cost raises
:class:`~sb3_loop.safe.costs.MissingCostError` naming the env, before the transition is stored.

Use it as the first base of an SB3 off-policy algorithm: ``class SafeAlgo(EpisodeCostMixin, SAC)``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
from stable_baselines3.common.type_aliases import MaybeCallback
from stable_baselines3.common.utils import safe_mean

from sb3_loop.safe.costs import MissingCostError, costs_from_infos, describe_vec_env


class EpisodeCostMixin:
    """
    Tracks the summed cost of each training episode (see the module docstring).

    Attributes (not saved with the model; reset like SB3's ``ep_info_buffer``):

    - ``ep_cost_buffer``: costs of the last ``stats_window_size`` finished episodes;
    - :meth:`pop_finished_episode_costs`: the costs of the episodes finished since the last call
      (each episode is returned once; SAC-Lagrangian's multiplier update consumes them).
    """

    ep_cost_buffer: deque | None = None
    _episode_cost_sums: np.ndarray | None = None
    _unconsumed_episode_costs: list[float] | None = None

    # Provided by the SB3 algorithm this is mixed into.
    n_envs: int
    env: Any
    _last_obs: Any
    _stats_window_size: int

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, Any]:
        # SB3 resets the env in these two cases: running episode sums start over with it.
        env_reset = reset_num_timesteps or self._last_obs is None
        result = super()._setup_learn(  # type: ignore[misc]
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        if self.ep_cost_buffer is None or reset_num_timesteps:
            self.ep_cost_buffer = deque(maxlen=self._stats_window_size)
            self._unconsumed_episode_costs = []
        if env_reset or self._episode_cost_sums is None or self._episode_cost_sums.shape != (self.n_envs,):
            self._episode_cost_sums = np.zeros(self.n_envs, dtype=np.float64)
        return result

    def _update_info_buffer(self, infos: list[dict[str, Any]], dones: np.ndarray | None = None) -> None:
        super()._update_info_buffer(infos, dones)  # type: ignore[misc]
        try:
            costs = costs_from_infos(infos)
        except MissingCostError as error:
            raise MissingCostError(describe_vec_env(self.env), error.info_keys) from None
        assert self._episode_cost_sums is not None and self.ep_cost_buffer is not None
        assert self._unconsumed_episode_costs is not None
        self._episode_cost_sums += costs
        if dones is None:
            return
        for index in np.flatnonzero(dones):
            episode_cost = float(self._episode_cost_sums[index])
            self.ep_cost_buffer.append(episode_cost)
            self._unconsumed_episode_costs.append(episode_cost)
            self._episode_cost_sums[index] = 0.0

    def pop_finished_episode_costs(self) -> list[float]:
        """The summed costs of the training episodes finished since the previous call (oldest first)."""
        finished = self._unconsumed_episode_costs or []
        self._unconsumed_episode_costs = []
        return finished

    @property
    def ep_cost_mean(self) -> float:
        """Mean cost of the last ``stats_window_size`` finished training episodes (nan before the first)."""
        return float(safe_mean(list(self.ep_cost_buffer or [])))

    def dump_logs(self) -> None:
        if self.ep_cost_buffer:
            self.logger.record("rollout/ep_cost_mean", self.ep_cost_mean)  # type: ignore[attr-defined]
        super().dump_logs()  # type: ignore[misc]

    def _excluded_save_params(self) -> list[str]:
        return [
            *super()._excluded_save_params(),  # type: ignore[misc]
            "ep_cost_buffer",
            "_episode_cost_sums",
            "_unconsumed_episode_costs",
        ]
