"""Termination functions must reproduce the ``terminated`` flag of the real Gymnasium envs."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

from sb3_loop.dynamics import termination
from sb3_loop.dynamics.termination import (
    ant_termination,
    get_termination_fn,
    half_cheetah_termination,
    hopper_termination,
    inverted_double_pendulum_termination,
    inverted_pendulum_termination,
    never_terminates,
    reacher_termination,
    register_termination_fn,
    swimmer_termination,
    walker2d_termination,
)

torch.set_num_threads(1)

# env id -> (our function, default obs_dim)
ENVS = {
    "Hopper-v5": (hopper_termination, 11),
    "Walker2d-v5": (walker2d_termination, 17),
    "Ant-v5": (ant_termination, 105),
    "InvertedPendulum-v5": (inverted_pendulum_termination, 4),
    "InvertedDoublePendulum-v5": (inverted_double_pendulum_termination, 9),
    "HalfCheetah-v5": (half_cheetah_termination, 17),
    "Swimmer-v5": (swimmer_termination, 8),
    "Reacher-v5": (reacher_termination, 10),
}
TERMINATING = ["Hopper-v5", "Walker2d-v5", "Ant-v5", "InvertedPendulum-v5", "InvertedDoublePendulum-v5"]


def _rollout(env_id: str, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random-action rollout; returns every next_obs and the env's terminated flag."""
    env = gym.make(env_id)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    next_obs, terminated = [], []
    for _ in range(steps):
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        next_obs.append(obs)
        terminated.append(term)
        if term or trunc:
            env.reset()
    env.close()
    return np.asarray(next_obs), np.asarray(terminated, dtype=bool)


@pytest.mark.parametrize(
    "env_id, steps, min_terminations",
    [
        ("Hopper-v5", 2000, 20),
        ("Walker2d-v5", 2000, 20),
        ("InvertedPendulum-v5", 2000, 20),
        ("InvertedDoublePendulum-v5", 2000, 20),
        # Ant rarely falls under random actions; constructed states are checked below.
        ("Ant-v5", 1000, 0),
    ],
)
def test_matches_env_on_random_rollouts(env_id: str, steps: int, min_terminations: int) -> None:
    fn, obs_dim = ENVS[env_id]
    next_obs, terminated = _rollout(env_id, steps, seed=0)
    assert next_obs.shape == (steps, obs_dim)
    predicted = fn(torch.as_tensor(next_obs))
    assert predicted.dtype == torch.bool and predicted.shape == (steps,)
    mismatches = np.flatnonzero(predicted.numpy() != terminated)
    assert mismatches.size == 0, f"{env_id}: {mismatches.size} mismatches, first at steps {mismatches[:5]}"
    assert terminated.sum() >= min_terminations
    assert (~terminated).sum() > 0
    # float32 inputs (what a model typically predicts) agree as well on these samples
    assert torch.equal(fn(torch.as_tensor(next_obs, dtype=torch.float32)), predicted)


