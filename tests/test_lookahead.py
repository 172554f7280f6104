"""
``sb3_loop.lookahead``: planning around trained SAC, TD3, TQC (and TD3+BC) models with an ensemble
fitted on their replay buffer or on a dataset; predict, save/load, evaluate_policy, rl-zoo3's enjoy and
the errors for models or data it cannot use.
"""

from __future__ import annotations

import sys

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from sb3_contrib import TQC
from stable_baselines3 import DQN, PPO, SAC, TD3
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from test_offline_priors import rollout_dataset

from sb3_loop import TD3BC, LookaheadPolicy, lookahead, zoo
from sb3_loop.common.policies import terminal_value
from sb3_loop.datasets import OfflineDataset, write_d4rl_hdf5
from sb3_loop.planning import MeanReturn, PessimisticReturn

th.set_num_threads(1)

ENV_ID = "Pendulum-v1"
TINY = dict(ensemble_size=3, num_elites=2, dynamics_hidden_sizes=(32, 32), dynamics_max_epochs=30, population_size=32)
OBS = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, -2.0], [-0.6, 0.8, 4.0]], dtype=np.float32)
STARTS = np.ones(len(OBS), dtype=bool)


@pytest.fixture(scope="module")
def models():
    """SAC, TD3 and TQC trained for 300 steps (tiny networks), with their replay buffers."""
    trained = {}
    for cls in (SAC, TD3, TQC):
        model = cls("MlpPolicy", ENV_ID, learning_starts=100, policy_kwargs=dict(net_arch=[32, 32]), seed=0)
        trained[cls.__name__] = model.learn(300)
    return trained


@pytest.fixture(scope="module")
def dataset():
    env = gym.make(ENV_ID, max_episode_steps=100)
    return rollout_dataset(env, lambda obs, rng: rng.uniform(-2, 2, 1).astype(np.float32), episodes=4, seed=1)


def plan(policy, obs: np.ndarray = OBS) -> np.ndarray:
    return policy.predict(obs, episode_start=np.ones(len(obs), dtype=bool), deterministic=True)[0]


@pytest.mark.parametrize("name", ["SAC", "TD3", "TQC"])
def test_wraps_a_model_with_its_replay_buffer(name, models):
    model = models[name]
    policy = lookahead(model, model.replay_buffer, seed=0, **TINY)
    assert isinstance(policy, LookaheadPolicy) and policy.dynamics.is_trained
    assert policy.fit_stats is not None and policy.fit_stats.num_samples == 300
    assert policy.planner.config.proposal == "gaussian" and policy.planner.config.horizon == 3  # LOOP's
    assert isinstance(policy.planner.scorer, MeanReturn) and policy.termination_fn == ENV_ID
    actions = plan(policy)
    assert actions.shape == (3, 1) and np.all(np.abs(actions) <= 2.0)
    single, _ = policy.predict(OBS[0], deterministic=True)
    assert single.shape == (1,)
    np.testing.assert_array_equal(plan(policy), actions)  # reproducible with deterministic=True
    expected, _ = model.predict(OBS, deterministic=True)
    with policy.actor_only():
        np.testing.assert_allclose(policy.predict(OBS, deterministic=True)[0], expected, atol=1e-5)
    assert not np.allclose(actions, expected, atol=1e-3)  # the planner does act otherwise


def test_verbose_prints_the_fit_s_progress(models, capsys):
    lookahead(models["SAC"], models["SAC"].replay_buffer, seed=0, verbose=1, **{**TINY, "dynamics_max_epochs": 2})
    out = capsys.readouterr().out
    assert "dynamics fit on 300 transitions: epoch 2," in out and "lookahead: ensemble fitted on 300" in out


def test_the_planner_scores_with_the_model_s_critic(models):
    """TQC: the mean of all critics' quantiles; SAC and TD3: the first twin critic."""
    obs, action = th.as_tensor(OBS), th.tensor([[0.1], [-0.5], [0.9]])
    tqc = models["TQC"].policy
    with th.no_grad():
        quantiles = tqc.critic(obs, action)
        assert quantiles.dim() == 3
        th.testing.assert_close(terminal_value(tqc, obs, action), quantiles.mean(dim=(1, 2))[:, None])
        sac = models["SAC"].policy
        th.testing.assert_close(terminal_value(sac, obs, action), sac.critic(obs, action)[0])


def test_wraps_a_model_with_a_dataset_and_the_offline_planner(models, dataset, tmp_path):
    model = models["TD3"]
    policy = lookahead(model, dataset, planner="offline", seed=0, **TINY)
    assert policy.planner.config.proposal == "prior" and policy.planner.config.horizon == 5  # OfflineLOOP's
    assert isinstance(policy.planner.scorer, PessimisticReturn) and policy.planner.scorer.beta == 1.0
    assert policy.fit_stats.num_samples == len(dataset)
    assert np.all(np.abs(plan(policy)) <= 2.0)
    write_d4rl_hdf5(dataset, tmp_path / "pendulum.hdf5")
    from_file = lookahead(model, tmp_path / "pendulum.hdf5", planner="offline", seed=0, **TINY)
    assert from_file.fit_stats.num_samples == len(dataset)
    np.testing.assert_allclose(plan(from_file), plan(policy), atol=0.01)  # the file holds the data in float32
    pessimistic = lookahead(model, dataset, beta_pessimism=2.0, horizon=4, seed=0, **TINY)
    assert pessimistic.planner.scorer.beta == 2.0 and pessimistic.planner.config.horizon == 4


