"""
Names and places of the datasets made here.

A dataset made by ``python -m sb3_loop collect ENV_ID --kind KIND`` is named ``<ENV_ID>-<KIND>``
(``Hopper-v5-medium``); D4RL's short names (``hopper-medium``, ``halfcheetah-medium-replay``) name the
same dataset of the ``-v5`` env. It lives in the cache folder: ``$SB3_LOOP_DATASETS`` when set,
otherwise ``~/.cache/sb3_loop/datasets``, as ``<cache>/<ENV_ID>/<KIND>.hdf5`` (D4RL format) and, for
Minari, under the id ``sb3_loop/<ENV_ID>/<KIND>-v0`` in ``$MINARI_DATASETS_PATH``.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that overrides the dataset cache folder.
DATASETS_ENV_VAR = "SB3_LOOP_DATASETS"

#: The kinds of dataset ``collect`` makes, as D4RL made them.
DATASET_KINDS = ("random", "medium", "medium-replay", "medium-expert", "expert")

#: D4RL's environment names -> the Gymnasium env ids we make their datasets with.
D4RL_ENV_IDS = {
    "hopper": "Hopper-v5",
    "halfcheetah": "HalfCheetah-v5",
    "walker2d": "Walker2d-v5",
    "ant": "Ant-v5",
}


def cache_dir() -> Path:
    """The dataset cache folder (``$SB3_LOOP_DATASETS`` or ``~/.cache/sb3_loop/datasets``)."""
    configured = os.environ.get(DATASETS_ENV_VAR)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "sb3_loop" / "datasets"


def check_kind(kind: str) -> str:
    if kind not in DATASET_KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}: choose one of {', '.join(DATASET_KINDS)}")
    return kind


def dataset_name(env_id: str, kind: str) -> str:
    return f"{env_id}-{check_kind(kind)}"


def parse_dataset_name(name: str) -> tuple[str, str] | None:
    """
    ``(env_id, kind)`` of a dataset name (``Hopper-v5-medium-replay``, ``hopper-medium``), or ``None``
    when ``name`` is not one.
    """
    for kind in sorted(DATASET_KINDS, key=len, reverse=True):
        suffix = f"-{kind}"
        if not name.endswith(suffix):
            continue
        env_part = name[: -len(suffix)]
        env_part = D4RL_ENV_IDS.get(env_part, env_part)
        if env_part and "-v" in env_part:
            return env_part, kind
    return None


def dataset_path(env_id: str, kind: str) -> Path:
    """Where ``collect`` writes the D4RL-format HDF5 file of ``env_id``'s ``kind`` dataset."""
    return cache_dir() / env_id / f"{check_kind(kind)}.hdf5"


def minari_dataset_id(env_id: str, kind: str) -> str:
    """The Minari id ``collect --format minari`` gives the dataset."""
    return f"sb3_loop/{env_id}/{check_kind(kind)}-v0"


def build_command(env_id: str, kind: str) -> str:
    """The command that (re)builds the dataset into the cache."""
    return f"python -m sb3_loop collect {env_id} --kind {check_kind(kind)}"
