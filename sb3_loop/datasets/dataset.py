"""The in-memory offline dataset every reader returns and every offline algorithm trains on."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

#: Array fields of :class:`OfflineDataset`, in storage order.
ARRAY_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")


class DatasetError(ValueError):
    """Bad offline data: the message names the source, the key and, where it applies, the row."""


@dataclasses.dataclass
class OfflineDataset:
    """
    Transitions ``(s, a, r, s', terminal, timeout)`` in one set of flat arrays, episodes stored one
    after the other. Every row is a real transition: ``next_observations[i]`` is the observation that
    followed ``observations[i]`` (readers drop rows whose successor is unknown), so no transition
    crosses an episode end.

    :param observations: ``[N, *obs_shape]`` float32.
    :param actions: ``[N, action_dim]`` float32.
    :param rewards: ``[N]`` float32.
    :param next_observations: ``[N, *obs_shape]`` float32.
    :param terminals: ``[N]`` bool, the MDP ended at ``s'`` (no bootstrapping from it).
    :param timeouts: ``[N]`` bool, the episode was cut after this row (time limit, or the data stops)
        while ``s'`` is not terminal: bootstrap from it, but the next row starts a new episode.
    :param metadata: Free-form description (env id, kind, behaviour policy, seeds, ...).
    :param source: Where the data came from, used in error messages.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    source: str = "<memory>"

    def __post_init__(self) -> None:
        self.observations = np.asarray(self.observations, dtype=np.float32)
        self.actions = np.asarray(self.actions, dtype=np.float32)
        self.rewards = np.asarray(self.rewards, dtype=np.float32).reshape(-1)
        self.next_observations = np.asarray(self.next_observations, dtype=np.float32)
        self.terminals = np.asarray(self.terminals).astype(bool).reshape(-1)
        self.timeouts = np.asarray(self.timeouts).astype(bool).reshape(-1)
        self.validate()

    # ------------------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise :class:`DatasetError` on empty data, length or shape mismatches, or non-finite values."""
        size = len(self.observations)
        if size == 0:
            raise DatasetError(f"{self.source}: the dataset is empty (key 'observations' has 0 rows)")
        for key in ARRAY_FIELDS:
            length = len(getattr(self, key))
            if length != size:
                raise DatasetError(
                    f"{self.source}: key {key!r} has {length} rows but 'observations' has {size} (length mismatch)"
                )
        if self.actions.ndim != 2:
            raise DatasetError(f"{self.source}: key 'actions' must be 2-D [rows, action_dim], got shape {self.actions.shape}")
        if self.next_observations.shape != self.observations.shape:
            raise DatasetError(
                f"{self.source}: key 'next_observations' has shape {self.next_observations.shape}, "
                f"'observations' has {self.observations.shape}"
            )
        for key in ("observations", "actions", "rewards", "next_observations"):
            check_finite(getattr(self, key), key, self.source)

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space, env_id: str = "the env") -> None:
        """
        Raise :class:`DatasetError` when the data does not fit ``env_id``'s spaces: observation or
        action shapes differ, or an action lies outside the action bounds.
        """
        if not isinstance(action_space, spaces.Box) or not isinstance(observation_space, spaces.Box):
            raise DatasetError(
                f"{self.source}: offline datasets need Box observation and action spaces, {env_id} has "
                f"{observation_space} / {action_space}"
            )
        if self.observations.shape[1:] != observation_space.shape:
            raise DatasetError(
                f"{self.source}: key 'observations' has rows of shape {self.observations.shape[1:]}, "
                f"{env_id} observes {observation_space.shape}"
            )
        if self.actions.shape[1:] != action_space.shape:
            raise DatasetError(
                f"{self.source}: key 'actions' has rows of shape {self.actions.shape[1:]}, "
                f"{env_id} acts with {action_space.shape}"
            )
        tolerance = 1e-4 * np.maximum(1.0, np.abs(action_space.high - action_space.low))
        outside = (self.actions < action_space.low - tolerance) | (self.actions > action_space.high + tolerance)
        if outside.any():
            row, column = np.argwhere(outside)[0]
            raise DatasetError(
                f"{self.source}: key 'actions' row {row} column {column} is {float(self.actions[row, column])!r}, "
                f"outside {env_id}'s action bounds [{action_space.low[column]}, {action_space.high[column]}]"
            )

    # ---------------------------------------------------------------------------- episodes
    def __len__(self) -> int:
        return len(self.observations)

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return tuple(self.observations.shape[1:])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[1])

    def episode_ends(self) -> np.ndarray:
        """Row indices that end an episode (terminal, timeout, or the last row)."""
        ends = self.terminals | self.timeouts
        ends[-1] = True
        return np.flatnonzero(ends)

    def episodes(self) -> Iterator[slice]:
        """The rows of each episode, in order."""
        start = 0
        for end in self.episode_ends():
            yield slice(start, int(end) + 1)
            start = int(end) + 1

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each episode (including an unfinished last one)."""
        return np.array([float(self.rewards[episode].sum()) for episode in self.episodes()])

    def episode_lengths(self) -> np.ndarray:
        return np.diff(np.concatenate([[-1], self.episode_ends()]))

    # ------------------------------------------------------------------------ combinations
    def subset(self, rows: np.ndarray | slice) -> OfflineDataset:
        """The given rows (a row kept without its successor row stays a valid transition)."""
        arrays = {key: getattr(self, key)[rows] for key in ARRAY_FIELDS}
        return OfflineDataset(**arrays, metadata=dict(self.metadata), source=self.source)

    @classmethod
    def concatenate(cls, datasets: Sequence[OfflineDataset], metadata: dict[str, Any] | None = None) -> OfflineDataset:
        """The datasets one after the other; each one's last row is marked as an episode end."""
        if not datasets:
            raise DatasetError("concatenate needs at least one dataset")
        parts = []
        for dataset in datasets:
            timeouts = dataset.timeouts.copy()
            timeouts[-1] |= not dataset.terminals[-1]
            parts.append((dataset, timeouts))
        arrays = {key: np.concatenate([getattr(d, key) for d, _ in parts]) for key in ARRAY_FIELDS if key != "timeouts"}
        arrays["timeouts"] = np.concatenate([t for _, t in parts])
        source = " + ".join(d.source for d in datasets)
        return cls(**arrays, metadata=dict(metadata or {}), source=source)

    def checksum(self) -> str:
        """SHA-256 over the arrays (dtype, shape and bytes): equal checksums mean identical data."""
        digest = hashlib.sha256()
        for key in ARRAY_FIELDS:
            array = np.ascontiguousarray(getattr(self, key))
            digest.update(f"{key}:{array.dtype.str}:{array.shape}".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()


def check_finite(array: np.ndarray, key: str, source: str) -> None:
    """Raise :class:`DatasetError` naming the first row of ``array`` with a NaN or an infinity."""
    finite = np.isfinite(array)
    if not finite.all():
        bad = ~finite.reshape(len(array), -1).all(axis=1)
        row = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"{source}: key {key!r} row {row} is not finite ({array[row]!r}); {int(bad.sum())} such rows")


