"""Offline datasets: the in-memory type, D4RL-format HDF5 and Minari readers/writers, collection."""

from sb3_loop.datasets.dataset import ARRAY_FIELDS, DatasetError, OfflineDataset, fill_replay_buffer

__all__ = ["ARRAY_FIELDS", "DatasetError", "OfflineDataset", "fill_replay_buffer"]
