"""Saving and loading LOOP: the ensemble, its optimiser, the planner settings and the replay buffer."""

from __future__ import annotations

import dataclasses
import json
import zipfile

import numpy as np
import pytest
import torch
from loop_helpers import tiny_kwargs
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env

from sb3_loop import LOOP

torch.set_num_threads(1)

ENV_ID = "Pendulum-v1"
PLANNING_KWARGS = dict(horizon=4, population_size=12, num_particles=3, planning_iterations=3, kappa=0.5, mixture_coef=0.25)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A model trained for 250 steps (ensemble fitted twice), saved with its replay buffer."""
    folder = tmp_path_factory.mktemp("saved")
    model = LOOP("MlpPolicy", make_vec_env(ENV_ID, n_envs=1, seed=0), seed=0, **tiny_kwargs(**PLANNING_KWARGS))
    model.learn(250)
    model.save(folder / "loop.zip")
    model.save_replay_buffer(folder / "buffer.pkl")
    return model, folder


def assert_same_tensors(first, second) -> None:
    """Recursively compare (nested) dicts / lists of tensors and plain values."""
    if isinstance(first, dict):
        assert first.keys() == second.keys()
        for key in first:
            assert_same_tensors(first[key], second[key])
    elif isinstance(first, (list, tuple)):
        assert len(first) == len(second)
        for a, b in zip(first, second):
            assert_same_tensors(a, b)
    elif isinstance(first, torch.Tensor):
        assert torch.equal(first.cpu(), second.cpu())
    else:
        assert first == second


def plan_action(model: LOOP, obs: np.ndarray, global_seed: int = 3) -> np.ndarray:
    """A deterministic action after an episode start; the global torch RNG's state must not matter."""
    torch.manual_seed(global_seed)
    action, _ = model.predict(obs, episode_start=np.ones(1, dtype=bool), deterministic=True)
    return action


def test_zip_contents(saved):
    _, folder = saved
    with zipfile.ZipFile(folder / "loop.zip") as archive:
        names = set(archive.namelist())
    assert {"data", "policy.pth", "policy.dynamics.optimizer.pth", "actor.optimizer.pth"} <= names


def test_ensemble_survives(saved):
    model, folder = saved
    loaded = LOOP.load(folder / "loop.zip")
    dynamics, loaded_dynamics = model.policy.dynamics, loaded.policy.dynamics
    assert loaded_dynamics.is_trained
    assert int(loaded_dynamics.num_trainings) == int(dynamics.num_trainings) == 2
    assert_same_tensors(dynamics.state_dict(), loaded_dynamics.state_dict())
    # Not the defaults: normaliser statistics and holdout errors were fitted and carried over.
    assert not torch.all(loaded_dynamics.input_mean == 0)
    assert not torch.all(loaded_dynamics.target_std == 1)
    assert torch.isfinite(loaded_dynamics.holdout_mse).all()
    assert torch.all(loaded_dynamics.holdout_mse[:-1] <= loaded_dynamics.holdout_mse[1:])  # elites first
    assert loaded_dynamics.num_elites == dynamics.num_elites == 2
    assert loaded_dynamics.hidden_sizes == (16, 16)


def test_dynamics_optimizer_survives(saved):
    model, folder = saved
    loaded = LOOP.load(folder / "loop.zip")
    state = model.policy.dynamics.optimizer.state_dict()
    assert len(state["state"]) > 0  # Adam moments exist after training
    assert_same_tensors(state, loaded.policy.dynamics.optimizer.state_dict())
    # The loaded optimiser drives the loaded ensemble's parameters, not stale copies.
    loaded_params = {id(p) for p in loaded.policy.dynamics.parameters()}
    optimizer_params = {id(p) for group in loaded.policy.dynamics.optimizer.param_groups for p in group["params"]}
    assert optimizer_params == loaded_params


def test_hyperparameters_survive(saved):
    model, folder = saved
    loaded = LOOP.load(folder / "loop.zip")
    assert loaded.policy.arc_config == model.policy.arc_config
    assert loaded.policy.rollout_planner.config == model.policy.arc_config
    config = dataclasses.asdict(loaded.policy.arc_config)
    assert {key: config[key] for key in ("horizon", "population_size", "num_particles", "kappa", "mixture_coef")} == {
        key: PLANNING_KWARGS[key] for key in ("horizon", "population_size", "num_particles", "kappa", "mixture_coef")
    }
    assert config["iterations"] == PLANNING_KWARGS["planning_iterations"]
    assert loaded.dynamics_train_freq == model.dynamics_train_freq == 100
    assert loaded.dynamics_training_config == model.dynamics_training_config
    assert loaded.termination_fn == ENV_ID
    assert loaded.policy.dynamics_learning_rate == model.policy.dynamics_learning_rate


