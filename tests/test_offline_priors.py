"""
The offline priors CRR and TD3+BC (sb3_loop.offline): learning a point-mass task from an expert's
dataset, gradient-step accounting with callbacks and logs, save/load without the dataset, argument
checks, and training + enjoying through the zoo launcher.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
import yaml
from gymnasium import spaces
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor

from sb3_loop import CRR, TD3BC, zoo
from sb3_loop.datasets import OfflineDataset, write_d4rl_hdf5
from sb3_loop.offline import ObservationNormalizer

th.set_num_threads(1)

ALGORITHMS = (TD3BC, CRR)
FAST = dict(policy_kwargs=dict(net_arch=[64, 64]), learning_rate=1e-3, batch_size=128)
TRAIN_STEPS = 600
REPO = Path(__file__).resolve().parents[1]


class PointMass(gym.Env):
    """x in [-1, 1], x' = clip(x + 0.2 a), reward -|x'|, 20 steps, uniform random start."""

    observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.x, self.t = float(self.np_random.uniform(-1.0, 1.0)), 0
        return np.array([self.x], np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.x = float(np.clip(self.x + 0.2 * float(np.clip(action[0], -1.0, 1.0)), -1.0, 1.0))
        self.t += 1
        return np.array([self.x], np.float32), -abs(self.x), False, self.t >= 20, {}


def expert(obs: np.ndarray, rng: np.random.Generator, noise: float = 0.2) -> np.ndarray:
    return np.clip(-obs / 0.2 + rng.normal(0.0, noise, obs.shape), -1.0, 1.0).astype(np.float32)


def rollout_dataset(env: gym.Env, policy, episodes: int, seed: int) -> OfflineDataset:
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {
        key: [] for key in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
    }
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed * 10_000 + episode)
        done = False
        while not done:
            action = policy(obs, rng)
            next_obs, reward, terminal, truncated, _ = env.step(action)
            for key, value in zip(rows, (obs, action, reward, next_obs, terminal, truncated)):
                rows[key].append(value)
            obs, done = next_obs, terminal or truncated
    return OfflineDataset(**{key: np.array(value) for key, value in rows.items()}, source="point-mass expert")


def mean_return(policy, episodes: int = 20, seed: int = 123) -> float:
    """Mean return of ``policy(obs) -> action`` from the same start states for every policy."""
    env, returns = PointMass(), []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            obs, reward, terminal, truncated, _ = env.step(policy(obs))
            total, done = total + reward, terminal or truncated
        returns.append(total)
    return float(np.mean(returns))


@pytest.fixture(scope="module")
def dataset() -> OfflineDataset:
    return rollout_dataset(PointMass(), expert, episodes=50, seed=0)


@pytest.fixture(scope="module")
def trained(dataset: OfflineDataset, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Each algorithm trained for TRAIN_STEPS gradient steps, logging to CSV every 200 steps."""
    models = {}
    for cls in ALGORITHMS:
        model = cls("MlpPolicy", PointMass(), dataset, seed=0, **FAST)
        folder = tmp_path_factory.mktemp(cls.__name__)
        model.set_logger(configure(str(folder), ["csv"]))
        model.learn(TRAIN_STEPS, log_interval=200)
        models[cls] = (model, folder / "progress.csv")
    return models


# ---------------------------------------------------------------------------------- learning
@pytest.mark.parametrize("cls", ALGORITHMS, ids=lambda c: c.__name__)
def test_learns_the_point_mass_to_near_behaviour_return(cls, dataset, trained):
    model, _ = trained[cls]
    behaviour = float(dataset.episode_returns().mean())
    random_policy = np.random.default_rng(1)
    random = mean_return(lambda obs: random_policy.uniform(-1.0, 1.0, 1))
    learned = mean_return(lambda obs: model.predict(obs, deterministic=True)[0])
    assert random < 3 * behaviour  # the task separates them: about -11 against -1.2
    assert learned >= behaviour - 0.1 * abs(behaviour), (learned, behaviour)
    assert model.num_timesteps == model._n_updates == TRAIN_STEPS
    assert model.replay_buffer.buffer_size == len(dataset) and model.replay_buffer.full


@pytest.mark.parametrize("cls", ALGORITHMS, ids=lambda c: c.__name__)
def test_logs_train_keys_every_log_interval(cls, trained):
    _, csv_path = trained[cls]
    rows = np.genfromtxt(csv_path, delimiter=",", names=True, dtype=float)
    columns = set(csv_path.read_text().splitlines()[0].split(","))
    common = {"train/critic_loss", "train/actor_loss", "train/learning_rate", "train/n_updates", "time/fps"}
    own = {"train/bc_loss", "train/q_lambda"} if cls is TD3BC else {"train/advantage", "train/weight", "train/log_prob"}
    assert common | own <= columns
    assert list(rows["timetotal_timesteps"]) == [200, 400, 600]
    assert np.all(np.isfinite(rows["trainactor_loss"])) and np.all(np.isfinite(rows["traincritic_loss"]))


