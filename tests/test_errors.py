"""Unsupported spaces, invalid hyperparameters and bad inputs fail early with a clear ValueError."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from loop_helpers import tiny_kwargs
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from sb3_loop import LOOP
from sb3_loop.dynamics.termination import never_terminates
from sb3_loop.loop.policies import LOOPPolicy

torch.set_num_threads(1)

BOX_OBS = spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
BOX_ACTION = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)


class SpaceEnv(gym.Env):
    """A do-nothing env with the given spaces."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        super().__init__()
        self.observation_space = observation_space
        self.action_space = action_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


UNSUPPORTED_OBSERVATION_SPACES = [
    spaces.Discrete(5),
    spaces.MultiDiscrete([3, 4]),
    spaces.MultiBinary(4),
    spaces.Dict({"position": spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32), "flag": spaces.Discrete(2)}),
    spaces.Box(0, 255, shape=(36, 36, 3), dtype=np.uint8),  # image, channel last
    spaces.Box(0, 255, shape=(3, 36, 36), dtype=np.uint8),  # image, channel first
    spaces.Box(-1.0, 1.0, shape=(3, 4), dtype=np.float32),  # 2-D, not an image
]

UNSUPPORTED_ACTION_SPACES = [
    spaces.Discrete(3),
    spaces.MultiDiscrete([2, 3]),
    spaces.MultiBinary(2),
    spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32),
]


@pytest.mark.parametrize("observation_space", UNSUPPORTED_OBSERVATION_SPACES, ids=lambda space: type(space).__name__)
def test_unsupported_observation_space(observation_space):
    with pytest.raises(ValueError) as error:
        LOOP("MlpPolicy", SpaceEnv(observation_space, BOX_ACTION), **tiny_kwargs())
    assert str(observation_space) in str(error.value)


@pytest.mark.parametrize("action_space", UNSUPPORTED_ACTION_SPACES, ids=str)
def test_unsupported_action_space(action_space):
    with pytest.raises(ValueError) as error:
        LOOP("MlpPolicy", SpaceEnv(BOX_OBS, action_space), **tiny_kwargs())
    assert str(action_space) in str(error.value)


def test_unsupported_space_by_env_id():
    with pytest.raises(ValueError, match=r"Discrete\(2\)"):
        LOOP("MlpPolicy", "CartPole-v1", **tiny_kwargs())


def test_policy_checks_spaces():
    """The policy also refuses unsupported spaces (e.g. when built by hand or from a loaded zip)."""
    with pytest.raises(ValueError, match=r"Discrete\(3\)"):
        LOOPPolicy(BOX_OBS, spaces.Discrete(3), lambda _: 1e-3)


def test_supported_custom_env():
    model = LOOP("MlpPolicy", SpaceEnv(BOX_OBS, BOX_ACTION), termination_fn=never_terminates, **tiny_kwargs())
    assert model.policy.dynamics.obs_dim == 3 and model.policy.dynamics.action_dim == 2


@pytest.mark.parametrize(
    "name, value",
    [
        ("horizon", 0),
        ("horizon", 2.5),
        ("population_size", 0),
        ("num_particles", 0),
        ("planning_iterations", 0),
        ("mixture_coef", 1.5),
        ("mixture_coef", -0.1),
        ("kappa", 0),
        ("kappa", float("inf")),
        ("var_momentum", 1.5),
        ("propagation", "bogus"),
        ("num_elites", 4),  # > ensemble_size=3
        ("num_elites", 0),
        ("ensemble_size", 1),  # < num_elites=2
        ("dynamics_hidden_sizes", ()),
        ("dynamics_hidden_sizes", (16, 0)),
        ("dynamics_train_freq", 0),
        ("dynamics_train_freq", 2.5),
        ("dynamics_learning_rate", 0),
        ("dynamics_learning_rate", float("nan")),
        ("dynamics_batch_size", 0),
        ("dynamics_max_epochs", 0),
        ("dynamics_holdout_ratio", 0.0),
        ("dynamics_holdout_ratio", 1.0),
    ],
)
def test_invalid_hyperparameter(name, value):
    with pytest.raises(ValueError) as error:
        LOOP("MlpPolicy", "Pendulum-v1", **tiny_kwargs(**{name: value}))
    assert name in str(error.value)


