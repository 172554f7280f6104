"""One entry point for offline data: a file, a dataset made here, or a Minari id."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium as gym

from sb3_loop.datasets import registry
from sb3_loop.datasets.dataset import DatasetError, OfflineDataset
from sb3_loop.datasets.hdf5 import read_d4rl_hdf5
from sb3_loop.datasets.minari_io import read_minari

#: File name endings read as D4RL-format HDF5.
HDF5_SUFFIXES = (".hdf5", ".h5", ".hdf")


def load_dataset(source: str | os.PathLike, env: gym.Env | str | None = None) -> OfflineDataset:
    """
    Load offline data, whatever its form.

    ``source`` is, checked in this order:

    1. an existing file: read as D4RL-format HDF5;
    2. something that looks like a file path (ends in ``.hdf5``/``.h5``, starts with ``/``, ``.`` or
       ``~``) but does not exist: an error naming the path;
    3. a dataset name made here (``Hopper-v5-medium``, ``hopper-medium``): its file in the dataset
       cache, or an error with the command that builds it;
    4. anything else: a local Minari dataset id (``mujoco/hopper/medium-v0``).

    :param source: A file path, a dataset name or a Minari id.
    :param env: The env (or env id) the data is for; when given, the data's shapes and action bounds
        are checked against its spaces.
    :return: The transitions.
    :raises DatasetError: When the data cannot be found or read, or does not fit ``env``.
    """
    dataset = _load(source)
    if env is not None:
        check_env(dataset, env)
    return dataset


def _load(source: str | os.PathLike) -> OfflineDataset:
    path = Path(source).expanduser()
    if path.is_file():
        return read_d4rl_hdf5(path)
    text = os.fspath(source)
    if _looks_like_path(text):
        if path.is_dir():
            raise DatasetError(f"{text}: is a folder; give an HDF5 file, a dataset name or a Minari id")
        raise DatasetError(f"{text}: no such file (the path does not exist, so there is nothing to read)")
    parsed = registry.parse_dataset_name(text)
    if parsed is not None:
        return _load_cached(text, *parsed)
    return read_minari(text)


def _looks_like_path(text: str) -> bool:
    return text.lower().endswith(HDF5_SUFFIXES) or text.startswith(("/", ".", "~"))


def _load_cached(name: str, env_id: str, kind: str) -> OfflineDataset:
    path = registry.dataset_path(env_id, kind)
    if not path.is_file():
        configured = os.environ.get(registry.DATASETS_ENV_VAR)
        where = f"${registry.DATASETS_ENV_VAR}={configured}" if configured else f"${registry.DATASETS_ENV_VAR} is unset"
        raise DatasetError(
            f"{name}: dataset {registry.dataset_name(env_id, kind)!r} is not built yet, {path} is missing "
            f"(cache folder {registry.cache_dir()}, {where}). Build it with:\n    {registry.build_command(env_id, kind)}"
        )
    return read_d4rl_hdf5(path)


def check_env(dataset: OfflineDataset, env: gym.Env | str | Any) -> None:
    """
    Raise :class:`DatasetError` when ``dataset`` does not fit ``env``'s spaces.

    :param dataset: The transitions.
    :param env: A Gymnasium env, an env id, or anything with ``observation_space`` and ``action_space``.
    """
    if isinstance(env, str):
        made = gym.make(env)
        try:
            dataset.check_spaces(made.observation_space, made.action_space, env)
        finally:
            made.close()
        return
    spec = getattr(env, "spec", None)
    env_id = spec.id if spec is not None else type(env).__name__
    dataset.check_spaces(env.observation_space, env.action_space, env_id)
