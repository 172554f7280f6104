"""
What every offline algorithm here shares: the dataset in a replay buffer of its size, ``learn`` as
gradient steps without env interaction, argument checks, observation normalisation and saving
without the dataset.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.preprocessing import get_flattened_obs_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import MaybeCallback, ReplayBufferSamples
from stable_baselines3.common.utils import polyak_update
from torch.nn import functional as F

from sb3_loop.checks import check_number
from sb3_loop.datasets import OfflineDataset, fill_replay_buffer

if TYPE_CHECKING:
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

    _Base = OffPolicyAlgorithm
else:
    _Base = object

SelfOffline = TypeVar("SelfOffline", bound="OfflineAlgorithm")

#: Online off-policy arguments that mean nothing offline, with the reason given when one is passed.
ONLINE_ARGUMENTS = {
    "learning_starts": "there is no warm-up, every step of learn() is a gradient step on the dataset",
    "train_freq": "every step of learn() is one gradient step",
    "gradient_steps": "every step of learn() is one gradient step (learn(total_timesteps=N) does N)",
    "buffer_size": "the replay buffer is made to hold exactly the dataset",
    "action_noise": "the env is never stepped for training",
    "replay_buffer_class": "the dataset goes into a plain ReplayBuffer",
    "replay_buffer_kwargs": "the dataset goes into a plain ReplayBuffer",
    "optimize_memory_usage": "the dataset goes into a plain ReplayBuffer",
    "n_steps": "targets are one-step TD targets",
    "use_sde": "the env is never stepped for training",
    "sde_sample_freq": "the env is never stepped for training",
    "use_sde_at_warmup": "the env is never stepped for training",
    "ent_coef": "there is no entropy term",
    "target_entropy": "there is no entropy term",
}

#: Offset added to the dataset's observation std (TD3+BC's ``eps``), so constant features stay finite.
OBSERVATION_STD_EPS = 1e-3


# ---------------------------------------------------------------------------------------- checks
def reject_online_arguments(algorithm: str, arguments: dict[str, Any]) -> None:
    """``ValueError`` for an online-only argument, ``TypeError`` (as Python gives) for an unknown one."""
    for name, value in arguments.items():
        if name in ONLINE_ARGUMENTS:
            raise ValueError(f"{name}={value!r} does not apply to {algorithm}: {ONLINE_ARGUMENTS[name]}. Remove it.")
        raise TypeError(f"{algorithm}.__init__() got an unexpected keyword argument {name!r}")


def check_offline_arguments(learning_rate: Any, batch_size: Any, tau: Any, gamma: Any) -> None:
    """The arguments every offline algorithm here has."""
    if not callable(learning_rate):
        check_number("learning_rate", learning_rate, 0.0, low_open=True)
    check_number("batch_size", batch_size, 1, integer=True)
    check_number("tau", tau, 0.0, 1.0, low_open=True)
    check_number("gamma", gamma, 0.0, 1.0)


# ------------------------------------------------------------------------ observation normalising
class ObservationNormalizer(BaseFeaturesExtractor):
    """
    Flattens observations and standardises them with fixed statistics (TD3+BC's state normalisation).
    The statistics are buffers, so they are saved with the policy and raw env observations given to
    ``predict`` are normalised the same way after ``load``.

    :param observation_space: A ``Box`` observation space.
    """

    mean: th.Tensor
    std: th.Tensor

    def __init__(self, observation_space: spaces.Box) -> None:
        dim = get_flattened_obs_dim(observation_space)
        super().__init__(observation_space, dim)
        self.register_buffer("mean", th.zeros(dim))
        self.register_buffer("std", th.ones(dim))

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return (observations.flatten(1) - self.mean) / self.std


# ------------------------------------------------------------------------------- the algorithms
class OfflineAlgorithm(_Base):
    """
    Mixin (before the SB3 class in the bases) that trains an off-policy algorithm on a fixed dataset.

    - The dataset (an :class:`~sb3_loop.datasets.OfflineDataset`, or a file path / dataset name /
      Minari id read by ``sb3_loop.datasets.load_dataset``) is checked against the env's spaces and
      copied into a replay buffer of exactly its size, actions scaled to ``[-1, 1]`` as SB3 stores them.
    - ``learn(total_timesteps=N)`` does N gradient steps and never steps the env: ``num_timesteps``
      counts gradient steps, callbacks see ``on_step`` after each one (an ``EvalCallback`` evaluates
      every ``eval_freq`` gradient steps), ``train/*`` means are dumped every ``log_interval`` steps.
    - The env is only needed for its spaces and for callbacks (evaluation); one env, no VecNormalize.
    - The dataset is not saved. ``load(path)`` gives a model that predicts; to train it further pass
      the dataset again: ``load(path, env=env, dataset=...)`` or ``model.set_dataset(...)``.

    Subclasses implement :meth:`_gradient_step`.
    """

    dataset: OfflineDataset | None
    normalize_observations: bool

    def _init_offline(
        self, dataset: OfflineDataset | str | os.PathLike | None, normalize_observations: bool, online: dict[str, Any]
    ) -> None:
        """Called first in ``__init__``: checks and stores the offline arguments."""
        reject_online_arguments(type(self).__name__, online)
        if not isinstance(normalize_observations, bool):
            raise ValueError(f"normalize_observations={normalize_observations!r} must be True or False")
        self.normalize_observations = normalize_observations
        self.dataset = _check_dataset_argument(dataset)  # type: ignore[assignment]

    # ------------------------------------------------------------------------------ the dataset
    def set_dataset(self, dataset: OfflineDataset | str | os.PathLike) -> None:
        """
        Train on ``dataset`` from now on (e.g. after ``load``): check it against the spaces and put it into
        a new replay buffer. Observation statistics are taken from it only while the model has not done a
        gradient step; a trained model keeps the statistics its networks learned with.

        :param dataset: An ``OfflineDataset``, or what ``sb3_loop.datasets.load_dataset`` reads (file path,
            dataset name such as ``"Hopper-v5-medium"``, Minari id).
        """
        dataset = self._read_dataset(_check_dataset_argument(dataset))
        dataset.check_spaces(self.observation_space, self.action_space, self._env_name())
        if self.batch_size > len(dataset):
            raise ValueError(f"batch_size={self.batch_size} is larger than the dataset ({len(dataset)} transitions)")
        self.replay_buffer = ReplayBuffer(len(dataset), self.observation_space, self.action_space, device=self.device)
        fill_replay_buffer(self.replay_buffer, dataset)
        if self.normalize_observations and self._n_updates == 0:
            self._set_observation_stats(dataset.observations.reshape(len(dataset), -1))
        self.dataset = dataset

    def _read_dataset(self, dataset: OfflineDataset | str) -> OfflineDataset:
        if isinstance(dataset, OfflineDataset):
            return dataset
        from sb3_loop.datasets import load_dataset

        return load_dataset(dataset)  # checked against the spaces by the caller, naming the env id

    def _set_observation_stats(self, observations: np.ndarray) -> None:
        mean = th.as_tensor(observations.mean(axis=0), dtype=th.float32)
        std = th.as_tensor(observations.std(axis=0) + OBSERVATION_STD_EPS, dtype=th.float32)
        for module in self.policy.modules():
            if isinstance(module, ObservationNormalizer):
                module.mean.copy_(mean)
                module.std.copy_(std)

    def _env_name(self) -> str:
        if self.env is not None:
            with contextlib.suppress(AttributeError, IndexError):
                spec = self.env.get_attr("spec", indices=[0])[0]
                if spec is not None:
                    return spec.id
        return "the env"

    # -------------------------------------------------------------------------------- the model
    def _setup_model(self) -> None:
        self.buffer_size = 1  # a placeholder until set_dataset makes the dataset's buffer
        with self._offline_policy_kwargs():
            super()._setup_model()  # type: ignore[safe-super]
        if self.dataset is not None:
            self.set_dataset(self.dataset)

    @contextlib.contextmanager
    def _offline_policy_kwargs(self) -> Iterator[None]:
        """2x256 networks unless given, and the normaliser as features extractor (not kept in policy_kwargs)."""
        user_kwargs = self.policy_kwargs
        kwargs = {"net_arch": [256, 256], **user_kwargs}
        if self.normalize_observations:
            if "features_extractor_class" in user_kwargs:
                raise ValueError(
                    "policy_kwargs['features_extractor_class'] cannot be combined with normalize_observations=True, "
                    "which uses ObservationNormalizer as features extractor"
                )
            kwargs["features_extractor_class"] = ObservationNormalizer
        self.policy_kwargs = kwargs
        try:
            yield
        finally:
            self.policy_kwargs = user_kwargs

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "dataset"]  # type: ignore[safe-super]

    # ---------------------------------------------------------------------------------- training
    def learn(
        self: SelfOffline,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int | None = 1000,
        tb_log_name: str | None = None,
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfOffline:
        """
        Do ``total_timesteps`` gradient steps on the dataset (``num_timesteps`` counts them).

        :param total_timesteps: Gradient steps (in all, when ``reset_num_timesteps=False``).
        :param callback: Called after every gradient step.
        :param log_interval: Dump the logs every this many gradient steps (``None``: never).
        :param tb_log_name: Tensorboard run name (default: the class name).
        :param reset_num_timesteps: Start counting from zero (``False``: continue).
        :param progress_bar: Show a progress bar over the gradient steps.
        """
        if self.dataset is None:
            raise ValueError(
                f"{type(self).__name__} has no dataset to learn from: pass dataset=... to the constructor or "
                "to load(), or call set_dataset()"
            )
        if self.env is None:
            raise ValueError(f"{type(self).__name__}.learn needs an env (for its spaces and for callbacks): set_env(env)")
        if log_interval is not None:
            check_number("log_interval", log_interval, 1, integer=True)
        total_timesteps, callback = self._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name or type(self).__name__, progress_bar
        )
        callback.on_training_start(locals(), globals())
        while self.num_timesteps < total_timesteps:
            self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
            self.train(gradient_steps=1, batch_size=self.batch_size)
            self.num_timesteps += 1
            if log_interval is not None and self.num_timesteps % log_interval == 0:
                self.dump_logs()
            callback.update_locals(locals())
            if not callback.on_step():
                break
        callback.on_training_end()
        return self

    def _setup_learn(self, *args: Any, **kwargs: Any) -> Any:
        if self.env is not None and self.env.num_envs != 1:
            raise ValueError(
                f"{type(self).__name__} uses the env only for its spaces and evaluation: give it one env, "
                f"not {self.env.num_envs}"
            )
        if self._vec_normalize_env is not None:
            raise ValueError(
                f"{type(self).__name__} does not support VecNormalize: the dataset's observations and rewards are "
                "not normalised by it (use normalize_observations=True instead)"
            )
        return super()._setup_learn(*args, **kwargs)  # type: ignore[safe-super]

    def train(self, gradient_steps: int, batch_size: int = 256) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate([self.actor.optimizer, self.critic.optimizer])  # type: ignore[attr-defined]
        assert self.replay_buffer is not None
        for _ in range(gradient_steps):
            self._n_updates += 1
            batch = self.replay_buffer.sample(batch_size)
            for key, value in self._gradient_step(batch).items():
                self.logger.record_mean(f"train/{key}", value)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def _gradient_step(self, batch: ReplayBufferSamples) -> dict[str, float]:
        """One update of every network on ``batch``; returns the values to log under ``train/``."""
        raise NotImplementedError

    def _critic_step(self, batch: ReplayBufferSamples, next_actions: th.Tensor) -> tuple[float, th.Tensor]:
        """
        One TD update of the twin critic towards ``r + gamma * min_i Q'_i(s', a')``.

        :return: The loss, and ``min_i Q_i(s, a)`` of the batch before the update (detached).
        """
        critic, critic_target = self.critic, self.critic_target  # type: ignore[attr-defined]
        with th.no_grad():
            next_q = th.cat(critic_target(batch.next_observations, next_actions), dim=1).min(dim=1, keepdim=True).values
            target = batch.rewards + (1.0 - batch.dones) * self.gamma * next_q
        q_values = critic(batch.observations, batch.actions)
        loss = sum(F.mse_loss(q, target) for q in q_values)
        assert isinstance(loss, th.Tensor)
        _optimize(critic.optimizer, loss)
        return loss.item(), th.cat(q_values, dim=1).min(dim=1, keepdim=True).values.detach()

    def _soft_update(self, source: th.nn.Module, target: th.nn.Module) -> None:
        polyak_update(source.parameters(), target.parameters(), self.tau)

    def dump_logs(self) -> None:
        elapsed = max((time.time_ns() - self.start_time) / 1e9, sys.float_info.epsilon)
        self.logger.record("time/fps", int((self.num_timesteps - self._num_timesteps_at_start) / elapsed))
        self.logger.record("time/time_elapsed", int(elapsed), exclude="tensorboard")
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(step=self.num_timesteps)


def _optimize(optimizer: th.optim.Optimizer, loss: th.Tensor) -> None:
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def _check_dataset_argument(dataset: Any) -> OfflineDataset | str | None:
    if dataset is None or isinstance(dataset, OfflineDataset):
        return dataset
    if isinstance(dataset, (str, os.PathLike)):
        return os.fspath(dataset)
    raise ValueError(
        f"dataset={dataset!r} must be an OfflineDataset, a file path, a dataset name such as 'Hopper-v5-medium' or a Minari id"
    )
