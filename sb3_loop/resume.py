"""
Runs that survive being killed: periodic checkpoints of a whole training run and continuing from the
latest one. Used by ``python -m sb3_loop train --checkpoint-dir DIR`` (see :mod:`sb3_loop.zoo`).

A checkpoint is a folder ``DIR/steps_<num_timesteps>/`` holding

- ``model.zip``: ``model.save`` (for LOOP the ensemble and its optimiser, ``dynamics_log`` and the step of
  the last refit; for SAC/TD3 the networks and their optimisers);
- ``replay_buffer_rows.pkl``: the replay buffer, only its filled rows (:func:`save_replay_buffer_rows`);
- ``<env>/vecnormalize.pkl``: ``VecNormalize`` statistics, if the env has them;
- ``state.json``: the step count, the evaluations so far, the cumulated wall-clock and what must match
  for a run to continue from it (the launcher's arguments and hyperparameters).

It is written under a temporary name and renamed into place (a folder rename is atomic), and only then
are older checkpoints removed, so a process killed at any moment leaves a complete checkpoint behind.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import pickle
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rl_zoo3.exp_manager import ExperimentManager
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback

CHECKPOINT_PREFIX = "steps_"
MODEL_FILE = "model.zip"
REPLAY_BUFFER_FILE = "replay_buffer_rows.pkl"
STATE_FILE = "state.json"
VEC_NORMALIZE_FILE = "vecnormalize.pkl"
_WRITING_PREFIX = ".writing_"


# ----------------------------------------------------------------------------- checkpoint files
def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the most steps under ``directory`` (``None`` if there is none)."""
    found = []
    for path in Path(directory).glob(f"{CHECKPOINT_PREFIX}*"):
        steps = path.name[len(CHECKPOINT_PREFIX) :]
        if steps.isdigit() and read_checkpoint_state(path) is not None:
            found.append((int(steps), path))
    return max(found)[1] if found else None