# ------------------------------------------------------------------------- gradient-step loop
@pytest.mark.filterwarnings("ignore:rich is experimental")
@pytest.mark.parametrize("cls", ALGORITHMS, ids=lambda c: c.__name__)
def test_eval_callback_counts_gradient_steps_and_learning_continues(cls, dataset, tmp_path):
    env = Monitor(PointMass())
    model = cls("MlpPolicy", env, dataset, seed=0, policy_kwargs=dict(net_arch=[8]), batch_size=16)
    evaluation = EvalCallback(Monitor(PointMass()), eval_freq=40, n_eval_episodes=1, log_path=str(tmp_path), verbose=0)
    model.learn(120, callback=evaluation, progress_bar=True)
    assert list(evaluation.evaluations_timesteps) == [40, 80, 120]
    assert env.get_total_steps() == 0  # the training env is never stepped
    model.learn(80, callback=evaluation, reset_num_timesteps=False)
    assert model.num_timesteps == model._n_updates == 200
    assert list(evaluation.evaluations_timesteps) == [40, 80, 120, 160, 200]


# ---------------------------------------------------------------------------------- save/load
@pytest.mark.parametrize("cls", ALGORITHMS, ids=lambda c: c.__name__)
def test_save_load_predicts_identically_without_the_dataset(cls, dataset, trained, tmp_path):
    model, _ = trained[cls]
    model.save(tmp_path / "model.zip")
    with zipfile.ZipFile(tmp_path / "model.zip") as archive:
        assert "dataset" not in json.loads(archive.read("data"))
        assert sum(info.file_size for info in archive.infolist()) < 2 * 1024**2
    loaded = cls.load(tmp_path / "model.zip")
    assert loaded.dataset is None and loaded.replay_buffer.buffer_size == 1
    observations = np.linspace(-1.0, 1.0, 41, dtype=np.float32)[:, None]
    np.testing.assert_array_equal(
        loaded.predict(observations, deterministic=True)[0], model.predict(observations, deterministic=True)[0]
    )
    with pytest.raises(ValueError, match="no dataset"):
        loaded.learn(10)

    again = cls.load(tmp_path / "model.zip", env=PointMass(), dataset=dataset)
    again.learn(10, reset_num_timesteps=False)
    assert again.num_timesteps == TRAIN_STEPS + 10 and again.replay_buffer.buffer_size == len(dataset)
    loaded.set_env(PointMass())
    loaded.set_dataset(dataset)
    loaded.learn(5)
    assert loaded.num_timesteps == 5


def test_td3bc_normalisation_is_the_dataset_stats_and_survives_save_load(tmp_path):
    env = PointMass()
    shifted = rollout_dataset(env, expert, episodes=10, seed=1)
    shifted.observations = shifted.observations * 0.5 + 0.3  # mean and std far from 0 and 1
    model = TD3BC("MlpPolicy", env, shifted, seed=0, policy_kwargs=dict(net_arch=[16]), batch_size=32)
    normalizers = [m for m in model.policy.modules() if isinstance(m, ObservationNormalizer)]
    assert len(normalizers) == 4  # actor, critic and their targets
    for normalizer in normalizers:
        np.testing.assert_allclose(normalizer.mean.numpy(), shifted.observations.mean(0), rtol=1e-5)
        np.testing.assert_allclose(normalizer.std.numpy(), shifted.observations.std(0) + 1e-3, rtol=1e-5)
    model.learn(20)
    model.save(tmp_path / "td3bc")
    loaded = TD3BC.load(tmp_path / "td3bc.zip")
    loaded_normalizer = loaded.actor.features_extractor
    assert isinstance(loaded_normalizer, ObservationNormalizer)
    assert th.equal(loaded_normalizer.mean, normalizers[0].mean) and th.equal(loaded_normalizer.std, normalizers[0].std)
    raw = np.array([[0.3], [0.9]], dtype=np.float32)
    expected = model.predict(raw, deterministic=True)[0]
    np.testing.assert_array_equal(loaded.predict(raw, deterministic=True)[0], expected)
    # the normalisation is really applied: identity statistics act differently
    loaded_normalizer.mean.zero_()
    loaded_normalizer.std.fill_(1.0)
    assert not np.allclose(loaded.predict(raw, deterministic=True)[0], expected)
    # a trained model keeps its statistics when given another dataset
    model.set_dataset(rollout_dataset(env, expert, episodes=2, seed=2))
    assert th.equal(model.actor.features_extractor.mean, normalizers[0].mean)
    crr = CRR("MlpPolicy", env, shifted, policy_kwargs=dict(net_arch=[8]), batch_size=32)
    assert not any(isinstance(m, ObservationNormalizer) for m in crr.policy.modules())  # off by default in CRR