@pytest.mark.parametrize("name", ["SAC", "TQC"])
def test_save_load_and_evaluate_policy(name, models, tmp_path):
    policy = lookahead(models[name], models[name].replay_buffer, seed=3, **TINY)
    before = plan(policy)
    policy.save(tmp_path / "lookahead.zip")
    loaded = LookaheadPolicy.load(tmp_path / "lookahead.zip")
    assert loaded.dynamics.is_trained and loaded.planning_seed == 3
    np.testing.assert_array_equal(plan(loaded), before)
    env = Monitor(gym.make(ENV_ID, max_episode_steps=30))
    rewards, lengths = evaluate_policy(loaded, env, n_eval_episodes=2, return_episode_rewards=True)
    assert lengths == [30, 30] and all(np.isfinite(rewards))


def test_wraps_an_offline_prior_with_normalised_observations(dataset, tmp_path):
    prior = TD3BC("MlpPolicy", gym.make(ENV_ID), dataset, seed=0, policy_kwargs=dict(net_arch=[16]), batch_size=32)
    prior.learn(30)
    policy = lookahead(prior, dataset, planner="offline", seed=0, **TINY)
    with policy.actor_only():
        np.testing.assert_allclose(
            policy.predict(OBS, deterministic=True)[0], prior.predict(OBS, deterministic=True)[0], atol=1e-5
        )
    policy.save(tmp_path / "td3bc_lookahead")
    np.testing.assert_array_equal(plan(LookaheadPolicy.load(tmp_path / "td3bc_lookahead")), plan(policy))


def test_zoo_enjoys_a_saved_lookahead_and_train_refuses_it(models, tmp_path, monkeypatch):
    policy = lookahead(models["SAC"], models["SAC"].replay_buffer, seed=0, **TINY)
    run = tmp_path / "logs" / "lookahead" / f"{ENV_ID}_1"
    run.mkdir(parents=True)
    policy.save(run / f"{ENV_ID}.zip")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    from rl_zoo3.utils import ALGOS

    try:
        zoo.main(["enjoy", "--algo", "lookahead", "--env", ENV_ID, "-f", "logs", "--no-render", "-n", "20"])
        assert ALGOS["lookahead"] is LookaheadPolicy
        zoo.register_algorithms()
        assert "lookahead" not in ALGOS
        with pytest.raises(SystemExit):
            zoo.main(["train", "--algo", "lookahead", "--env", ENV_ID, "-n", "10"])
    finally:
        zoo.register_algorithms()


# ------------------------------------------------------------------------------------ errors
def test_a_model_without_a_q_critic_is_refused(models):
    with pytest.raises(ValueError, match=r"the PPO model's policy ActorCriticPolicy has none"):
        lookahead(PPO("MlpPolicy", ENV_ID), models["SAC"].replay_buffer)
    with pytest.raises(ValueError, match=r"the DQN model's action space is Discrete\(2\)"):
        lookahead(DQN("MlpPolicy", "CartPole-v1"), models["SAC"].replay_buffer)


def test_data_that_does_not_fit_the_model_is_refused(models):
    model = models["SAC"]
    wide = OfflineDataset(
        np.zeros((10, 2)), np.zeros((10, 1)), np.zeros(10), np.zeros((10, 2)), np.zeros(10), np.zeros(10), source="wide.hdf5"
    )
    with pytest.raises(
        ValueError, match=r"wide\.hdf5: key 'observations' has rows of shape \(2,\), the SAC model observes \(3,\)"
    ):
        lookahead(model, wide)
    car = gym.make("MountainCarContinuous-v0")
    other = ReplayBuffer(10, car.observation_space, car.action_space)
    with pytest.raises(ValueError, match=r"replay buffer's observation space Box\(.*\(2,\).*SAC model's Box\(.*\(3,\)"):
        lookahead(model, other)
    wider_actions = ReplayBuffer(10, model.observation_space, gym.spaces.Box(-1.0, 1.0, (1,)))
    with pytest.raises(ValueError, match=r"replay buffer's action space Box\(-1\.0, 1\.0.*SAC model's Box\(-2\.0, 2\.0"):
        lookahead(model, wider_actions)
    empty = ReplayBuffer(10, model.observation_space, model.action_space)
    with pytest.raises(ValueError, match="holds 0 transitions"):
        lookahead(model, empty)
    with pytest.raises(ValueError, match="must be a replay buffer, an OfflineDataset"):
        lookahead(model, 42)


def test_bad_settings_are_refused(models):
    buffer = models["SAC"].replay_buffer
    with pytest.raises(ValueError, match=r"planner='mpc'"):
        lookahead(models["SAC"], buffer, planner="mpc")
    with pytest.raises(ValueError, match=r"\['noise_std'\] are not settings of the 'online' lookahead"):
        lookahead(models["SAC"], buffer, noise_std=0.1)
    with pytest.raises(ValueError, match=r"planning_iterations=0"):
        lookahead(models["SAC"], buffer, planning_iterations=0)
    with pytest.raises(ValueError, match=r"beta_pessimism=-1"):
        lookahead(models["SAC"], buffer, beta_pessimism=-1)