def _constructed_states(env_id: str, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """(qpos, qvel) pairs around and on the boundaries of the healthy ranges."""
    env = gym.make(env_id).unwrapped
    qpos0, nv = env.init_qpos.copy(), env.model.nv
    env.close()
    states = []
    if env_id == "Ant-v5":
        # z is qpos[2]; include the inclusive bounds 0.2 and 1.0 exactly.
        heights = np.concatenate([np.linspace(0.05, 1.4, 28), [0.2, 1.0, 0.2 - 1e-9, 1.0 + 1e-9]])
        angles = [None]
        z_index, angle_index = 2, None
    elif env_id == "Hopper-v5":
        # z is qpos[1] (healthy 0.7 < z), torso angle qpos[2] (healthy |angle| < 0.2).
        heights = np.array([0.5, 0.7, 0.7 + 1e-9, 1.25, 2.5])
        angles = [-0.3, -0.2, -0.19, 0.0, 0.2, 0.25]
        z_index, angle_index = 1, 2
    elif env_id == "Walker2d-v5":
        # z is qpos[1] (healthy 0.8 < z < 2.0), torso angle qpos[2] (healthy |angle| < 1).
        heights = np.array([0.6, 0.8, 0.81, 1.25, 2.0, 2.2])
        angles = [-1.2, -1.0, -0.5, 0.0, 0.99, 1.0, 1.5]
        z_index, angle_index = 1, 2
    else:
        raise ValueError(env_id)
    for z in heights:
        for angle in angles:
            qpos = qpos0 + rng.uniform(-0.05, 0.05, size=qpos0.shape)
            qpos[z_index] = z
            if angle_index is not None:
                qpos[angle_index] = angle
            qvel = rng.uniform(-1.0, 1.0, size=nv)
            states.append((qpos, qvel))
    return states


@pytest.mark.parametrize("env_id", ["Ant-v5", "Hopper-v5", "Walker2d-v5"])
def test_matches_env_on_constructed_states(env_id: str) -> None:
    fn, _ = ENVS[env_id]
    rng = np.random.default_rng(0)
    env = gym.make(env_id)
    env.reset(seed=0)
    raw = env.unwrapped
    healthy_obs, healthy_flags, step_obs, step_flags = [], [], [], []
    for qpos, qvel in _constructed_states(env_id, rng):
        # The state itself: compare with the env's own health check.
        raw.set_state(qpos, qvel)
        healthy_obs.append(raw._get_obs())
        healthy_flags.append(not raw.is_healthy)
        # And one real step from it: compare with the returned `terminated` flag.
        obs, _, term, _, _ = env.step(env.action_space.sample())
        step_obs.append(obs)
        step_flags.append(term)
    env.close()
    for obs, flags in ((healthy_obs, healthy_flags), (step_obs, step_flags)):
        flags = np.asarray(flags, dtype=bool)
        predicted = fn(torch.as_tensor(np.asarray(obs))).numpy()
        np.testing.assert_array_equal(predicted, flags)
        assert flags.any() and (~flags).any()


def test_inverted_double_pendulum_geometry() -> None:
    """The tip height derived from sin/cos matches the simulator's tip site."""
    env = gym.make("InvertedDoublePendulum-v5").unwrapped
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(50):
        qpos = np.array([rng.uniform(-0.9, 0.9), rng.uniform(-np.pi, np.pi), rng.uniform(-np.pi, np.pi)])
        env.set_state(qpos, np.zeros(3))  # runs mj_forward, so site_xpos matches qpos exactly
        obs = env._get_obs()
        y_sim = env.data.site_xpos[0][2]
        y = 0.6 * obs[3] + 0.6 * (obs[3] * obs[4] - obs[1] * obs[2])
        assert y == pytest.approx(y_sim, abs=1e-9)
        assert bool(inverted_double_pendulum_termination(torch.as_tensor(obs))) == (y_sim <= 1)
    env.close()


def test_boundaries_and_non_finite() -> None:
    hopper = torch.zeros(4, 11, dtype=torch.float64)
    hopper[:, 0] = torch.tensor([0.7, 0.7001, 1.2, 1.2])
    hopper[:, 1] = torch.tensor([0.0, 0.0, 0.2, -0.1999])
    assert hopper_termination(hopper).tolist() == [True, False, True, False]
    hopper_fast = torch.zeros(2, 11)
    hopper_fast[:, 0] = 1.2
    hopper_fast[:, 3] = torch.tensor([99.9, -100.0])
    assert hopper_termination(hopper_fast).tolist() == [False, True]

    walker = torch.zeros(4, 17)
    walker[:, 0] = torch.tensor([0.8, 1.0, 2.0, 1.0])
    walker[:, 1] = torch.tensor([0.0, 0.999, 0.0, -1.0])
    assert walker2d_termination(walker).tolist() == [True, False, True, True]

    ant = torch.zeros(3, 105)
    ant[:, 0] = torch.tensor([0.2, 1.0, 1.0001])
    assert ant_termination(ant).tolist() == [False, False, True]

    pendulum = torch.zeros(3, 4)
    pendulum[:, 1] = torch.tensor([0.2, -0.2, 0.2001])
    assert inverted_pendulum_termination(pendulum).tolist() == [False, False, True]

    # Any non-finite observation is terminal for every env that can terminate.
    for env_id in TERMINATING:
        fn, obs_dim = ENVS[env_id]
        obs = _healthy_obs(env_id).expand(2, obs_dim).clone()
        assert not fn(obs).any(), env_id
        for index in range(obs_dim):
            for bad in (float("nan"), float("inf"), -float("inf")):
                corrupted = obs.clone()
                corrupted[1, index] = bad
                assert fn(corrupted).tolist() == [False, True], (env_id, index, bad)


def _healthy_obs(env_id: str) -> torch.Tensor:
    """A single healthy observation of the env's default layout."""
    _, obs_dim = ENVS[env_id]
    obs = torch.zeros(obs_dim)
    if env_id in ("Hopper-v5", "Walker2d-v5"):
        obs[0] = 1.25  # torso height
    elif env_id == "Ant-v5":
        obs[0] = 0.55  # torso height
    elif env_id == "InvertedDoublePendulum-v5":
        obs[3:5] = 1.0  # cos of upright hinge angles
    return obs


def test_half_cheetah_and_friends_never_terminate(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    generator = torch.Generator().manual_seed(0)
    for env_id in ("HalfCheetah-v5", "Swimmer-v5", "Reacher-v5"):
        fn, obs_dim = ENVS[env_id]
        assert get_termination_fn(env_id) is never_terminates
        obs = 100.0 * torch.randn(256, obs_dim, generator=generator)
        done = fn(obs)
        assert done.dtype == torch.bool and done.shape == (256,) and not done.any()
    # and the real HalfCheetah indeed never terminates (MuJoCo logs a deprecation warning about
    # half_cheetah.xml to MUJOCO_LOG.TXT in the cwd: keep it out of the repository)
    monkeypatch.chdir(tmp_path)
    _, terminated = _rollout("HalfCheetah-v5", 200, seed=0)
    assert not terminated.any()


@pytest.mark.parametrize("env_id", list(ENVS))
def test_batched_shapes(env_id: str) -> None:
    fn, obs_dim = ENVS[env_id]
    obs = torch.randn(3, 4, obs_dim, generator=torch.Generator().manual_seed(0))
    obs[..., 0] = obs[..., 0].abs() + 0.5
    done = fn(obs)
    assert done.shape == (3, 4) and done.dtype == torch.bool
    # Same as evaluating each sample on its own, and works without batch dims.
    flat = fn(obs.reshape(12, obs_dim))
    assert torch.equal(done.reshape(12), flat)
    assert torch.equal(torch.stack([fn(o) for o in obs.reshape(12, obs_dim)]), flat)
    assert fn(obs[0, 0]).shape == ()
    assert fn(torch.zeros(0, obs_dim)).shape == (0,)


@pytest.mark.parametrize("env_id", TERMINATING)
def test_wrong_obs_dim_raises(env_id: str) -> None:
    fn, obs_dim = ENVS[env_id]
    with pytest.raises(ValueError, match="termination_fn"):
        fn(torch.zeros(5, obs_dim + 1))


@pytest.mark.parametrize(
    "env_id, expected",
    [
        ("Hopper-v5", hopper_termination),
        ("Hopper-v4", hopper_termination),
        ("Hopper", hopper_termination),
        ("gymnasium.envs.mujoco:Hopper-v5", hopper_termination),
        ("Walker2d-v5", walker2d_termination),
        ("Ant-v5", ant_termination),
        ("InvertedPendulum-v5", inverted_pendulum_termination),
        ("InvertedDoublePendulum-v5", inverted_double_pendulum_termination),
        ("HalfCheetah-v5", never_terminates),
        ("Swimmer-v5", never_terminates),
        ("Reacher-v5", never_terminates),
    ],
)
def test_known_ids_resolve(env_id: str, expected) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_termination_fn(env_id) is expected


def test_user_callable_returned_unchanged() -> None:
    def my_fn(next_obs: torch.Tensor) -> torch.Tensor:
        return next_obs[..., 0] > 0

    assert get_termination_fn(my_fn) is my_fn
    assert get_termination_fn(hopper_termination) is hopper_termination


@pytest.fixture
def fresh_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Isolate the process-wide registry and warned-ids set."""
    monkeypatch.setattr(termination, "_WARNED_IDS", set())
    monkeypatch.setattr(termination, "_REGISTRY", dict(termination._REGISTRY))


@pytest.mark.parametrize("unknown", ["MyUnknownEnv-v3", "hopper-v5", None])
def test_unknown_id_warns_once(fresh_state: None, unknown: str | None) -> None:
    with pytest.warns(UserWarning, match="never ends") as record:
        fn = get_termination_fn(unknown)
    assert len(record) == 1
    message = str(record[0].message)
    assert repr(unknown) in message and "termination_fn" in message
    assert fn is never_terminates
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        assert get_termination_fn(unknown) is never_terminates
    assert again == []
    # A different unknown id warns on its own.
    with pytest.warns(UserWarning):
        get_termination_fn("AnotherUnknownEnv-v0")


@pytest.mark.parametrize("bad", [3, 1.5, b"Hopper-v5", ["Hopper-v5"], object()])
def test_bad_type_raises(bad) -> None:
    with pytest.raises(TypeError, match="termination_fn") as excinfo:
        get_termination_fn(bad)
    assert repr(bad) in str(excinfo.value)


def test_register_termination_fn(fresh_state: None) -> None:
    def toy_fn(next_obs: torch.Tensor) -> torch.Tensor:
        return next_obs[..., 0] < 0

    def toy_v2_fn(next_obs: torch.Tensor) -> torch.Tensor:
        return next_obs[..., 0] > 10

    register_termination_fn("ToyEnv", toy_fn)
    register_termination_fn("ToyEnv-v2", toy_v2_fn)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_termination_fn("ToyEnv-v1") is toy_fn
        assert get_termination_fn("my_pkg.envs:ToyEnv-v0") is toy_fn
        assert get_termination_fn("ToyEnv-v2") is toy_v2_fn  # exact id wins over base name
    with pytest.raises(ValueError, match="overwrite"):
        register_termination_fn("ToyEnv", toy_v2_fn)
    register_termination_fn("ToyEnv", toy_v2_fn, overwrite=True)
    assert get_termination_fn("ToyEnv-v1") is toy_v2_fn
    with pytest.raises(TypeError):
        register_termination_fn("ToyEnv", "not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        register_termination_fn(None, toy_fn)  # type: ignore[arg-type]
