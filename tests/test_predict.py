"""LOOP.predict: shapes, action bounds, repeatability, actor-only mode and the untrained fallback."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from loop_helpers import tiny_kwargs
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_loop import LOOP

torch.set_num_threads(1)


def train_briefly(env_id: str) -> LOOP:
    """Just past learning_starts: the ensemble is fitted once and the planner acts."""
    model = LOOP("MlpPolicy", make_vec_env(env_id, n_envs=1, seed=0), seed=0, **tiny_kwargs(learning_starts=60))
    model.learn(80)
    assert model.policy.dynamics.is_trained
    return model


@pytest.fixture(scope="module")
def hopper_model() -> LOOP:
    return train_briefly("Hopper-v5")


@pytest.fixture(scope="module")
def pendulum_model() -> LOOP:
    return train_briefly("Pendulum-v1")


def forbid_planning(model: LOOP, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("the planner must not be called")

    monkeypatch.setattr(model.policy.planner, "plan", fail)
    monkeypatch.setattr(model.policy.rollout_planner, "plan", fail)


def actor_action(model: LOOP, obs: np.ndarray) -> np.ndarray:
    """The deterministic SAC actor's action, unscaled to the env's bounds."""
    obs_tensor = torch.as_tensor(obs, dtype=torch.float32).reshape(-1, model.observation_space.shape[0])
    with torch.no_grad():
        scaled = model.policy.actor(obs_tensor, deterministic=True).numpy()
    return model.policy.unscale_action(scaled).reshape(-1, model.action_space.shape[0])


@pytest.mark.parametrize("deterministic", [True, False])
def test_predict_single_shape(hopper_model, deterministic):
    obs = hopper_model.observation_space.sample()
    assert obs.shape == (11,)
    action, state = hopper_model.predict(obs, deterministic=deterministic)
    assert action.shape == (3,)
    assert state is None
    assert hopper_model.action_space.contains(action.astype(np.float32))


@pytest.mark.parametrize("n", [1, 4])
@pytest.mark.parametrize("deterministic", [True, False])
def test_predict_batch_shape(hopper_model, n, deterministic):
    obs = np.stack([hopper_model.observation_space.sample() for _ in range(n)])
    action, _ = hopper_model.predict(obs, deterministic=deterministic)
    assert action.shape == (n, 3)
    assert np.all(np.isfinite(action))
    assert np.all(np.abs(action) <= 1.0)


def test_predict_float64_observations(hopper_model):
    obs = np.random.default_rng(0).normal(size=(2, 11))  # MuJoCo observations are float64
    action, _ = hopper_model.predict(obs, deterministic=True)
    assert action.shape == (2, 3)


def test_planned_actions_are_unscaled(pendulum_model, monkeypatch):
    """The planner works in [-1, 1]; predict maps its output to Pendulum's [-2, 2]."""
    planner = pendulum_model.policy.planner
    for squashed in (0.75, -1.0, 1.0, 0.0):

        def plan(obs, deterministic=False, generator=None, value=squashed):
            return torch.full((obs.shape[0], 1), value)

        monkeypatch.setattr(planner, "plan", plan)
        action, _ = pendulum_model.predict(np.zeros(3, dtype=np.float32), deterministic=True)
        np.testing.assert_allclose(action, [2.0 * squashed], rtol=1e-6)


def test_pendulum_actions_within_bounds(pendulum_model):
    pendulum_model.policy.planner.reset()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    actions = np.concatenate(
        [pendulum_model.predict(pendulum_model.observation_space.sample(), deterministic=False)[0] for _ in range(40)]
        + [pendulum_model.predict(rng.uniform(-1, 1, size=(8, 3)).astype(np.float32))[0].ravel()]
    )
    assert np.all(np.abs(actions) <= 2.0)
    assert np.any(np.abs(actions) > 1.0)  # really unscaled to the env's bounds, not left in [-1, 1]