# ------------------------------------------------------------------------------------- CRR
def test_crr_weights_and_advantages(dataset):
    model = CRR("MlpPolicy", PointMass(), dataset, seed=0, policy_kwargs=dict(net_arch=[8]), max_weight=5.0, beta=0.5)
    advantages = th.tensor([[-1.0], [0.0], [0.2], [3.0]])
    np.testing.assert_allclose(model._weights(advantages).squeeze(1).numpy(), [np.exp(-2.0), 1.0, np.exp(0.4), 5.0], rtol=1e-6)
    model.weight_type = "binary"
    assert model._weights(advantages).squeeze(1).tolist() == [0.0, 0.0, 1.0, 1.0]
    batch = model.replay_buffer.sample(64)
    mean, log_std, _ = model.actor.get_action_dist_params(batch.observations)
    by_type = {}
    for advantage_type in ("mean", "max"):
        model.advantage_type = advantage_type
        th.manual_seed(0)
        by_type[advantage_type] = model._advantages(batch.observations, batch.actions, mean, log_std.exp())
    assert by_type["mean"].shape == (64, 1)
    assert th.all(by_type["max"] <= by_type["mean"] + 1e-6) and not th.allclose(by_type["max"], by_type["mean"])


def test_crr_log_prob_of_actions_on_the_bounds_is_finite():
    env = PointMass()
    bang_bang = rollout_dataset(env, lambda obs, rng: np.sign(-obs + 1e-3).astype(np.float32), episodes=5, seed=3)
    assert np.all(np.abs(bang_bang.actions) == 1.0)
    model = CRR("MlpPolicy", env, bang_bang, seed=0, policy_kwargs=dict(net_arch=[8]), batch_size=32)
    model.set_logger(configure(None, []))
    model.learn(30, log_interval=None)
    values = model.logger.name_to_value
    assert np.isfinite(values["train/log_prob"]) and np.isfinite(values["train/actor_loss"])


