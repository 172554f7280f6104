"""LOOP.predict: shapes, action bounds, repeatability, actor-only mode and the untrained fallback."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from loop_helpers import tiny_kwargs
from stable_baselines3.common.callbacks import BaseCallback
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


def deterministic_action(model: LOOP, obs: np.ndarray, global_seed: int = 0) -> np.ndarray:
    """A deterministic action right after an episode start, with the global torch RNG in some state."""
    torch.manual_seed(global_seed)
    episode_start = np.ones(1 if obs.ndim == 1 else len(obs), dtype=bool)
    return model.predict(obs, episode_start=episode_start, deterministic=True)[0]


def test_deterministic_predict_repeatable(hopper_model):
    """deterministic=True: the same observation after an episode start gives the same action on every call."""
    obs = np.stack([hopper_model.observation_space.sample() for _ in range(2)])
    first = deterministic_action(hopper_model, obs)
    hopper_model.predict(obs, deterministic=False)  # stochastic calls in between change nothing
    for global_seed in (0, 1, 2):
        np.testing.assert_array_equal(deterministic_action(hopper_model, obs, global_seed), first)


def test_deterministic_predict_depends_on_planning_seed(hopper_model, monkeypatch):
    """The planner is still random: its fixed seed is what makes the action repeatable."""
    obs = np.stack([hopper_model.observation_space.sample() for _ in range(2)])
    first = deterministic_action(hopper_model, obs)
    monkeypatch.setattr(hopper_model.policy, "planning_seed", hopper_model.policy.planning_seed + 1)
    assert not np.array_equal(deterministic_action(hopper_model, obs), first)


def test_deterministic_predict_batch_equals_single(hopper_model):
    """An env's deterministic action does not depend on the rest of the batch."""
    obs = np.stack([hopper_model.observation_space.sample() for _ in range(3)])
    batched = deterministic_action(hopper_model, obs)
    singles = np.stack([deterministic_action(hopper_model, row) for row in obs])
    np.testing.assert_allclose(batched, singles, rtol=1e-5, atol=1e-6)
    assert not np.allclose(batched[0], batched[1])  # different observations, different actions


def test_stochastic_predict_draws_fresh_randomness(hopper_model):
    obs = hopper_model.observation_space.sample()
    actions = [hopper_model.predict(obs, episode_start=np.ones(1, dtype=bool))[0] for _ in range(2)]
    assert not np.array_equal(actions[0], actions[1])


def run_episode(model: LOOP, seed: int, steps: int = 15) -> np.ndarray:
    """Deterministic actions of one Pendulum episode from ``env.reset(seed=seed)``."""
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=seed)
    actions = []
    for step in range(steps):
        action, _ = model.predict(obs, episode_start=np.array([step == 0]), deterministic=True)
        actions.append(action)
        obs, *_ = env.step(action)
    return np.stack(actions)


def test_same_history_same_actions(pendulum_model):
    """The warm start carries over between steps, and the same history gives the same actions."""
    np.testing.assert_array_equal(run_episode(pendulum_model, seed=3), run_episode(pendulum_model, seed=3))
    assert not np.array_equal(run_episode(pendulum_model, seed=3), run_episode(pendulum_model, seed=4))


def test_evaluate_policy_reproducible(pendulum_model):
    """evaluate_policy twice on the same env seeds gives identical returns (two envs: batched planning)."""

    def returns() -> list[float]:
        env = make_vec_env("Pendulum-v1", n_envs=2, seed=5, env_kwargs=dict(max_episode_steps=20))
        rewards, _ = evaluate_policy(pendulum_model, env, n_eval_episodes=4, return_episode_rewards=True)
        return rewards

    first = returns()
    assert len(first) == 4 and len(set(first)) == 4
    assert returns() == first


def test_training_reproducible_with_seed():
    """Stochastic training rollouts draw from the policy's generator: the same seed gives the same run."""

    def planned_actions(seed: int) -> np.ndarray:
        env = make_vec_env("Pendulum-v1", n_envs=1, seed=0)
        model = LOOP("MlpPolicy", env, seed=seed, **tiny_kwargs(learning_starts=50, dynamics_train_freq=50))
        model.learn(120)
        return model.replay_buffer.actions[50:120].copy()

    first = planned_actions(seed=0)
    np.testing.assert_array_equal(planned_actions(seed=0), first)
    assert not np.array_equal(planned_actions(seed=1)[:5], first[:5])


def test_evaluation_does_not_disturb_training():
    """Deterministic predict calls during training (an EvalCallback) leave the training rollouts unchanged."""

    class PredictEachStep(BaseCallback):
        def _on_step(self) -> bool:
            self.model.predict(self.model._last_obs, deterministic=True)
            return True

    def planned_actions(callback: BaseCallback | None) -> np.ndarray:
        env = make_vec_env("Pendulum-v1", n_envs=1, seed=0)
        model = LOOP("MlpPolicy", env, seed=0, **tiny_kwargs(learning_starts=50, dynamics_train_freq=50))
        model.learn(90, callback=callback)
        return model.replay_buffer.actions[:90].copy()

    np.testing.assert_array_equal(planned_actions(PredictEachStep()), planned_actions(None))


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