def test_loaded_predict_matches(saved):
    """Deterministic actions survive save/load; two loaded copies also agree on stochastic actions."""
    model, folder = saved
    loaded, other = LOOP.load(folder / "loop.zip"), LOOP.load(folder / "loop.zip")
    assert loaded.planning_seed == loaded.policy.planning_seed == model.policy.planning_seed == 0
    for obs in (np.array([0.3, -0.9, 0.5], dtype=np.float32), np.array([-0.7, 0.7, -2.0], dtype=np.float32)):
        expected = plan_action(model, obs, global_seed=0)
        np.testing.assert_array_equal(plan_action(loaded, obs, global_seed=1), expected)
        np.testing.assert_array_equal(plan_action(other, obs, global_seed=2), expected)
    obs = np.array([0.3, -0.9, 0.5], dtype=np.float32)
    stochastic = [copy.predict(obs, deterministic=False)[0] for copy in (loaded, other, loaded, other)]
    np.testing.assert_array_equal(stochastic[0], stochastic[1])
    np.testing.assert_array_equal(stochastic[2], stochastic[3])
    assert not np.array_equal(stochastic[0], stochastic[2])  # a persistent stream, not a fixed seed


def test_unseeded_model_reproduces_after_load(tmp_path):
    """With seed=None a planning seed is drawn once and saved, so a loaded model acts the same."""
    model = LOOP("MlpPolicy", ENV_ID, seed=None, **tiny_kwargs(learning_starts=50))
    model.learn(60)
    assert model.seed is None and isinstance(model.planning_seed, int)
    assert LOOP("MlpPolicy", ENV_ID, **tiny_kwargs()).planning_seed != model.planning_seed
    model.save(tmp_path / "unseeded")
    loaded = LOOP.load(tmp_path / "unseeded")
    assert loaded.policy.planning_seed == model.planning_seed
    obs = np.array([0.3, -0.9, 0.5], dtype=np.float32)
    np.testing.assert_array_equal(plan_action(loaded, obs), plan_action(model, obs))


def test_file_saved_without_planning_seed_plans_with_the_training_seed(saved, tmp_path):
    """Models saved before the planning seed existed plan with their training seed, the same at every load."""
    model, folder = saved
    old_file = tmp_path / "old.zip"
    with zipfile.ZipFile(folder / "loop.zip") as source, zipfile.ZipFile(old_file, "w") as target:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == "data":
                data = json.loads(content)
                assert data.pop("planning_seed") == 0
                content = json.dumps(data).encode()
            target.writestr(item, content)
    first, second = LOOP.load(old_file), LOOP.load(old_file)
    assert first.planning_seed == second.planning_seed == first.policy.planning_seed == model.seed == 0
    obs = np.array([0.3, -0.9, 0.5], dtype=np.float32)
    np.testing.assert_array_equal(plan_action(first, obs), plan_action(second, obs))
    np.testing.assert_array_equal(plan_action(first, obs), plan_action(model, obs))


def test_load_without_zip_suffix(saved):
    _, folder = saved
    loaded = LOOP.load(folder / "loop")
    assert loaded.policy.dynamics.is_trained


def test_replay_buffer_then_continue_learning(saved):
    model, folder = saved
    loaded = LOOP.load(folder / "loop.zip", env=make_vec_env(ENV_ID, n_envs=1, seed=1))
    loaded.load_replay_buffer(folder / "buffer.pkl")
    assert loaded.replay_buffer.size() == model.replay_buffer.size() == 250
    np.testing.assert_array_equal(loaded.replay_buffer.observations, model.replay_buffer.observations)
    trainings = int(loaded.policy.dynamics.num_trainings)
    weights = loaded.policy.dynamics.output_layer.weight.clone()

    loaded.learn(60, reset_num_timesteps=False)

    assert loaded.num_timesteps == 310
    assert loaded.replay_buffer.size() == 310
    # The schedule carries over: last fit at 200 before saving, so the next one is at 300.
    assert loaded._last_dynamics_train == 300
    assert int(loaded.policy.dynamics.num_trainings) == trainings + 1
    assert not torch.equal(weights, loaded.policy.dynamics.output_layer.weight)


