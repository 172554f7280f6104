"""
Minari datasets, read from and written to the local Minari folder (nothing is downloaded).

Minari stores episodes: ``observations [T + 1]``, ``actions [T]``, ``rewards [T]``, ``terminations [T]``
and ``truncations [T]``. Flat rows take ``next_observations`` from the episode's next observation,
``terminals`` from the terminations and ``timeouts`` from the truncations.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_loop.datasets.dataset import ARRAY_FIELDS, DatasetError, OfflineDataset
from sb3_loop.datasets.hdf5 import json_default

#: Minari's environment variable for its dataset folder.
MINARI_PATH_ENV_VAR = "MINARI_DATASETS_PATH"

#: Key of the Minari metadata that holds :attr:`OfflineDataset.metadata` (as JSON text).
METADATA_KEY = "sb3_loop_metadata"


def minari_root() -> str:
    """Where Minari keeps local datasets, as ``MINARI_DATASETS_PATH=...`` or the default when it is unset."""
    configured = os.environ.get(MINARI_PATH_ENV_VAR)
    if configured is not None:
        return f"{MINARI_PATH_ENV_VAR}={configured}"
    default = Path.home() / ".minari" / "datasets"
    return f"{MINARI_PATH_ENV_VAR} is unset, so the default {default}"


# ---------------------------------------------------------------------------------------- read
def read_minari(dataset_id: str) -> OfflineDataset:
    """
    Read a local Minari dataset into an :class:`OfflineDataset`.

    The last step of an episode that neither terminated nor was truncated (the data stops there)
    becomes a timeout, so no transition runs into the next episode.

    :param dataset_id: The Minari id, e.g. ``mujoco/hopper/medium-v0``.
    :return: The transitions; ``metadata`` is what :func:`write_minari` stored, or else the Minari id
        and env id.
    :raises DatasetError: When the dataset is not in the local Minari folder, or its spaces are not
        ``Box`` spaces.
    """
    import minari

    source = f"minari:{dataset_id}"
    try:
        data = minari.load_dataset(dataset_id)
    except FileNotFoundError as error:
        raise DatasetError(
            f"{source}: Minari dataset {dataset_id!r} is not in the local Minari folder ({minari_root()}); "
            f"nothing is downloaded here, fetch it with `minari download {dataset_id}` or point "
            f"{MINARI_PATH_ENV_VAR} to the folder that has it"
        ) from error
    except ValueError as error:
        raise DatasetError(f"{source}: cannot open the Minari dataset ({minari_root()}): {error}") from error
    _check_box_spaces(data.observation_space, data.action_space, source)
    arrays = _flatten_episodes(data, source)
    return OfflineDataset(**arrays, metadata=_read_metadata(data, dataset_id), source=source)


def _check_box_spaces(observation_space: spaces.Space, action_space: spaces.Space, source: str) -> None:
    if not isinstance(observation_space, spaces.Box):
        raise DatasetError(f"{source}: offline datasets need a Box observation space, this one has {observation_space}")
    if not isinstance(action_space, spaces.Box) or len(action_space.shape) != 1:
        raise DatasetError(f"{source}: offline datasets need a 1-D Box action space, this one has {action_space}")


def _flatten_episodes(data: Any, source: str) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {key: [] for key in ARRAY_FIELDS}
    for episode in data.iterate_episodes():
        steps = len(episode.rewards)
        if steps == 0:
            continue
        observations = np.asarray(episode.observations)
        if len(observations) != steps + 1:
            raise DatasetError(
                f"{source}: episode {episode.id} has {len(observations)} observations for {steps} steps (expected {steps + 1})"
            )
        terminals = np.asarray(episode.terminations, dtype=bool).reshape(-1)
        timeouts = np.asarray(episode.truncations, dtype=bool).reshape(-1).copy()
        timeouts[-1] |= not terminals[-1]
        parts["observations"].append(observations[:-1])
        parts["next_observations"].append(observations[1:])
        parts["actions"].append(np.asarray(episode.actions).reshape(steps, -1))
        parts["rewards"].append(np.asarray(episode.rewards).reshape(-1))
        parts["terminals"].append(terminals)
        parts["timeouts"].append(timeouts)
    if not parts["observations"]:
        raise DatasetError(f"{source}: the dataset is empty (no episode has a step)")
    return {key: np.concatenate(arrays) for key, arrays in parts.items()}


def _read_metadata(data: Any, dataset_id: str) -> dict[str, Any]:
    stored = data.storage.metadata.get(METADATA_KEY)
    if stored is not None:
        return json.loads(stored)
    metadata: dict[str, Any] = {"minari_dataset_id": dataset_id}
    env_spec = data.spec.env_spec
    if env_spec is not None:
        metadata["env_id"] = env_spec.id
    return metadata


# --------------------------------------------------------------------------------------- write
def write_minari(
    dataset: OfflineDataset,
    dataset_id: str,
    env_id: str | None = None,
    overwrite: bool = False,
    **metadata: Any,
) -> Path:
    """
    Write ``dataset`` as a local Minari dataset, one Minari episode per episode of ``dataset``.

    An episode ends at a terminal, a timeout, the last row, and wherever ``next_observations[i]``
    differs from ``observations[i + 1]`` (the data jumps). An episode that ends without a terminal or
    a timeout is stored as truncated, so it reads back with ``timeout=True`` there; otherwise
    :func:`read_minari` gives back identical arrays. ``dataset.metadata`` is stored as well.

    :param dataset: The transitions.
    :param dataset_id: The Minari id, e.g. ``registry.minari_dataset_id("Hopper-v5", "medium")``.
    :param env_id: The Gymnasium env the data comes from: its spaces are checked against the data and
        stored. Without it, the spaces are unbounded ``Box`` spaces of the data's shapes.
    :param overwrite: Replace a local dataset with the same id (otherwise that is an error).
    :param metadata: More keyword arguments of ``minari.create_dataset_from_buffers`` (``author``,
        ``algorithm_name``, ``description``, ``code_permalink``, ``ref_min_score``, ...).
    :return: The dataset's local folder.
    """
    import minari
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.storage import get_dataset_path

    source = f"minari:{dataset_id}"
    try:
        parse_dataset_id(dataset_id)
    except ValueError as error:
        raise DatasetError(f"{source}: not a valid Minari id ({error})") from error
    space_kwargs = _space_kwargs(dataset, env_id, metadata, source)
    try:
        stored_metadata = json.dumps(dataset.metadata, default=json_default)
    except TypeError as error:
        raise DatasetError(f"{source}: the metadata cannot be stored as JSON ({error})") from error
    folder = get_dataset_path(dataset_id)
    if folder.exists():
        if not overwrite or not (folder / "data").is_dir():
            raise DatasetError(f"{source}: {folder} exists already (to replace a dataset there, pass overwrite=True)")
        shutil.rmtree(folder)
    try:
        with warnings.catch_warnings():
            # Minari warns about every optional field left unset; the caller chose them.
            warnings.filterwarnings("ignore", message=r".*(is set to None|env_spec is None)", category=UserWarning)
            created = minari.create_dataset_from_buffers(
                dataset_id, _episode_buffers(dataset), jpeg_encoding=False, **space_kwargs, **metadata
            )
        created.storage.update_metadata({METADATA_KEY: stored_metadata})
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # never leave a half-written dataset behind
        raise
    return Path(folder)


def _space_kwargs(dataset: OfflineDataset, env_id: str | None, metadata: dict[str, Any], source: str) -> dict[str, Any]:
    if env_id is None:
        observation_space = metadata.pop("observation_space", None) or spaces.Box(
            -np.inf, np.inf, dataset.observation_shape, np.float32
        )
        action_space = metadata.pop("action_space", None) or spaces.Box(-np.inf, np.inf, (dataset.action_dim,), np.float32)
        _check_box_spaces(observation_space, action_space, source)
        dataset.check_spaces(observation_space, action_space, "the given spaces")
        return {"observation_space": observation_space, "action_space": action_space}
    env = gym.make(env_id)
    try:
        _check_box_spaces(env.observation_space, env.action_space, f"{source} ({env_id})")
        dataset.check_spaces(env.observation_space, env.action_space, env_id)
    finally:
        env.close()
    return {"env": env_id}


def _episode_buffers(dataset: OfflineDataset) -> list[Any]:
    from minari.data_collector.episode_buffer import EpisodeBuffer

    buffers = []
    for episode_id, rows in enumerate(_episodes(dataset)):
        last = rows.stop - 1
        truncations = dataset.timeouts[rows].copy()
        truncations[-1] |= not dataset.terminals[last]
        observations = np.concatenate([dataset.observations[rows], dataset.next_observations[last : last + 1]])
        buffers.append(
            EpisodeBuffer(
                id=episode_id,
                observations=observations,
                actions=dataset.actions[rows],
                rewards=dataset.rewards[rows],
                terminations=dataset.terminals[rows],
                truncations=truncations,
            )
        )
    return buffers


def _episodes(dataset: OfflineDataset) -> list[slice]:
    """Episode rows: ends at terminals, timeouts, the last row and wherever the next row does not follow on."""
    ends = dataset.terminals | dataset.timeouts
    ends[-1] = True
    size = len(dataset)
    jumps = (dataset.next_observations[:-1] != dataset.observations[1:]).reshape(size - 1, -1).any(axis=1)
    ends[:-1] |= jumps
    starts = np.concatenate([[0], np.flatnonzero(ends)[:-1] + 1])
    return [slice(int(start), int(end) + 1) for start, end in zip(starts, np.flatnonzero(ends))]