def test_optimize_memory_usage_rejected():
    with pytest.raises(ValueError, match="optimize_memory_usage"):
        LOOP("MlpPolicy", "Pendulum-v1", replay_buffer_kwargs=dict(optimize_memory_usage=True), **tiny_kwargs())


@pytest.mark.parametrize(
    "name, value",
    [("use_sde", True), ("sde_sample_freq", 4), ("use_sde_at_warmup", True), ("optimize_memory_usage", True)],
)
def test_unsupported_sac_argument(name, value):
    """SAC arguments LOOP cannot honour (e.g. from a SAC zoo YAML) are refused by name, not with a TypeError."""
    with pytest.raises(ValueError, match=rf"^{name}={value!r} is not supported by LOOP: "):
        LOOP("MlpPolicy", "Pendulum-v1", **tiny_kwargs(**{name: value}))


def test_sac_arguments_at_their_defaults_accepted():
    model = LOOP(
        "MlpPolicy",
        "Pendulum-v1",
        use_sde=False,
        sde_sample_freq=-1,
        use_sde_at_warmup=False,
        optimize_memory_usage=False,
        **tiny_kwargs(),
    )
    assert not model.use_sde and not model.optimize_memory_usage


@pytest.mark.parametrize("policy", ["MultiInputPolicy", "CnnPolicy"])
def test_unsupported_policy_name(policy):
    with pytest.raises(ValueError, match=rf"'{policy}' is not supported by LOOP: it supports 'MlpPolicy' on flat Box"):
        LOOP(policy, "Pendulum-v1", **tiny_kwargs())


def test_non_loop_policy_class():
    from stable_baselines3.sac.policies import MultiInputPolicy

    with pytest.raises(ValueError, match=r"MultiInputPolicy is not a LOOPPolicy.*'MlpPolicy'"):
        LOOP(MultiInputPolicy, "Pendulum-v1", **tiny_kwargs())


def test_unknown_policy_name_keeps_sb3_message():
    with pytest.raises(ValueError, match="Policy Bogus unknown"):
        LOOP("Bogus", "Pendulum-v1", **tiny_kwargs())


@pytest.mark.parametrize("planning_seed", [-1, 2**64, 2.5, "0", True, None])
def test_invalid_planning_seed(planning_seed):
    with pytest.raises(ValueError, match=r"planning_seed=.* must be an integer in \[0, 2\*\*64\)"):
        LOOP("MlpPolicy", "Pendulum-v1", **tiny_kwargs(policy_kwargs=dict(net_arch=[16], planning_seed=planning_seed)))


def test_vec_normalize_rejected_at_learn():
    model = LOOP("MlpPolicy", VecNormalize(make_vec_env("Pendulum-v1", n_envs=1)), **tiny_kwargs())
    with pytest.raises(ValueError, match="VecNormalize"):
        model.learn(10)
    assert model.num_timesteps == 0


@pytest.fixture(scope="module")
def trained_model() -> LOOP:
    model = LOOP("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs(learning_starts=50))
    model.learn(60)
    assert model.policy.dynamics.is_trained
    return model


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_observation_into_predict(trained_model, bad):
    obs = np.array([0.1, bad, 0.3], dtype=np.float32)
    with pytest.raises(ValueError, match="NaN or inf"):
        trained_model.predict(obs, deterministic=True)
    with pytest.raises(ValueError, match="NaN or inf"):
        trained_model.predict(np.stack([np.zeros(3, dtype=np.float32), obs]))


def test_nan_observation_into_untrained_predict():
    """Before the ensemble is fitted the actor acts; torch's distribution check still refuses NaN."""
    model = LOOP("MlpPolicy", "Pendulum-v1", **tiny_kwargs())
    with pytest.raises(ValueError):
        model.predict(np.array([np.nan, 0.0, 0.0], dtype=np.float32))


def test_wrong_observation_shape_into_predict(trained_model):
    with pytest.raises(ValueError):
        trained_model.predict(np.zeros(4, dtype=np.float32))