def read_checkpoint_state(checkpoint: str | os.PathLike) -> dict[str, Any] | None:
    """The ``state.json`` of a checkpoint folder, or ``None`` if it is missing or unreadable."""
    try:
        state = json.loads((Path(checkpoint) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and "num_timesteps" in state else None


def save_replay_buffer_rows(buffer: ReplayBuffer, path: str | os.PathLike) -> None:
    """
    Pickle a replay buffer with only its filled rows: a buffer allocates all ``buffer_size`` rows up
    front (about 2 GB of observations for Ant-v5 with the default million), ``save_replay_buffer`` writes
    them all. Read back with :func:`load_replay_buffer_rows`.
    """
    rows = buffer.buffer_size if buffer.full or buffer.optimize_memory_usage else buffer.pos
    trimmed = copy.copy(buffer)
    names = []
    for name, value in vars(buffer).items():
        if _is_row_array(value, buffer.buffer_size):
            setattr(trimmed, name, value[:rows])
            names.append(name)
        elif isinstance(value, dict) and value and all(_is_row_array(v, buffer.buffer_size) for v in value.values()):
            setattr(trimmed, name, {key: array[:rows] for key, array in value.items()})
            names.append(name)
    with open(path, "wb") as file:
        pickle.dump({"buffer": trimmed, "rows": rows, "trimmed": names}, file, protocol=pickle.HIGHEST_PROTOCOL)


def load_replay_buffer_rows(model: BaseAlgorithm, path: str | os.PathLike) -> ReplayBuffer:
    """Give ``model`` the replay buffer written by :func:`save_replay_buffer_rows`, at its full size."""
    with open(path, "rb") as file:
        data = pickle.load(file)
    buffer: ReplayBuffer = data["buffer"]
    for name in data["trimmed"]:
        value = getattr(buffer, name)
        if isinstance(value, dict):
            setattr(buffer, name, {key: _pad_rows(array, buffer.buffer_size) for key, array in value.items()})
        else:
            setattr(buffer, name, _pad_rows(value, buffer.buffer_size))
    buffer.device = model.device
    model.replay_buffer = buffer  # type: ignore[attr-defined]
    return buffer


def _is_row_array(value: Any, buffer_size: int) -> bool:
    return isinstance(value, np.ndarray) and value.ndim > 0 and value.shape[0] == buffer_size


def _pad_rows(array: np.ndarray, buffer_size: int) -> np.ndarray:
    if len(array) == buffer_size:
        return array
    full = np.zeros((buffer_size, *array.shape[1:]), dtype=array.dtype)
    full[: len(array)] = array
    return full


# ---------------------------------------------------------------------------------- evaluations
def evaluation_state(callback: EvalCallback) -> dict[str, Any]:
    """What an ``EvalCallback`` has measured so far, as JSON-compatible lists."""
    return {
        "timesteps": [int(step) for step in callback.evaluations_timesteps],
        "results": np.asarray(callback.evaluations_results, dtype=np.float64).tolist(),
        "ep_lengths": np.asarray(callback.evaluations_length, dtype=np.int64).tolist(),
        "successes": np.asarray(callback.evaluations_successes, dtype=bool).tolist(),
        "best_mean_reward": _finite_or_none(callback.best_mean_reward),
        "last_mean_reward": _finite_or_none(callback.last_mean_reward),
    }


def restore_evaluations(callback: EvalCallback, state: dict[str, Any]) -> None:
    """Put :func:`evaluation_state`'s lists back into ``callback`` and rewrite its ``evaluations.npz``,
    so the file holds every evaluation from the start before the next one is added."""
    callback.evaluations_timesteps = list(state["timesteps"])
    callback.evaluations_results = [list(row) for row in state["results"]]
    callback.evaluations_length = [list(row) for row in state["ep_lengths"]]
    callback.evaluations_successes = [list(row) for row in state.get("successes", [])]
    for name in ("best_mean_reward", "last_mean_reward"):
        value = state.get(name)
        setattr(callback, name, -np.inf if value is None else float(value))
    if callback.log_path is not None and callback.evaluations_timesteps:
        os.makedirs(os.path.dirname(callback.log_path), exist_ok=True)
        successes = {"successes": callback.evaluations_successes} if callback.evaluations_successes else {}
        np.savez(
            callback.log_path,
            timesteps=callback.evaluations_timesteps,
            results=callback.evaluations_results,
            ep_lengths=callback.evaluations_length,
            **successes,
        )


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


# ------------------------------------------------------------------------------------- callback
class RunCheckpointCallback(BaseCallback):
    """
    Write a checkpoint (see the module docstring) every ``save_freq`` env steps, keeping only the latest.
    It is written when the next rollout starts: with ``train_freq`` larger than one step, possibly a few
    steps after the multiple of ``save_freq``.

    :param directory: Folder of the checkpoints.
    :param save_freq: Env steps between checkpoints (counted over all envs).
    :param eval_callback: The run's ``EvalCallback``, whose evaluations each checkpoint carries (those of
        the checkpoint's step included).
    :param metadata: Stored as is in ``state.json`` (e.g. what must match to continue from it).
    :param wall_clock_offset: Wall-clock of earlier sittings of the run, in seconds.
    :param start_time: ``time.time()`` when this sitting started (default: now).
    :param vec_normalize_name: Path of the ``VecNormalize`` statistics inside a checkpoint.
    :param verbose: Print a line per checkpoint.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        save_freq: int,
        eval_callback: EvalCallback | None = None,
        metadata: dict[str, Any] | None = None,
        wall_clock_offset: float = 0.0,
        start_time: float | None = None,
        vec_normalize_name: str = VEC_NORMALIZE_FILE,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if save_freq < 1:
            raise ValueError(f"save_freq={save_freq} must be >= 1")
        self.directory = Path(directory)
        self.save_freq = save_freq
        self.eval_callback = eval_callback
        self.metadata = dict(metadata or {})
        self.wall_clock_offset = wall_clock_offset
        self.start_time = time.time() if start_time is None else start_time
        self.vec_normalize_name = vec_normalize_name
        self._last_saved = 0

    def _on_training_start(self) -> None:
        self._last_saved = self.model.num_timesteps

    def _on_rollout_start(self) -> None:
        # Not in _on_step: callbacks step before the algorithm stores the step's transition, refits LOOP's
        # ensemble and trains. A rollout starts once all that is done for the previous step(s).
        if self.model.num_timesteps // self.save_freq > self._last_saved // self.save_freq:
            self.save()

    def _on_step(self) -> bool:
        return True

    def save(self) -> Path:
        """Write a checkpoint of the current step now; returns its folder."""
        steps = self.model.num_timesteps
        final = self.directory / f"{CHECKPOINT_PREFIX}{steps}"
        self._last_saved = steps
        if final.exists():  # already written, e.g. the step this sitting resumed from
            return final
        writing = self.directory / f"{_WRITING_PREFIX}{CHECKPOINT_PREFIX}{steps}_{os.getpid()}"
        shutil.rmtree(writing, ignore_errors=True)
        writing.mkdir(parents=True)
        self._write(writing)
        os.replace(writing, final)
        for path in self.directory.iterdir():
            if path != final and (path.name.startswith(CHECKPOINT_PREFIX) or path.name.startswith(_WRITING_PREFIX)):
                shutil.rmtree(path, ignore_errors=True)
        if self.verbose >= 1:
            print(f"Saving run checkpoint to {final}")
        return final

    def _write(self, folder: Path) -> None:
        self.model.save(folder / MODEL_FILE)
        replay_buffer = getattr(self.model, "replay_buffer", None)
        if replay_buffer is not None:
            save_replay_buffer_rows(replay_buffer, folder / REPLAY_BUFFER_FILE)
        vec_normalize = self.model.get_vec_normalize_env()
        if vec_normalize is not None:
            (folder / self.vec_normalize_name).parent.mkdir(parents=True, exist_ok=True)
            vec_normalize.save(str(folder / self.vec_normalize_name))
        state = {
            **self.metadata,
            "num_timesteps": int(self.model.num_timesteps),
            "wall_clock_s": self.wall_clock_offset + time.time() - self.start_time,
            "saved": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "evaluations": None if self.eval_callback is None else evaluation_state(self.eval_callback),
        }
        (folder / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")  # written last, checked first


# ------------------------------------------------------------------------------------- rl-zoo3
@dataclass(frozen=True)
class CheckpointOptions:
    """
    The launcher's ``--checkpoint-dir`` / ``--checkpoint-freq``.

    :param directory: Folder of the run's checkpoints.
    :param freq: Env steps between checkpoints (``None``: the run's ``--eval-freq``).
    :param argv: The ``train`` arguments without these two options: a checkpoint is only continued by a
        launch with the same ones.
    :param start_time: ``time.time()`` when the launcher started.
    """

    directory: Path
    freq: int | None
    argv: tuple[str, ...]
    start_time: float


class IncompatibleCheckpoint(Exception):
    """The checkpoint was written by a run started with other arguments or hyperparameters."""


class ResumableExperimentManager(ExperimentManager):
    """
    rl-zoo3's ``ExperimentManager`` that writes :class:`RunCheckpointCallback` checkpoints and, when
    ``checkpoint.directory`` already holds one, continues that run from it instead of starting over:
    the model (networks, optimisers, LOOP's ensemble) and its replay buffer are loaded, training goes on
    for the steps left with ``num_timesteps`` counting on, and the ``EvalCallback`` gets the evaluations
    made so far. As with ``-i``, the zoo gives the launch its own ``<env>_<id>`` folder; its
    ``evaluations.npz`` holds every evaluation since step 0 and its final model the whole run.
    """

    def __init__(self, *args: Any, checkpoint: CheckpointOptions, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.optimize_hyperparameters:
            raise ValueError("--checkpoint-dir does not apply to -optimize")
        self.checkpoint = checkpoint
        self.resume_from = latest_checkpoint(checkpoint.directory)
        self.resume_state = None if self.resume_from is None else read_checkpoint_state(self.resume_from)
        self._saved_hyperparams: Any = None
        if self.resume_state is not None:
            _check_same("arguments", self.resume_state.get("argv"), list(checkpoint.argv), self.resume_from)
            self.trained_agent = str(self.resume_from / MODEL_FILE)
            self.continue_training = True

    def read_hyperparameters(self) -> tuple[dict[str, Any], dict[str, Any]]:
        hyperparams, saved_hyperparams = super().read_hyperparameters()
        self._saved_hyperparams = _jsonable(saved_hyperparams)
        if self.resume_state is not None:
            _check_same("hyperparameters", self.resume_state.get("hyperparams"), self._saved_hyperparams, self.resume_from)
        return hyperparams, saved_hyperparams

    def create_callbacks(self) -> None:
        freq = self.checkpoint.freq or self.eval_freq  # the zoo divides eval_freq by n_envs below
        if freq <= 0:
            raise ValueError("--checkpoint-dir needs --checkpoint-freq when --eval-freq is negative")
        super().create_callbacks()
        evaluations = [callback for callback in self.callbacks if isinstance(callback, EvalCallback)]
        self.checkpoint_callback = RunCheckpointCallback(
            self.checkpoint.directory,
            freq,
            eval_callback=evaluations[-1] if evaluations else None,
            metadata={
                "algo": self.algo,
                "env": str(self.env_name),
                "argv": list(self.checkpoint.argv),
                "hyperparams": self._saved_hyperparams,
            },
            wall_clock_offset=float(self.resume_state["wall_clock_s"]) if self.resume_state else 0.0,
            start_time=self.checkpoint.start_time,
            vec_normalize_name=f"{self.env_name}/{VEC_NORMALIZE_FILE}",  # where the zoo's -i loading looks
            verbose=self.verbose,
        )
        self.callbacks.append(self.checkpoint_callback)

    def _load_pretrained_agent(self, hyperparams: dict[str, Any], env: Any) -> BaseAlgorithm:
        model = super()._load_pretrained_agent(hyperparams, env)
        if self.resume_from is not None and (self.resume_from / REPLAY_BUFFER_FILE).is_file():
            load_replay_buffer_rows(model, self.resume_from / REPLAY_BUFFER_FILE)
        return model

    def learn(self, model: BaseAlgorithm) -> None:
        if self.resume_state is None:
            super().learn(model)
            return
        if self.algo == "ars" and self.n_envs > 1:
            raise ValueError("resuming ARS with several envs (the zoo's asynchronous evaluation) is not supported")
        steps = int(model.num_timesteps)
        left = max(self.n_timesteps - steps, 0)
        print(f"Resuming from checkpoint {self.resume_from} at {steps} steps, {left} steps left")
        evaluations = self.checkpoint_callback.eval_callback
        if evaluations is not None and self.resume_state.get("evaluations"):
            restore_evaluations(evaluations, self.resume_state["evaluations"])
        for callback in self.callbacks:  # their frequencies count calls: continue from the checkpoint's step
            callback.n_calls = steps // model.n_envs
        # the zoo's learn() without its ARS special case, and with num_timesteps counting on
        kwargs: dict[str, Any] = {"log_interval": None} if self.log_interval < -1 else {}
        if self.log_interval > -1:
            kwargs["log_interval"] = self.log_interval
        try:
            model.learn(left, callback=self.callbacks, reset_num_timesteps=False, **kwargs)
        except KeyboardInterrupt:  # as the zoo: the model is saved
            pass
        finally:
            self.callbacks[0].on_training_end()
            try:
                assert model.env is not None
                model.env.close()
            except EOFError:
                pass


def _jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (objects JSON cannot hold become their ``repr``)."""
    return json.loads(json.dumps(value, default=repr, sort_keys=True))


def _check_same(what: str, saved: Any, given: Any, checkpoint: Path | None) -> None:
    if saved != given:
        detail = _difference(saved, given) if isinstance(saved, (list, dict)) and isinstance(given, type(saved)) else ""
        raise IncompatibleCheckpoint(
            f"the checkpoint {checkpoint} was written by a run with other {what}{detail}; continue it with the "
            "same ones, or delete that folder (or pass another --checkpoint-dir) to start again"
        )


def _difference(saved: Sequence[Any] | dict[str, Any], given: Sequence[Any] | dict[str, Any]) -> str:
    if isinstance(saved, dict) and isinstance(given, dict):
        keys = sorted(key for key in set(saved) | set(given) if saved.get(key) != given.get(key))
        changes = [f"{key}: {saved.get(key)!r} then, {given.get(key)!r} now" for key in keys]
    else:
        saved, given = [str(item) for item in saved], [str(item) for item in given]
        opcodes = difflib.SequenceMatcher(a=saved, b=given, autojunk=False).get_opcodes()
        changes = [
            f"{' '.join(saved[i1:i2]) or 'nothing'!r} then, {' '.join(given[j1:j2]) or 'nothing'!r} now"
            for tag, i1, i2, j1, j2 in opcodes
            if tag != "equal"
        ]
    return " (" + "; ".join(changes) + ")"
