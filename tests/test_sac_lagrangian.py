"""Costs in learning (``sb3_loop.safe``): the cost replay buffer, episode costs, ``CostWrapper`` and SAC-Lagrangian."""

from __future__ import annotations

import inspect
import itertools
import math
import pickle
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
import yaml
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_loop import zoo
from sb3_loop.resume import load_replay_buffer_rows, save_replay_buffer_rows
from sb3_loop.safe import (
    CostReplayBuffer,
    CostReplayBufferSamples,
    CostWrapper,
    MissingCostError,
    SACLagPolicy,
    SACLagrangian,
)

TINY = dict(policy_kwargs=dict(net_arch=[16]), batch_size=32)


# ------------------------------------------------------------------------------------- toy envs
class CounterEnv(gym.Env):
    """
    obs = [offset + t] (t = steps since reset), cost = ``COST_SCALE * next_obs`` (known from the state).
    Terminates after ``terminate_at`` steps when given (truncation comes from ``max_episode_steps``).
    """

    COST_SCALE = 0.01

    def __init__(self, offset: float = 0.0, terminate_at: int | None = None) -> None:
        self.observation_space = spaces.Box(-1e6, 1e6, (1,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.offset, self.terminate_at = offset, terminate_at
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.offset + self.t], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.t += 1
        obs = self._obs()
        terminated = self.terminate_at is not None and self.t >= self.terminate_at
        return obs, 0.0, terminated, False, {"cost": float(self.COST_SCALE * obs[0])}


def counter_env(offset: float = 0.0, terminate_at: int | None = None, max_episode_steps: int = 5) -> gym.Env:
    return gym.wrappers.TimeLimit(CounterEnv(offset, terminate_at), max_episode_steps=max_episode_steps)


class ConstantCostEnv(gym.Env):
    """Constant obs (or ``[t / horizon]`` with ``time_obs``), reward 0, cost ``cost`` on every step."""

    def __init__(self, cost: float = 1.0, horizon: int = 10, terminate: bool = False, time_obs: bool = False) -> None:
        self.observation_space = spaces.Box(-1.0, 2.0, (1,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.cost, self.horizon, self.terminate, self.time_obs = cost, horizon, terminate, time_obs
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.t / self.horizon if self.time_obs else 0.0], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.t += 1
        ended = self.t >= self.horizon
        return self._obs(), 0.0, ended and self.terminate, ended and not self.terminate, {"cost": self.cost}


class SquareCostBandit(gym.Env):
    """One action per step, reward ``a``, cost ``a**2``, ``horizon`` steps: under episode limit d the best is a = sqrt(d/T)."""

    def __init__(self, horizon: int = 10) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.horizon, self.t = horizon, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.t += 1
        a = float(np.clip(action[0], -1, 1))
        return np.zeros(1, np.float32), a, False, self.t >= self.horizon, {"cost": a * a}


def speed_cost(obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> float:
    """Pendulum: cost 1 when the angular velocity after the step exceeds 1 rad/s (used by name in a test)."""
    return float(abs(next_obs[2]) > 1.0)


class Recorder(KVWriter):
    """Keeps every logger dump."""

    def __init__(self) -> None:
        self.dumps: list[dict[str, Any]] = []

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        self.dumps.append(dict(key_values))

    def values(self, key: str) -> list[Any]:
        return [dump[key] for dump in self.dumps if key in dump]


def recording(model: SACLagrangian) -> Recorder:
    recorder = Recorder()
    model.set_logger(Logger(folder=None, output_formats=[recorder]))
    return recorder


# ------------------------------------------------------------------------------------- buffer
def test_buffer_stores_costs_aligned_with_transitions_over_two_envs_and_episode_ends():
    # env 0 is truncated after 5 steps (time limit), env 1 terminates after 3: both end episodes mid-buffer.
    vec_env = DummyVecEnv([lambda: counter_env(0.0), lambda: counter_env(1000.0, terminate_at=3)])
    model = SACLagrangian("MlpPolicy", vec_env, learning_starts=10_000, buffer_size=200, seed=0, **TINY)
    model.learn(60)  # warm-up only: 30 steps of 2 envs
    buffer = model.replay_buffer
    assert isinstance(buffer, CostReplayBuffer) and buffer.pos == 30 and buffer.costs.dtype == np.float32
    obs, next_obs = buffer.observations[:30, :, 0], buffer.next_observations[:30, :, 0]
    np.testing.assert_allclose(buffer.costs[:30], CounterEnv.COST_SCALE * next_obs, rtol=1e-6)
    # next_obs is the episode's last obs at its end (not the reset obs), so it always follows obs by one.
    np.testing.assert_array_equal(next_obs, obs + 1)
    np.testing.assert_array_equal(buffer.timeouts[:30, 0], (next_obs[:, 0] == 5).astype(np.float32))
    np.testing.assert_array_equal(buffer.dones[:30, 1], (next_obs[:, 1] == 1003).astype(np.float32))
    assert buffer.timeouts[:30, 1].sum() == 0 and buffer.dones[:30, 0].sum() == 6

    batch = buffer.sample(500)
    assert isinstance(batch, CostReplayBufferSamples) and batch.discounts is None
    assert batch.costs.shape == batch.rewards.shape == (500, 1)
    np.testing.assert_allclose(batch.costs, CounterEnv.COST_SCALE * batch.next_observations, rtol=1e-6)
    sampled_next = batch.next_observations[:, 0].numpy()
    assert {0.0, 1.0} <= set(batch.dones[:, 0].tolist())
    # Time-limit ends (next obs 5) bootstrap, terminations (next obs 1003) do not.
    assert (batch.dones[sampled_next == 5] == 0).all() and (batch.dones[sampled_next == 1003] == 1).all()
    assert (batch.dones[(sampled_next != 1003)] == 0).all()

    # Episode costs (tracked from the infos) match the buffer: env 0 sums t = 1..5, env 1 sums 1001..1003.
    assert sorted(set(model.ep_cost_buffer)) == pytest.approx([0.15, 30.06])
    assert len(model.ep_cost_buffer) == 6 + 10


def test_buffer_add_directly_and_error_cases():
    obs_space = spaces.Box(-10, 10, (3,), np.float32)
    act_space = spaces.Box(-1, 1, (2,), np.float32)
    buffer = CostReplayBuffer(10, obs_space, act_space, device="cpu", n_envs=2, env_id="MyEnv-v0")
    for step in range(4):
        obs = np.full((2, 3), step, np.float32) + np.array([[0], [100]], np.float32)
        infos = [{"cost": 0.5 * step}, {"cost": 0.5 * step + 10}]
        buffer.add(obs, obs + 1, np.zeros((2, 2)), np.zeros(2), np.zeros(2), infos)
    np.testing.assert_allclose(buffer.costs[:4], [[0.5 * s, 0.5 * s + 10] for s in range(4)])
    batch = buffer.sample(64)
    env_1 = batch.observations[:, 0] >= 100
    np.testing.assert_allclose(batch.costs[:, 0], 0.5 * (batch.observations[:, 0] - 100 * env_1) + 10 * env_1)

    with pytest.raises(MissingCostError, match=r"env 'MyEnv-v0' does not report .*cost.*CostWrapper") as error:
        buffer.add(obs, obs, np.zeros((2, 2)), np.zeros(2), np.zeros(2), [{"cost": 1.0}, {"x": 1}])
    assert isinstance(error.value, ValueError) and "SafetyPointGoal1-v0" in str(error.value)
    assert buffer.pos == 4  # nothing stored
    with pytest.raises(ValueError, match="must be finite"):
        buffer.add(obs, obs, np.zeros((2, 2)), np.zeros(2), np.zeros(2), [{"cost": 1.0}, {"cost": float("nan")}])
    with pytest.raises(ValueError, match="optimize_memory_usage"):
        CostReplayBuffer(10, obs_space, act_space, optimize_memory_usage=True, handle_timeout_termination=False)
    with pytest.raises(ValueError, match="optimize_memory_usage"):
        CostReplayBuffer(10, obs_space, act_space, optimize_memory_usage=True)


def test_buffer_samples_penalised_rewards_and_stores_raw_ones():
    obs_space = spaces.Box(-10, 10, (1,), np.float32)
    act_space = spaces.Box(-1, 1, (1,), np.float32)
    buffer = CostReplayBuffer(10, obs_space, act_space, device="cpu", reward_cost_penalty=2.0)
    for step in range(6):
        obs = np.full((1, 1), step, np.float32)
        buffer.add(obs, obs + 1, np.zeros((1, 1)), np.array([1.0]), np.zeros(1), [{"cost": float(step % 2)}])
    batch = buffer.sample(64)
    # reward 1 everywhere; odd steps cost 1 and are sampled as 1 - 2 * 1.
    odd = batch.observations[:, 0] % 2 == 1
    np.testing.assert_allclose(batch.rewards[:, 0], np.where(odd, -1.0, 1.0))
    assert odd.any() and (~odd).any()
    np.testing.assert_array_equal(buffer.rewards[:6, 0], 1.0)  # stored raw
    buffer.reward_cost_penalty = 0.0
    np.testing.assert_array_equal(buffer.sample(16).rewards, 1.0)
    for bad in (-1.0, float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError, match="reward_cost_penalty"):
            CostReplayBuffer(10, obs_space, act_space, reward_cost_penalty=bad)


def test_replay_buffer_save_and_load(tmp_path):
    model = SACLagrangian("MlpPolicy", counter_env(), learning_starts=10_000, buffer_size=100, seed=0, **TINY)
    model.learn(23)
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    save_replay_buffer_rows(model.replay_buffer, tmp_path / "rows.pkl")

    for load in ("whole", "rows"):
        other = SACLagrangian("MlpPolicy", counter_env(), learning_starts=10_000, buffer_size=100, seed=1, **TINY)
        if load == "whole":
            other.load_replay_buffer(tmp_path / "buffer.pkl")
        else:
            load_replay_buffer_rows(other, tmp_path / "rows.pkl")
        loaded = other.replay_buffer
        assert isinstance(loaded, CostReplayBuffer) and loaded.pos == 23 and loaded.costs.shape == (100, 1)
        np.testing.assert_array_equal(loaded.costs, model.replay_buffer.costs)
        assert loaded.costs[:23].sum() > 0
        batch = loaded.sample(16)
        np.testing.assert_allclose(batch.costs, CounterEnv.COST_SCALE * batch.next_observations, rtol=1e-6)
        # Learning goes on with the loaded buffer (the new costs land after the old ones).
        other.learn(5, reset_num_timesteps=False)
        assert other.replay_buffer.pos == 28
    with open(tmp_path / "buffer.pkl", "rb") as file:
        assert isinstance(pickle.load(file), CostReplayBuffer)


def test_env_without_cost_is_named_in_the_error():
    model = SACLagrangian("MlpPolicy", "Pendulum-v1", learning_starts=10, seed=0, **TINY)
    with pytest.raises(MissingCostError, match=r"env 'Pendulum-v1' does not report a per-step constraint cost") as error:
        model.learn(5)
    message = str(error.value)
    assert (
        "SafetyPointGoal1AR5-v0" in message and "SafetyHopperVelocity-v1" in message and "CostWrapper(env, cost_fn)" in message
    )
    assert model.replay_buffer.pos == 0  # raised before the transition was stored


class NoCostEnv(ConstantCostEnv):
    """An unregistered env whose infos have no cost."""

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, _ = super().step(action)
        return obs, reward, terminated, truncated, {"other": 1}


def test_unregistered_env_without_cost_is_named_by_its_class():
    model = SACLagrangian("MlpPolicy", NoCostEnv(), learning_starts=10, seed=0, **TINY)
    with pytest.raises(MissingCostError, match=r"env 'NoCostEnv' does not report .*\['other'"):
        model.learn(5)


# ---------------------------------------------------------------------------------- CostWrapper
def test_cost_wrapper_adds_the_cost_of_each_transition():
    calls = []

    def cost_fn(obs, action, next_obs):
        calls.append((obs.copy(), np.array(action).copy(), next_obs.copy()))
        return float(next_obs[0] - obs[0])

    env = CostWrapper(gym.make("Pendulum-v1"), cost_fn)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(1, np.float32))
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        action = env.action_space.sample()
        next_obs, _, _, _, info = env.step(action)
        prev, seen_action, seen_next = calls[-1]
        np.testing.assert_array_equal(prev, obs)
        np.testing.assert_array_equal(seen_action, action)
        np.testing.assert_array_equal(seen_next, next_obs)
        assert info["cost"] == pytest.approx(next_obs[0] - obs[0]) and isinstance(info["cost"], float)
        obs = next_obs

    # By import path (what an rl-zoo3 YAML env_wrapper entry can give).
    by_name = CostWrapper(gym.make("Pendulum-v1"), "test_sac_lagrangian:speed_cost")
    assert by_name.cost_fn is sys.modules["test_sac_lagrangian"].speed_cost
    by_name.reset(seed=0)
    costs = [by_name.step(np.array([2.0], np.float32))[4]["cost"] for _ in range(40)]
    assert set(costs) == {0.0, 1.0}
    for bad in ("no_colon", "math:pi", 3):
        with pytest.raises(ValueError, match="cost_fn"):
            CostWrapper(gym.make("Pendulum-v1"), bad)


# ------------------------------------------------------------------------------ SACLagrangian
def test_sac_lagrangian_learns_logs_saves_loads_and_predicts(tmp_path):
    env = CostWrapper(gym.make("Pendulum-v1", max_episode_steps=50), speed_cost)
    model = SACLagrangian("MlpPolicy", env, learning_starts=100, cost_limit=5.0, lagrangian_lr=0.05, seed=0, **TINY)
    assert isinstance(model.policy, SACLagPolicy) and model.effective_cost_gamma == model.gamma == 0.99
    recorder = recording(model)
    before = [p.detach().clone() for p in model.cost_critic.parameters()]
    model.learn(300, log_interval=1)

    for key in ("train/lagrange_multiplier", "train/cost_critic_loss", "train/cost_q", "rollout/ep_cost_mean"):
        assert recorder.values(key), key
    assert model.num_timesteps == 300 and model._n_updates == 200
    assert any(not th.equal(a, b) for a, b in zip(before, model.cost_critic.parameters()))
    # The logged episode cost is the buffer's: 6 episodes of 50 steps.
    episode_sums = model.replay_buffer.costs[:300, 0].reshape(6, 50).sum(axis=1)
    np.testing.assert_allclose(list(model.ep_cost_buffer), episode_sums)
    assert recorder.values("rollout/ep_cost_mean")[-1] == pytest.approx(episode_sums.mean())
    assert episode_sums.max() > 5.0 and model.lagrange_multiplier_value > 0  # over the limit: lambda rose

    model.save(tmp_path / "model.zip")
    loaded = SACLagrangian.load(tmp_path / "model.zip", env=env)
    assert loaded.cost_limit == 5.0 and loaded.lagrangian_lr == 0.05 and isinstance(loaded.replay_buffer, CostReplayBuffer)
    assert loaded.lagrange_multiplier_value == model.lagrange_multiplier_value
    for name in ("cost_critic", "cost_critic_target", "critic", "actor"):
        for a, b in zip(getattr(model, name).state_dict().values(), getattr(loaded, name).state_dict().values()):
            assert th.equal(a, b), name
    for name in ("lagrange_optimizer", "cost_critic.optimizer"):
        original = model.lagrange_optimizer if name == "lagrange_optimizer" else model.cost_critic.optimizer
        restored = loaded.lagrange_optimizer if name == "lagrange_optimizer" else loaded.cost_critic.optimizer
        assert original.state_dict()["state"][0]["step"] == restored.state_dict()["state"][0]["step"] > 0, name
    # The loaded multiplier is the one its optimiser steps.
    assert loaded.lagrange_optimizer.param_groups[0]["params"][0] is loaded.lagrange_multiplier
    observations = np.random.default_rng(0).uniform(-1, 1, (5, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        model.predict(observations, deterministic=True)[0], loaded.predict(observations, deterministic=True)[0]
    )
    loaded.learn(50, reset_num_timesteps=False)
    assert loaded.num_timesteps == 350


def test_two_envs_train_and_update_the_multiplier_with_their_episodes():
    vec_env = DummyVecEnv([lambda: ConstantCostEnv(cost=1.0, horizon=10), lambda: ConstantCostEnv(cost=0.5, horizon=5)])
    model = SACLagrangian("MlpPolicy", vec_env, learning_starts=20, cost_limit=1.0, lagrangian_lr=0.05, seed=0, **TINY)
    recorder = recording(model)
    model.learn(100, log_interval=1)  # 50 steps of each env: 5 episodes of cost 10, 10 of cost 2.5
    assert sorted(model.ep_cost_buffer) == [2.5] * 10 + [10.0] * 5
    assert model._n_updates == 40 and model.replay_buffer.costs[:50].tolist() == [[1.0, 0.5]] * 50
    assert recorder.values("rollout/ep_cost_mean")[-1] == pytest.approx((10 * 2.5 + 5 * 10) / 15)
    assert model.lagrange_multiplier_value > 0.2  # every update saw episodes over the limit of 1


def test_multiplier_rises_above_the_limit_falls_to_zero_below_it_and_holds_at_it():
    def run(cost: float, cost_limit: float, init: float) -> list[float]:
        env = ConstantCostEnv(cost=cost, horizon=10)
        model = SACLagrangian(
            "MlpPolicy", env, learning_starts=20, train_freq=10, cost_limit=cost_limit, lagrangian_lr=0.05,
            lagrangian_init=init, seed=0, **TINY,
        )  # fmt: skip
        recorder = recording(model)
        model.learn(300, log_interval=1)
        assert recorder.values("train/lagrange_ep_cost")[-1] == pytest.approx(10 * cost)
        return [init, *recorder.values("train/lagrange_multiplier")]

    rising = run(cost=1.0, cost_limit=2.0, init=0.0)  # episode cost 10 > 2
    assert all(b > a for a, b in itertools.pairwise(rising)) and rising[-1] > 1.0
    falling = run(cost=0.0, cost_limit=2.0, init=0.6)  # episode cost 0 < 2
    assert all(b <= a for a, b in itertools.pairwise(falling)) and falling[5] < 0.6 and falling[-1] == 0.0
    holding = run(cost=1.0, cost_limit=10.0, init=0.3)  # exactly at the limit: no gradient
    assert holding == pytest.approx([0.3] * len(holding))


@pytest.mark.parametrize("ending", ["terminated", "time_limit"])
def test_cost_critic_learns_the_discounted_cost(ending):
    gamma, horizon = 0.9, 10
    if ending == "terminated":  # obs = t / T; Q_c(t) = (1 - gamma^(T - t)) / (1 - gamma): the cost left to the end
        env = ConstantCostEnv(horizon=horizon, terminate=True, time_obs=True)
        times = np.arange(horizon)
        expected = (1 - gamma ** (horizon - times)) / (1 - gamma)
    else:  # constant obs, time-limit ends bootstrap: Q_c = 1 / (1 - gamma) everywhere
        env = ConstantCostEnv(horizon=horizon, terminate=False)
        times = np.zeros(1)
        expected = np.full(1, 1 / (1 - gamma))
    model = SACLagrangian(
        "MlpPolicy", env, learning_starts=100, gamma=0.99, cost_gamma=gamma, tau=0.1, learning_rate=1e-2,
        gradient_steps=2, policy_kwargs=dict(net_arch=[32, 32]), batch_size=64, seed=0,
    )  # fmt: skip
    assert model.effective_cost_gamma == gamma
    model.learn(500)
    obs = th.tensor((times / horizon if ending == "terminated" else times)[:, None], dtype=th.float32)
    for action in (-0.9, 0.0, 0.9):
        with th.no_grad():
            q_values = th.cat(model.cost_critic(obs, th.full((len(obs), 1), action)), dim=1).numpy()
        np.testing.assert_allclose(q_values, np.repeat(expected[:, None], 2, axis=1), rtol=0.2)


def test_constraint_changes_the_learned_policy():
    """
    Bandit: reward a, cost a^2 per step, 10 steps; limit 2.5 per episode. Lagrangian a - lambda * a^2 is
    maximised at a = 1 / (2 lambda): the constrained optimum a = 0.5 has lambda = 1. SAC alone goes to a ~ 1.
    """
    common = dict(learning_starts=100, learning_rate=3e-3, gamma=0.5, seed=0, **TINY)
    constrained = SACLagrangian("MlpPolicy", SquareCostBandit(), cost_limit=2.5, lagrangian_lr=0.1, **common)
    constrained.learn(1000)
    unconstrained = SAC("MlpPolicy", SquareCostBandit(), **common).learn(1000)
    zero = np.zeros((1, 1), np.float32)
    safe_action = float(constrained.predict(zero, deterministic=True)[0][0, 0])
    free_action = float(unconstrained.predict(zero, deterministic=True)[0][0, 0])
    assert free_action > 0.8, free_action
    assert 0.35 < safe_action < 0.65, safe_action
    assert 0.6 < constrained.lagrange_multiplier_value < 1.5, constrained.lagrange_multiplier_value
    recent_cost = np.mean(list(constrained.ep_cost_buffer)[-20:])  # the unconstrained policy's is ~8
    assert 1.5 < recent_cost < 3.5, recent_cost


# ------------------------------------------------------------------------------ arguments
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(cost_limit=-1.0), r"cost_limit=-1.0 must be a finite number >= 0.0"),
        (dict(cost_limit=float("nan")), r"cost_limit=nan must be a finite number"),
        (dict(cost_limit="25"), r"cost_limit='25' must be a finite number"),
        (dict(lagrangian_lr=0.0), r"lagrangian_lr=0.0 must be a finite number > 0.0"),
        (dict(lagrangian_lr=-0.1), r"lagrangian_lr=-0.1 must be a finite number > 0.0"),
        (dict(lagrangian_init=-0.5), r"lagrangian_init=-0.5 must be a finite number >= 0.0"),
        (dict(cost_gamma=1.5), r"cost_gamma=1.5 must be a finite number in \[0.0, 1.0\]"),
        (dict(cost_gamma=True), r"cost_gamma=True must be a finite number"),
        (dict(n_steps=3), r"n_steps=3"),
        (dict(optimize_memory_usage=True), r"optimize_memory_usage"),
        (dict(replay_buffer_class=ReplayBuffer), r"replay_buffer_class=.*ReplayBuffer.*CostReplayBuffer"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SACLagrangian("MlpPolicy", ConstantCostEnv(), **kwargs)


def test_a_cost_replay_buffer_subclass_is_accepted():
    class MyBuffer(CostReplayBuffer):
        pass

    model = SACLagrangian("MlpPolicy", ConstantCostEnv(), replay_buffer_class=MyBuffer, learning_starts=5, **TINY)
    model.learn(10)
    assert type(model.replay_buffer) is MyBuffer and model.replay_buffer.costs[:10].sum() == 10


# ------------------------------------------------------------------------------------- zoo
def test_zoo_trains_sac_lag_on_point_goal_then_enjoys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    try:
        zoo.main([
            "train", "--algo", "sac_lag", "--env", "SafetyPointGoal1AR5-v0", "-n", "300", "--seed", "0",
            "--eval-freq", "-1", "--num-threads", "1", "-f", "logs",
            "-params", "learning_starts:200", "policy_kwargs:dict(net_arch=[16])", "batch_size:32",
        ])  # fmt: skip
        run = tmp_path / "logs" / "sac_lag" / "SafetyPointGoal1AR5-v0_1"
        config = dict(yaml.unsafe_load((run / "SafetyPointGoal1AR5-v0" / "config.yml").read_text()))
        assert config["cost_limit"] == 25.0 and config["learning_starts"] == 200
        model = SACLagrangian.load(run / "SafetyPointGoal1AR5-v0.zip")
        assert model.num_timesteps == 300 and model.cost_limit == 25.0 and model._n_updates == 100
        assert model.batch_size == 32
        zoo.main(["enjoy", "--algo", "sac_lag", "--env", "SafetyPointGoal1AR5-v0", "-f", "logs", "--no-render", "-n", "20"])
    finally:
        zoo.register_algorithms()


def test_packaged_sac_lag_hyperparameters():
    repo = Path(__file__).resolve().parents[1]
    packaged = repo / "sb3_loop" / "hyperparams" / "sac_lag.yml"
    assert packaged.read_bytes() == (repo / "hyperparams" / "sac_lag.yml").read_bytes()
    entries = yaml.safe_load(packaged.read_text())
    assert {"SafetyPointGoal1AR5-v0", "SafetyPointGoal1-v0", "SafetyHalfCheetahVelocity-v1", "SafetyHopperVelocity-v1"} <= set(
        entries
    )
    arguments = set(inspect.signature(SACLagrangian.__init__).parameters)
    for env_id, entry in entries.items():
        assert entry["policy"] == "MlpPolicy" and entry["n_timesteps"] > 0 and entry["cost_limit"] == 25, env_id
        assert set(entry) - {"n_timesteps"} <= arguments, env_id
        assert env_id in gym.registry, env_id
    zoo.register_algorithms(["sac_lag"])
    from rl_zoo3.utils import ALGOS

    assert ALGOS["sac_lag"] is SACLagrangian
    assert math.isclose(SACLagrangian("MlpPolicy", ConstantCostEnv()).cost_limit, 25.0)
