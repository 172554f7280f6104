"""Small shared helpers of the LOOP algorithm tests (tiny budgets, a logger that keeps every dump)."""

from __future__ import annotations

from typing import Any

import torch
from stable_baselines3.common.logger import KVWriter, Logger

torch.set_num_threads(1)


def tiny_kwargs(**overrides: Any) -> dict[str, Any]:
    """LOOP arguments small enough for a few hundred steps in a couple of seconds on one core."""
    kwargs: dict[str, Any] = dict(
        learning_starts=100,
        population_size=16,
        num_particles=2,
        planning_iterations=2,
        ensemble_size=3,
        num_elites=2,
        dynamics_hidden_sizes=(16, 16),
        dynamics_train_freq=100,
        dynamics_max_epochs=5,
        dynamics_batch_size=64,
        batch_size=32,
        policy_kwargs=dict(net_arch=[16, 16]),
    )
    kwargs.update(overrides)
    return kwargs


class RecordingWriter(KVWriter):
    """Keeps a copy of every dump: ``dumps`` is a list of ``{key: value}``."""

    def __init__(self) -> None:
        self.dumps: list[dict[str, Any]] = []

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        self.dumps.append(dict(key_values))

    def keys(self) -> set[str]:
        return {key for dump in self.dumps for key in dump}

    def values(self, key: str) -> list[Any]:
        return [dump[key] for dump in self.dumps if key in dump]


def recording_logger() -> tuple[Logger, RecordingWriter]:
    """A logger (to pass to ``model.set_logger``) that records every dump in memory."""
    writer = RecordingWriter()
    return Logger(folder=None, output_formats=[writer]), writer