# ------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (TD3BC, dict(alpha=-1.0), r"alpha=-1\.0"),
        (TD3BC, dict(policy_delay=0), r"policy_delay=0"),
        (TD3BC, dict(target_policy_noise=-0.1), r"target_policy_noise=-0\.1"),
        (TD3BC, dict(normalize_observations="yes"), r"normalize_observations='yes'"),
        (CRR, dict(beta=0.0), r"beta=0\.0"),
        (CRR, dict(beta=-2.0), r"beta=-2\.0"),
        (CRR, dict(weight_type="softmax"), r"weight_type='softmax'"),
        (CRR, dict(advantage_type="median"), r"advantage_type='median'"),
        (CRR, dict(n_action_samples=0), r"n_action_samples=0"),
        (CRR, dict(max_weight=0), r"max_weight=0"),
        (CRR, dict(tau=0.0), r"tau=0\.0"),
        (TD3BC, dict(gamma=1.5), r"gamma=1\.5"),
        (TD3BC, dict(learning_rate=-3e-4), r"learning_rate=-0\.0003"),
        (TD3BC, dict(batch_size=10_000), r"batch_size=10000 is larger than the dataset \(1000 transitions\)"),
        (CRR, dict(batch_size=0), r"batch_size=0"),
        (TD3BC, dict(learning_starts=100), r"learning_starts=100 does not apply to TD3BC"),
        (CRR, dict(train_freq=4), r"train_freq=4 does not apply to CRR"),
        (CRR, dict(ent_coef="auto"), r"ent_coef='auto' does not apply to CRR"),
        (TD3BC, dict(buffer_size=10), r"buffer_size=10 does not apply"),
        (TD3BC, dict(dataset=42), r"dataset=42 must be an OfflineDataset"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(cls, kwargs, match, dataset):
    kwargs = {"dataset": dataset, **kwargs}
    with pytest.raises(ValueError, match=match):
        cls("MlpPolicy", PointMass(), **kwargs)


def test_unknown_argument_is_a_type_error(dataset):
    with pytest.raises(TypeError, match="unexpected keyword argument 'alfa'"):
        TD3BC("MlpPolicy", PointMass(), dataset, alfa=2.5)


@pytest.mark.parametrize("cls", ALGORITHMS, ids=lambda c: c.__name__)
def test_dataset_that_does_not_fit_the_env_is_refused(cls, dataset):
    wide = OfflineDataset(
        np.zeros((10, 2)), np.zeros((10, 1)), np.zeros(10), np.zeros((10, 2)), np.zeros(10), np.zeros(10), source="wide.hdf5"
    )
    with pytest.raises(ValueError, match=r"wide\.hdf5: key 'observations' has rows of shape \(2,\)"):
        cls("MlpPolicy", PointMass(), wide, batch_size=4)
    too_strong = dataset.subset(slice(0, 50))
    too_strong.actions = too_strong.actions * 3.0
    with pytest.raises(ValueError, match=r"outside .* action bounds"):
        cls("MlpPolicy", PointMass(), too_strong, batch_size=4)


def test_buffer_holds_the_dataset_with_actions_scaled_to_the_unit_box():
    env = gym.make("Pendulum-v1", max_episode_steps=50)  # actions in [-2, 2]
    data = rollout_dataset(env, lambda obs, rng: rng.uniform(-2, 2, 1).astype(np.float32), 2, seed=5)
    model = TD3BC("MlpPolicy", env, data, policy_kwargs=dict(net_arch=[8]), batch_size=16)
    buffer = model.replay_buffer
    np.testing.assert_allclose(buffer.actions[:, 0], data.actions / 2.0, atol=1e-6)
    np.testing.assert_array_equal(buffer.observations[:, 0], data.observations)
    np.testing.assert_array_equal(buffer.dones[:, 0], data.terminals)


# ------------------------------------------------------------------------------ zoo launcher
def pendulum_dataset(path: Path, rows: int = 400) -> Path:
    """A random-action Pendulum-v1 dataset in D4RL's HDF5 layout."""
    dataset = rollout_dataset(
        gym.make("Pendulum-v1", max_episode_steps=100), lambda obs, rng: rng.uniform(-2, 2, 1).astype(np.float32), 4, seed=4
    )
    assert len(dataset) == rows
    write_d4rl_hdf5(dataset, path)
    return path


def test_zoo_trains_td3bc_on_a_dataset_file_then_enjoys_it(tmp_path, monkeypatch):
    path = pendulum_dataset(tmp_path / "pendulum.hdf5")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    try:
        zoo.main([
            "train", "--algo", "td3bc", "--env", "Pendulum-v1", "-n", "60", "--eval-freq", "30", "--eval-episodes", "1",
            "-f", "logs", "--seed", "0",
            "-params", f"dataset:{str(path)!r}", "policy_kwargs:dict(net_arch=[16])", "batch_size:32",
        ])  # fmt: skip
        run = tmp_path / "logs" / "td3bc" / "Pendulum-v1_1"
        assert list(np.load(run / "evaluations.npz")["timesteps"]) == [30, 60]
        model = TD3BC.load(run / "Pendulum-v1.zip")
        assert model.num_timesteps == 60 and model.batch_size == 32 and model.alpha == 2.5
        zoo.main(["enjoy", "--algo", "td3bc", "--env", "Pendulum-v1", "-f", "logs", "--no-render", "-n", "20", "--seed", "0"])
    finally:
        zoo.register_algorithms()


def test_zoo_tables_and_packaged_hyperparameters_of_the_offline_priors():
    zoo.register_algorithms(["crr", "td3bc"], for_inference=True)
    from rl_zoo3.utils import ALGOS

    assert ALGOS["crr"] is CRR and ALGOS["td3bc"] is TD3BC  # they load without a 1-transition buffer
    for algo, cls in (("crr", CRR), ("td3bc", TD3BC)):
        packaged = REPO / "sb3_loop" / "hyperparams" / f"{algo}.yml"
        assert packaged.read_bytes() == (REPO / "hyperparams" / f"{algo}.yml").read_bytes()
        entries = yaml.safe_load(packaged.read_text())
        assert {"Hopper-v5", "HalfCheetah-v5", "Walker2d-v5"} <= set(entries)
        for env_id, entry in entries.items():
            assert entry["dataset"] == f"{env_id}-medium" and entry["policy"] == "MlpPolicy" and entry["n_timesteps"] > 0
            entry = {k: v for k, v in entry.items() if k not in ("n_timesteps", "policy", "dataset", "policy_kwargs")}
            cls("MlpPolicy", None, **entry, _init_setup_model=False)  # every value is an accepted argument