@pytest.mark.parametrize("deterministic", [True, False])
def test_predict_repeatable(hopper_model, deterministic):
    obs = np.stack([hopper_model.observation_space.sample() for _ in range(2)])

    def act(seed: int) -> np.ndarray:
        hopper_model.policy.planner.reset()
        torch.manual_seed(seed)
        return hopper_model.predict(obs, deterministic=deterministic)[0]

    np.testing.assert_array_equal(act(0), act(0))
    assert not np.array_equal(act(0), act(1))  # planning is random: the seed matters


def test_actor_only(hopper_model, monkeypatch):
    forbid_planning(hopper_model, monkeypatch)
    obs = np.stack([hopper_model.observation_space.sample() for _ in range(3)])
    with hopper_model.actor_only() as model:
        assert model is hopper_model
        assert not hopper_model.policy.use_planner
        action, _ = hopper_model.predict(obs, deterministic=True)
    assert hopper_model.policy.use_planner
    np.testing.assert_allclose(action, actor_action(hopper_model, obs), rtol=1e-6, atol=1e-7)
    with pytest.raises(AssertionError, match="must not be called"):
        hopper_model.predict(obs, deterministic=True)


def test_actor_only_restored_after_error(hopper_model):
    with pytest.raises(RuntimeError), hopper_model.actor_only():
        raise RuntimeError
    assert hopper_model.policy.use_planner


def test_actor_only_learn(monkeypatch):
    """Inside actor_only, learning acts with the actor (the ensemble keeps being fitted)."""
    model = LOOP("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs(learning_starts=50, dynamics_train_freq=50))
    forbid_planning(model, monkeypatch)
    with model.actor_only():
        model.learn(120)
    assert model.num_timesteps == 120
    assert int(model.policy.dynamics.num_trainings) == 2


def test_untrained_predict_uses_actor(monkeypatch):
    model = LOOP("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs())
    assert not model.policy.dynamics.is_trained
    forbid_planning(model, monkeypatch)
    obs = np.stack([model.observation_space.sample() for _ in range(2)])
    action, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(action, actor_action(model, obs), rtol=1e-6, atol=1e-7)
    stochastic, _ = model.predict(obs, deterministic=False)
    assert stochastic.shape == (2, 1) and np.all(np.abs(stochastic) <= 2.0)


def test_predict_counts_planning_time(hopper_model):
    hopper_model.policy.pop_planning_time()
    assert hopper_model.policy.pop_planning_time() is None
    hopper_model.predict(np.stack([hopper_model.observation_space.sample() for _ in range(3)]))
    assert hopper_model.policy._plan_actions == 3
    assert hopper_model.policy.pop_planning_time() > 0
    assert hopper_model.policy.pop_planning_time() is None


def test_evaluate_policy_resets_planner(pendulum_model):
    """evaluate_policy passes episode_start: the planner's warm start is reset at each new episode."""
    planner = pendulum_model.policy.planner
    masks: list[np.ndarray] = []
    warm_starts: list[torch.Tensor | None] = []
    original_reset, original_plan = planner.reset, planner.plan

    def reset(env_mask=None):
        masks.append(np.array(env_mask, dtype=bool))
        original_reset(env_mask)

    def plan(obs, *args, **kwargs):
        warm_starts.append(None if planner._mean is None else planner._mean.clone())
        return original_plan(obs, *args, **kwargs)

    planner.reset, planner.plan = reset, plan
    try:
        env = Monitor(gym.make("Pendulum-v1", max_episode_steps=5))
        planner._mean = torch.full((1, planner.config.horizon, 1), 0.5)  # stale warm start from elsewhere
        _rewards, lengths = evaluate_policy(pendulum_model, env, n_eval_episodes=2, return_episode_rewards=True)
    finally:
        del planner.reset, planner.plan
    assert lengths == [5, 5]
    assert len(masks) == len(warm_starts) == 10
    np.testing.assert_array_equal(np.concatenate(masks), [True] + [False] * 4 + [True] + [False] * 4)
    for step, (mask, warm_start) in enumerate(zip(masks, warm_starts)):
        if mask[0]:
            assert torch.all(warm_start == 0.0), f"warm start not reset at step {step}"
        else:
            assert not torch.all(warm_start == 0.0), f"warm start lost at step {step}"
