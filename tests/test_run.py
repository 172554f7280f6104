"""LOOP.learn end to end on real environments with tiny budgets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from loop_helpers import recording_logger, tiny_kwargs
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv

from sb3_loop import LOOP
from sb3_loop.dynamics.termination import (
    hopper_termination,
    inverted_pendulum_termination,
    never_terminates,
)

torch.set_num_threads(1)

TOTAL_STEPS = 250
LEARNING_STARTS = 100
TRAIN_FREQ = 100


def record_plans(planner) -> list[np.ndarray]:
    """Wrap ``planner.plan`` so that every planned batch of actions is kept."""
    plans: list[np.ndarray] = []
    original = planner.plan

    def plan(obs, *args, **kwargs):
        action = original(obs, *args, **kwargs)
        plans.append(action.detach().cpu().numpy().copy())
        return action

    planner.plan = plan
    return plans


class DonesRecorder(BaseCallback):
    def __init__(self) -> None:
        super().__init__()
        self.dones: list[np.ndarray] = []

    def _on_step(self) -> bool:
        self.dones.append(np.array(self.locals["dones"], dtype=bool))
        return True


@pytest.mark.parametrize("n_envs", [1, 2])
@pytest.mark.parametrize("propagation", ["paper", "random_elite"])
@pytest.mark.parametrize("env_id", ["Pendulum-v1", "InvertedPendulum-v5", "Hopper-v5"])
def test_learn(env_id, propagation, n_envs):
    env = make_vec_env(env_id, n_envs=n_envs, seed=0)
    model = LOOP("MlpPolicy", env, propagation=propagation, seed=0, **tiny_kwargs())
    logger, writer = recording_logger()
    model.set_logger(logger)
    plans = record_plans(model.policy.rollout_planner)

    model.learn(TOTAL_STEPS, log_interval=1)
    model.dump_logs()

    assert model.num_timesteps == TOTAL_STEPS
    dynamics = model.policy.dynamics
    assert dynamics.is_trained
    # Fitted once at learning_starts, then every dynamics_train_freq steps.
    assert int(dynamics.num_trainings) == 1 + (TOTAL_STEPS - LEARNING_STARTS) // TRAIN_FREQ
    assert torch.isfinite(dynamics.holdout_mse).all()
    # Every step after learning_starts was planned by the rollout planner, for every env at once.
    assert all(plan.shape == (n_envs, env.action_space.shape[0]) for plan in plans)
    assert sum(len(plan) for plan in plans) == TOTAL_STEPS - LEARNING_STARTS
    # ... and the replay buffer holds exactly those (squashed) actions.
    buffer = model.replay_buffer
    first_planned = LEARNING_STARTS // n_envs
    np.testing.assert_array_equal(buffer.actions[first_planned : buffer.pos], np.stack(plans))
    assert np.abs(buffer.actions[: buffer.pos]).max() <= 1.0
    assert model.policy.num_fallbacks == 0
    ms_per_action = writer.values("planner/ms_per_action")
    assert len(ms_per_action) > 0 and all(ms > 0 for ms in ms_per_action)


@pytest.mark.parametrize("n_envs", [1, 2])
def test_warm_start_reset_on_episode_end(n_envs):
    """The rollout planner forgets the warm start of exactly the envs whose episode ended."""
    env = make_vec_env("InvertedPendulum-v5", n_envs=n_envs, seed=0)
    model = LOOP("MlpPolicy", env, seed=0, **tiny_kwargs(learning_starts=50, dynamics_train_freq=200))
    planner = model.policy.rollout_planner
    masks: list[np.ndarray] = []
    original_reset = planner.reset

    def reset(env_mask=None):
        before = None if planner._mean is None else planner._mean.clone()
        original_reset(env_mask)
        if env_mask is None:
            return
        mask = np.array(env_mask, dtype=bool)
        masks.append(mask)
        if before is not None:
            after = planner._mean
            assert torch.equal(after[~torch.as_tensor(mask)], before[~torch.as_tensor(mask)])
            assert torch.all(after[torch.as_tensor(mask)] == 0.0)  # centre of the squashed bounds

    planner.reset = reset
    recorder = DonesRecorder()
    model.learn(250, callback=recorder)

    episode_ends = [dones for dones in recorder.dones if dones.any()]
    assert len(episode_ends) > 2
    assert len(masks) == len(episode_ends)
    for mask, dones in zip(masks, episode_ends):
        np.testing.assert_array_equal(mask, dones)


@pytest.mark.parametrize(
    "env_id, expected",
    [
        ("Hopper-v5", hopper_termination),
        ("InvertedPendulum-v5", inverted_pendulum_termination),
        ("Pendulum-v1", never_terminates),
    ],
)
def test_termination_fn_from_env_id(env_id, expected):
    model = LOOP("MlpPolicy", env_id, **tiny_kwargs())
    assert model.termination_fn == env_id
    assert model.policy.rollout_planner.termination_fn is expected
    assert model.policy.planner.termination_fn is expected


def test_custom_termination_fn():
    def always_done(next_obs: torch.Tensor) -> torch.Tensor:
        return torch.ones(next_obs.shape[:-1], dtype=torch.bool)

    model = LOOP("MlpPolicy", "Hopper-v5", termination_fn=always_done, **tiny_kwargs())
    assert model.policy.rollout_planner.termination_fn is always_done


def test_learn_subproc_vec_env():
    env = make_vec_env("Hopper-v5", n_envs=2, seed=0, vec_env_cls=SubprocVecEnv, vec_env_kwargs=dict(start_method="fork"))
    try:
        model = LOOP("MlpPolicy", env, seed=0, **tiny_kwargs())
        assert model.policy.rollout_planner.termination_fn is hopper_termination
        plans = record_plans(model.policy.rollout_planner)
        model.learn(200)
        assert model.num_timesteps == 200
        assert int(model.policy.dynamics.num_trainings) == 2
        assert sum(len(plan) for plan in plans) == 200 - LEARNING_STARTS
    finally:
        env.close()


def test_learn_continues_without_reset():
    model = LOOP("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs())
    model.learn(150)
    assert int(model.policy.dynamics.num_trainings) == 1
    model.learn(100, reset_num_timesteps=False)
    assert model.num_timesteps == 250
    # The refit schedule carries over (fit at 100, then at 200), it does not restart at 150.
    assert int(model.policy.dynamics.num_trainings) == 2
    assert model._last_dynamics_train == 200
