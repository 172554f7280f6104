"""Offline datasets: the in-memory type, D4RL-format HDF5 and Minari readers/writers, collection."""

from sb3_loop.datasets.dataset import ARRAY_FIELDS, DatasetError, OfflineDataset, fill_replay_buffer
from sb3_loop.datasets.hdf5 import read_d4rl_hdf5, write_d4rl_hdf5
from sb3_loop.datasets.loader import check_env, load_dataset
from sb3_loop.datasets.minari_io import read_minari, write_minari
from sb3_loop.datasets.scores import REFERENCE_RETURNS, normalized_score, reference_returns

__all__ = [
    "ARRAY_FIELDS",
    "REFERENCE_RETURNS",
    "DatasetError",
    "OfflineDataset",
    "check_env",
    "fill_replay_buffer",
    "load_dataset",
    "normalized_score",
    "read_d4rl_hdf5",
    "read_minari",
    "reference_returns",
    "write_d4rl_hdf5",
    "write_minari",
]
