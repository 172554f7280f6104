"""
D4RL-format HDF5 files, read and written with h5py (D4RL itself is never imported).

Layout: top-level datasets ``observations [N, *obs]``, ``actions [N, act]``, ``rewards [N]``,
``terminals [N]``, ``timeouts [N]`` and, optionally, ``next_observations [N, *obs]``; metadata as
``metadata/<key>`` datasets, the way D4RL stores its own.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sb3_loop.datasets.dataset import DatasetError, OfflineDataset, check_finite

#: Keys every D4RL-format file must have.
REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")

#: Attribute that marks a metadata value stored as JSON text.
_JSON_ATTR = "sb3_loop_json"


# ---------------------------------------------------------------------------------------- read
def read_d4rl_hdf5(path: str | os.PathLike) -> OfflineDataset:
    """
    Read a D4RL-format HDF5 file into an :class:`OfflineDataset`.

    With ``next_observations`` in the file, every row is kept as it is. Without it, the successor
    of row ``i`` is ``observations[i + 1]``, which is only right when row ``i`` ends no episode:

    * rows that are terminal, timeout or the last row of the file are dropped, since the observation
      that followed them is not in the file (the next row starts a new episode);
    * the row just before a dropped row keeps its successor (the dropped row's observation), but after
      the drop the next kept row starts another episode, so that row is marked ``timeout=True``: the
      episode is cut there while its last observation is not terminal (bootstrap from it). Marking it
      terminal would be wrong, and leaving it unmarked would glue two episodes together;
    * timeouts are not terminals: a row is only terminal when the file says so. This also means a
      file without ``next_observations`` loses its terminal transitions; files written by
      :func:`write_d4rl_hdf5` always carry ``next_observations``.

    The number of dropped rows goes to ``metadata["dropped_boundary_rows"]``.

    :param path: The file.
    :return: The transitions, with the file's ``metadata/...`` entries as ``metadata``.
    :raises DatasetError: When the file is missing, truncated, not HDF5, empty, lacks a required key,
        has keys of different lengths or wrong dimensions, or holds NaN or infinite values.
    """
    path = Path(path).expanduser()
    source = str(path)
    if path.is_dir():
        raise DatasetError(f"{source}: is a folder, not an HDF5 file")
    if not path.is_file():
        raise DatasetError(f"{source}: no such file")
    try:
        with h5py.File(path, "r") as file:
            arrays = _read_arrays(file, source)
            metadata = _read_metadata(file)
    except OSError as error:
        raise DatasetError(f"{source}: cannot read the file, it is truncated or not an HDF5 file ({error})") from error
    if "next_observations" in arrays:
        return OfflineDataset(**arrays, metadata=metadata, source=source)
    return _with_successors(arrays, metadata, source)


def _read_arrays(file: h5py.File, source: str) -> dict[str, np.ndarray]:
    if len(file.keys()) == 0:
        raise DatasetError(f"{source}: the file is empty (no keys)")
    missing = [key for key in REQUIRED_KEYS if not isinstance(file.get(key), h5py.Dataset)]
    if missing:
        raise DatasetError(
            f"{source}: missing required key {missing[0]!r} (all missing: {', '.join(missing)}; "
            f"the file has: {', '.join(sorted(file.keys()))})"
        )
    keys = list(REQUIRED_KEYS)
    if isinstance(file.get("next_observations"), h5py.Dataset):
        keys.append("next_observations")
    arrays = {key: _check_ndim(file[key][()], key, source) for key in keys}
    size = len(arrays["observations"])
    if size == 0:
        raise DatasetError(f"{source}: the file is empty (key 'observations' has 0 rows)")
    for key, array in arrays.items():
        if len(array) != size:
            raise DatasetError(f"{source}: key {key!r} has {len(array)} rows but 'observations' has {size} (length mismatch)")
        if np.issubdtype(array.dtype, np.number):
            check_finite(array, key, source)
    if "next_observations" in arrays and arrays["next_observations"].shape != arrays["observations"].shape:
        raise DatasetError(
            f"{source}: key 'next_observations' has shape {arrays['next_observations'].shape}, "
            f"'observations' has {arrays['observations'].shape}"
        )
    for key in ("terminals", "timeouts"):
        arrays[key] = arrays[key] != 0
    return arrays


def _check_ndim(array: np.ndarray, key: str, source: str) -> np.ndarray:
    """Observations are ``[N, *shape]``, actions ``[N, dim]``, per-row scalars ``[N]`` (``[N, 1]`` is squeezed)."""
    if key in ("rewards", "terminals", "timeouts"):
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise DatasetError(f"{source}: key {key!r} must be 1-D [rows], got shape {array.shape}")
    elif key == "actions" and array.ndim != 2:
        raise DatasetError(f"{source}: key 'actions' must be 2-D [rows, action_dim], got shape {array.shape}")
    elif key in ("observations", "next_observations") and array.ndim < 2:
        raise DatasetError(f"{source}: key {key!r} must be at least 2-D [rows, *obs_shape], got shape {array.shape}")
    return array


def _with_successors(arrays: dict[str, np.ndarray], metadata: dict[str, Any], source: str) -> OfflineDataset:
    """Build ``next_observations`` from the next row, dropping the rows whose successor is unknown."""
    terminals, timeouts = arrays["terminals"], arrays["timeouts"]
    boundary = terminals | timeouts
    boundary[-1] = True
    keep = ~boundary
    if not keep.any():
        raise DatasetError(
            f"{source}: no 'next_observations' and every row ends an episode, so no transition's successor is known"
        )
    next_observations = np.empty_like(arrays["observations"])
    next_observations[:-1] = arrays["observations"][1:]
    next_observations[-1] = arrays["observations"][-1]  # the last row is always dropped
    # A kept row followed by a dropped one is now the last row of its episode (the last row is never kept).
    cut = keep & np.roll(boundary, -1)
    timeouts = timeouts | cut
    metadata = {**metadata, "dropped_boundary_rows": int(boundary.sum())}
    return OfflineDataset(
        observations=arrays["observations"][keep],
        actions=arrays["actions"][keep],
        rewards=arrays["rewards"][keep],
        next_observations=next_observations[keep],
        terminals=terminals[keep],
        timeouts=timeouts[keep],
        metadata=metadata,
        source=source,
    )


def _read_metadata(file: h5py.File) -> dict[str, Any]:
    group = file.get("metadata")
    if not isinstance(group, h5py.Group):
        return {}
    metadata: dict[str, Any] = {}

    def visit(name: str, node: h5py.Dataset | h5py.Group) -> None:
        if isinstance(node, h5py.Dataset):
            metadata[name] = _read_metadata_value(node)

    group.visititems(visit)
    return metadata


def _read_metadata_value(node: h5py.Dataset) -> Any:
    if h5py.check_string_dtype(node.dtype) is not None:
        value = node.asstr()[()]
        if isinstance(value, np.ndarray):
            return value.tolist()
        return json.loads(value) if node.attrs.get(_JSON_ATTR, False) else value
    value = node[()]
    return value.item() if isinstance(value, np.generic) else value


# --------------------------------------------------------------------------------------- write
def write_d4rl_hdf5(dataset: OfflineDataset, path: str | os.PathLike) -> Path:
    """
    Write ``dataset`` as a D4RL-format HDF5 file (gzip-compressed, ``next_observations`` included).

    The file is written next to ``path`` under a temporary name and renamed into place once
    complete, so an interrupted write never leaves a partial file at ``path``.

    ``metadata`` goes to ``metadata/<key>``: strings, numbers, booleans and arrays as they are, other
    values (dicts, lists, ``None``) as JSON text, read back as JSON (tuples come back as lists).

    :param dataset: The transitions.
    :param path: Where to write (parent folders are made).
    :return: The path written.
    """
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(handle)
    try:
        with h5py.File(tmp_name, "w") as file:
            for key in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
                file.create_dataset(key, data=getattr(dataset, key), compression="gzip")
            group = file.create_group("metadata")
            for key, value in dataset.metadata.items():
                _write_metadata_value(group, str(key), value, str(path))
        os.chmod(tmp_name, 0o666 & ~_current_umask())  # mkstemp makes it private; give it a normal file's mode
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def _write_metadata_value(group: h5py.Group, key: str, value: Any, source: str) -> None:
    numeric_array = isinstance(value, np.ndarray) and value.dtype.kind in "biuf"
    if numeric_array or isinstance(value, (str, bool, int, float, np.generic)):
        group.create_dataset(key, data=value)
        return
    try:
        text = json.dumps(value, default=json_default)
    except TypeError as error:
        raise DatasetError(f"{source}: metadata key {key!r} cannot be stored ({error})") from error
    group.create_dataset(key, data=text)
    group[key].attrs[_JSON_ATTR] = True


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback for NumPy scalars and arrays."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
