"""LOOP with SB3 callbacks, loggers (tensorboard, csv) and the progress bar."""

from __future__ import annotations

import csv

import gymnasium as gym
import numpy as np
import pytest
import torch
from loop_helpers import recording_logger, tiny_kwargs
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, CheckpointCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor

from sb3_loop import LOOP

torch.set_num_threads(1)

LOGGED_KEYS = {
    "dynamics/holdout_mse",
    "dynamics/epochs",
    "dynamics/train_seconds",
    "planner/ms_per_action",
    "planner/fallbacks",
}


def make_model(env_id: str = "InvertedPendulum-v5", **kwargs) -> LOOP:
    return LOOP("MlpPolicy", make_vec_env(env_id, n_envs=1, seed=0), seed=0, **tiny_kwargs(**kwargs))


def short_eval_env() -> Monitor:
    return Monitor(gym.make("Pendulum-v1", max_episode_steps=10))


class SnapshotRolloutPlanner(BaseCallback):
    """Keeps the rollout planner's warm start, so that a later callback can check it was left alone."""

    def __init__(self) -> None:
        super().__init__()
        self.mean: torch.Tensor | None = None

    def _on_step(self) -> bool:
        mean = self.model.policy.rollout_planner._mean
        self.mean = None if mean is None else mean.clone()
        return True


class CheckRolloutPlanner(BaseCallback):
    def __init__(self, snapshot: SnapshotRolloutPlanner) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.checked = 0

    def _on_step(self) -> bool:
        mean = self.model.policy.rollout_planner._mean
        if self.snapshot.mean is not None:
            assert torch.equal(mean, self.snapshot.mean), "evaluation disturbed the training warm start"
            self.checked += 1
        return True


def test_eval_callback(tmp_path):
    model = make_model("Pendulum-v1")
    eval_callback = EvalCallback(
        short_eval_env(),
        eval_freq=100,
        n_eval_episodes=1,
        best_model_save_path=str(tmp_path),
        log_path=str(tmp_path),
        verbose=0,
    )
    snapshot = SnapshotRolloutPlanner()
    check = CheckRolloutPlanner(snapshot)
    plans = []
    original_plan = model.policy.planner.plan
    model.policy.planner.plan = lambda obs, *a, **k: plans.append(len(obs)) or original_plan(obs, *a, **k)

    model.learn(200, callback=CallbackList([snapshot, eval_callback, check]))

    assert len(eval_callback.evaluations_results) == 2  # at 100 and 200 steps
    assert eval_callback.evaluations_timesteps == [100, 200]
    assert all(len(lengths) == 1 and lengths[0] == 10 for lengths in eval_callback.evaluations_length)
    assert np.isfinite(eval_callback.best_mean_reward)
    assert (tmp_path / "evaluations.npz").exists()
    assert (tmp_path / "best_model.zip").exists()
    best = LOOP.load(tmp_path / "best_model.zip")
    assert best.num_timesteps in (100, 200)
    # Callbacks run before the step's refit: the evaluation at 100 steps acted with the actor (no
    # ensemble yet), the one at 200 planned with the predict planner, never the rollout planner.
    assert best.policy.dynamics.is_trained == (best.num_timesteps == 200)
    assert sum(plans) == 10
    assert check.checked > 0


def test_checkpoint_callback(tmp_path):
    model = make_model("Pendulum-v1")
    checkpoint = CheckpointCallback(save_freq=100, save_path=str(tmp_path), name_prefix="loop", save_replay_buffer=True)
    model.learn(200, callback=checkpoint)
    for steps in (100, 200):
        path = tmp_path / f"loop_{steps}_steps.zip"
        assert path.exists()
        assert (tmp_path / f"loop_replay_buffer_{steps}_steps.pkl").exists()
        loaded = LOOP.load(path)
        assert loaded.num_timesteps == steps
    assert int(LOOP.load(tmp_path / "loop_200_steps.zip").policy.dynamics.num_trainings) == 1
    # Checkpoints are taken in the callback, before the step's refit: at 200 steps the model is the
    # one fitted at 100 (the second fit at 200 happens right after the callback).
    final = LOOP.load(tmp_path / "loop_200_steps.zip")
    final.load_replay_buffer(tmp_path / "loop_replay_buffer_200_steps.pkl")
    assert final.replay_buffer.size() == 199


def test_logged_keys():
    model = make_model()
    logger, writer = recording_logger()
    model.set_logger(logger)
    model.learn(200, log_interval=1)
    assert LOGGED_KEYS <= writer.keys()
    assert all(ms > 0 for ms in writer.values("planner/ms_per_action"))
    assert all(fallbacks == 0 for fallbacks in writer.values("planner/fallbacks"))
    assert all(1 <= epochs <= 5 for epochs in writer.values("dynamics/epochs"))
    assert all(mse >= 0 and np.isfinite(mse) for mse in writer.values("dynamics/holdout_mse"))


def test_csv_logger(tmp_path):
    model = make_model()
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(200, log_interval=1)
    with open(tmp_path / "progress.csv") as file:
        rows = list(csv.DictReader(file))
    assert rows and LOGGED_KEYS <= set(rows[0])
    assert any(row["planner/ms_per_action"] for row in rows)


def test_tensorboard(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    model = make_model(tensorboard_log=str(tmp_path))
    model.learn(200, log_interval=1, tb_log_name="tiny")
    run_dirs = list(tmp_path.glob("tiny_*"))
    assert len(run_dirs) == 1
    assert list(run_dirs[0].glob("events.out.tfevents.*"))
    accumulator = event_accumulator.EventAccumulator(str(run_dirs[0]))
    accumulator.Reload()
    assert LOGGED_KEYS <= set(accumulator.Tags()["scalars"])


@pytest.mark.filterwarnings("ignore::tqdm.TqdmExperimentalWarning")
def test_progress_bar():
    pytest.importorskip("tqdm")
    pytest.importorskip("rich")
    model = make_model("Pendulum-v1")
    model.learn(150, progress_bar=True)
    assert model.num_timesteps == 150
    assert model.policy.dynamics.is_trained


def test_dynamics_log_and_fresh_mse():
    """Every refit is logged; from the second on, with the error on the transitions it had not seen."""
    model = make_model()
    logger, writer = recording_logger()
    model.set_logger(logger)
    model.learn(350, log_interval=1)
    log = model.dynamics_log
    assert [entry["num_timesteps"] for entry in log] == [100, 200, 300]
    assert log[0]["fresh_mse"] is None
    assert all(np.isfinite(entry["fresh_mse"]) and entry["fresh_mse"] > 0 for entry in log[1:])
    assert all(0 <= entry["kept_previous"] <= 3 for entry in log)
    assert writer.values("dynamics/fresh_mse") and writer.values("dynamics/kept_previous")
    # The transitions since the last refit are the fresh ones: 50 of them, the newest in the buffer.
    fresh = model._fresh_rows()
    assert fresh.sum() == 50 and fresh[-50:].all()