def fill_replay_buffer(buffer: Any, dataset: OfflineDataset) -> None:
    """
    Put the dataset into an SB3 ``ReplayBuffer`` with one env (``n_envs=1``) and room for it, so SB3's
    ``sample`` draws from it as from online experience. Actions are stored as SB3's off-policy
    algorithms store them, scaled from the buffer's ``action_space`` bounds to ``[-1, 1]``. ``dones``
    carry the terminals; timeouts are not terminals, so they are not marked done (SB3 bootstraps them).

    :param buffer: ``stable_baselines3.common.buffers.ReplayBuffer`` with ``buffer_size >= len(dataset)``.
    :param dataset: The transitions (actions in env units).
    """
    size = len(dataset)
    if buffer.n_envs != 1:
        raise ValueError(f"the replay buffer must have n_envs=1, not {buffer.n_envs}")
    if buffer.buffer_size < size:
        raise ValueError(f"the replay buffer holds {buffer.buffer_size} transitions, the dataset has {size}")
    buffer.observations[:size, 0] = dataset.observations.reshape(buffer.observations[:size, 0].shape)
    buffer.next_observations[:size, 0] = dataset.next_observations.reshape(buffer.next_observations[:size, 0].shape)
    low, high = buffer.action_space.low, buffer.action_space.high
    buffer.actions[:size, 0] = np.clip(2.0 * (dataset.actions - low) / (high - low) - 1.0, -1.0, 1.0)
    buffer.rewards[:size, 0] = dataset.rewards
    buffer.dones[:size, 0] = dataset.terminals.astype(np.float32)
    if hasattr(buffer, "timeouts"):
        buffer.timeouts[:size, 0] = 0.0
    buffer.pos = size % buffer.buffer_size
    buffer.full = size == buffer.buffer_size