def test_set_env(saved):
    _, folder = saved
    loaded = LOOP.load(folder / "loop.zip")
    assert loaded.get_env() is None
    loaded.set_env(make_vec_env(ENV_ID, n_envs=1, seed=2))
    loaded.learn(20, reset_num_timesteps=False)
    assert loaded.num_timesteps == 270


def test_set_env_other_spaces_raises(saved):
    _, folder = saved
    loaded = LOOP.load(folder / "loop.zip")
    with pytest.raises(ValueError):
        loaded.set_env(make_vec_env("InvertedPendulum-v5", n_envs=1))


def test_load_sac_model_raises(tmp_path):
    sac = SAC("MlpPolicy", ENV_ID, learning_starts=10, policy_kwargs=dict(net_arch=[8]))
    sac.save(tmp_path / "sac.zip")
    with pytest.raises(ValueError, match=r"LOOP.*SACPolicy"):
        LOOP.load(tmp_path / "sac.zip")


def test_load_non_zip_raises(tmp_path):
    path = tmp_path / "model.zip"
    path.write_text("not a zip archive")
    with pytest.raises(ValueError, match="not a zip"):
        LOOP.load(path)


def test_load_missing_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        LOOP.load(tmp_path / "missing.zip")
    with pytest.raises(FileNotFoundError):
        LOOP.load(str(tmp_path / "missing"))


def test_save_before_learning_roundtrip(tmp_path):
    """An untrained model saves and loads, and still acts with its actor."""
    model = LOOP("MlpPolicy", ENV_ID, seed=0, **tiny_kwargs())
    model.save(tmp_path / "fresh")
    loaded = LOOP.load(tmp_path / "fresh")
    assert not loaded.policy.dynamics.is_trained
    obs = np.zeros(3, dtype=np.float32)
    np.testing.assert_allclose(
        model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0], rtol=0, atol=0
    )


def test_load_from_file_object(saved):
    model, folder = saved
    with open(folder / "loop.zip", "rb") as file:
        loaded = LOOP.load(file)
    assert loaded.policy.arc_config == model.policy.arc_config
    assert loaded.policy.dynamics.is_trained


def pole_fell(next_obs: torch.Tensor) -> torch.Tensor:
    return next_obs[..., 1].abs() > 0.2


def test_custom_termination_fn_survives(tmp_path):
    model = LOOP("MlpPolicy", "InvertedPendulum-v5", termination_fn=pole_fell, **tiny_kwargs())
    model.save(tmp_path / "custom")
    loaded = LOOP.load(tmp_path / "custom")
    assert loaded.termination_fn is pole_fell
    assert loaded.policy.rollout_planner.termination_fn is pole_fell
    assert loaded.policy.planner.termination_fn is pole_fell


def test_load_applies_planner_and_training_overrides(tmp_path):
    model = LOOP("MlpPolicy", "Pendulum-v1", **tiny_kwargs())
    model.save(tmp_path / "model")
    loaded = LOOP.load(tmp_path / "model", horizon=5, planning_iterations=3, kappa=2.5, dynamics_max_gradient_steps=7)
    assert loaded.policy.arc_config.horizon == 5
    assert loaded.policy.arc_config.iterations == 3
    assert loaded.policy.planner.config.kappa == 2.5
    assert loaded.policy.rollout_planner.config.horizon == 5
    assert loaded.dynamics_training_config.max_gradient_steps == 7
    # Settings not overridden keep their saved values.
    assert loaded.policy.arc_config.population_size == model.policy.arc_config.population_size


def test_load_rejects_bad_overrides(tmp_path):
    model = LOOP("MlpPolicy", "Pendulum-v1", **tiny_kwargs())
    model.save(tmp_path / "model")
    with pytest.raises(ValueError, match="planning_iterations"):
        LOOP.load(tmp_path / "model", planning_iterations=0)
    with pytest.raises(ValueError, match="ensemble_size"):
        LOOP.load(tmp_path / "model", ensemble_size=model.policy.dynamics.ensemble_size + 1)
