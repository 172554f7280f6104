"""Safety tasks: SafetyPointGoal1 (layout, lidar, reward, cost, action repeat, robot) and velocity-constrained locomotion."""

from __future__ import annotations

import itertools
import os
import pickle
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import sb3_loop  # noqa: F401  (registers the ids)
from sb3_loop.envs import (
    GOAL_LIDAR_SLICE,
    HAZARDS_LIDAR_SLICE,
    POINT_GOAL_ENV_IDS,
    SAFETY_ENV_IDS,
    SENSOR_SLICES,
    VASES_LIDAR_SLICE,
    VELOCITY_ENV_IDS,
    hazard_cost_from_obs,
    nearest_hazard_distance_from_obs,
    pseudo_lidar,
)
from sb3_loop.envs.point_goal import (
    GOAL_KEEPOUT,
    HAZARD_KEEPOUT,
    PLACEMENT_EXTENT,
    ROBOT_KEEPOUT,
    VASE_KEEPOUT,
    SafetyPointGoalEnv,
)
from sb3_loop.envs.velocity import VELOCITY_THRESHOLDS

# Safety observations are unbounded like Safety-Gymnasium's; check_env warns about that.
pytestmark = pytest.mark.filterwarnings("ignore:.*Box observation space m.*:UserWarning")

FAR_HAZARDS = [[10.0 + i, 10.0] for i in range(8)]
FAR_VASE = [[-10.0, -10.0]]
FAR_GOAL = [-10.0, 10.0]
HAZARD_AT_ORIGIN = [[0.0, 0.0], *FAR_HAZARDS[1:]]


def make_point(action_repeat: int = 1, **kwargs) -> SafetyPointGoalEnv:
    env = SafetyPointGoalEnv(action_repeat=action_repeat, **kwargs)
    env.reset(seed=0)
    return env


def layout_of(env: SafetyPointGoalEnv) -> np.ndarray:
    return np.concatenate([env.robot_xy, [env.robot_heading], env.goal_xy, env.hazards_xy.ravel(), env.vases_xy.ravel()])


def test_ids_registered_on_import():
    assert len(SAFETY_ENV_IDS) == 8
    for env_id in SAFETY_ENV_IDS:
        assert env_id in gym.registry
    assert gym.spec("SafetyPointGoal1-v0").max_episode_steps == 1000
    assert gym.spec("SafetyPointGoal1AR5-v0").max_episode_steps == 200
    for env_id in VELOCITY_ENV_IDS:
        assert gym.spec(env_id).max_episode_steps == 1000


@pytest.mark.parametrize("env_id", SAFETY_ENV_IDS)
def test_check_env_and_cost_in_info(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=1)
    _, _, _, _, info = env.step(env.action_space.sample())
    assert isinstance(info["cost"], float) and info["cost"] in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
    env.close()


def test_point_goal_spaces():
    env = make_point()
    assert env.observation_space.shape == (60,)
    assert env.action_space.shape == (2,) and env.action_space.dtype == np.float32
    assert np.all(env.action_space.low == -1.0) and np.all(env.action_space.high == 1.0)
    assert env.dt == pytest.approx(0.02) and env.model.opt.timestep == pytest.approx(0.002)
    assert SafetyPointGoalEnv(action_repeat=5).dt == pytest.approx(0.1)


def test_render_rgb_array():
    """
    Offscreen rendering in a fresh process (MUJOCO_GL is read when mujoco is imported): EGL, else OSMesa.
    The fresh process also shows that ``import sb3_loop`` alone registers the ids.
    """
    script = (
        "import gymnasium as gym\n"
        "import sb3_loop\n"
        "for cam in ('overview', 'track'):\n"
        "    env = gym.make('SafetyPointGoal1-v0', render_mode='rgb_array', width=64, height=48, camera_name=cam)\n"
        "    env.reset(seed=0)\n"
        "    env.step(env.action_space.sample())\n"
        "    frame = env.render()\n"
        "    assert frame.shape == (48, 64, 3) and frame.dtype.name == 'uint8' and frame.std() > 0, frame.shape\n"
        "    env.close()\n"
        "print('rendered')\n"
    )
    errors = {}
    for backend in ("egl", "osmesa"):
        result = subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "MUJOCO_GL": backend},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode == 0 and "rendered" in result.stdout:
            return
        errors[backend] = result.stderr[-500:]
    pytest.skip(f"No headless OpenGL backend works on this machine: {errors}")


def test_render_none_without_render_mode():
    assert make_point().render() is None
    with pytest.raises(ValueError, match="render_mode"):
        SafetyPointGoalEnv(render_mode="human")


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"action_repeat": 0}, "action_repeat"),
        ({"action_repeat": 2.5}, "action_repeat"),
        ({"num_hazards": -1}, "num_hazards"),
        ({"num_vases": -1}, "num_vases"),
        ({"episode_raw_steps": 0}, "episode_raw_steps"),
        ({"camera_name": "side"}, "camera_name"),
    ],
)
def test_point_goal_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SafetyPointGoalEnv(**kwargs)


def test_same_seed_same_layout_and_observations():
    env_a, env_b = SafetyPointGoalEnv(), SafetyPointGoalEnv()
    obs_a, _ = env_a.reset(seed=42)
    obs_b, _ = env_b.reset(seed=42)
    np.testing.assert_array_equal(layout_of(env_a), layout_of(env_b))
    np.testing.assert_array_equal(obs_a, obs_b)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(50, 2))
    for action in actions:
        step_a, step_b = env_a.step(action), env_b.step(action)
        np.testing.assert_array_equal(step_a[0], step_b[0])
        assert step_a[1:] == step_b[1:]
    # Re-seeding the same env restores the layout too.
    env_a.reset(seed=7)
    obs_c, _ = env_a.reset(seed=42)
    np.testing.assert_array_equal(obs_c, obs_b)


def test_different_seeds_different_layouts():
    env = SafetyPointGoalEnv()
    layouts = []
    for seed in range(5):
        env.reset(seed=seed)
        layouts.append(layout_of(env))
    for first, second in itertools.combinations(layouts, 2):
        assert not np.allclose(first, second)


def test_placements_honour_keepouts():
    env = SafetyPointGoalEnv()
    for seed in range(30):
        env.reset(seed=seed)
        objects = [(env.robot_xy, ROBOT_KEEPOUT), (env.goal_xy, GOAL_KEEPOUT)]
        objects += [(xy, HAZARD_KEEPOUT) for xy in env.hazards_xy] + [(xy, VASE_KEEPOUT) for xy in env.vases_xy]
        assert len(objects) == 11
        for xy, keepout in objects:
            assert np.all(np.abs(xy) <= PLACEMENT_EXTENT - keepout)
        for (xy_a, keep_a), (xy_b, keep_b) in itertools.combinations(objects, 2):
            assert np.linalg.norm(xy_a - xy_b) >= keep_a + keep_b


def test_sensors_at_rest():
    env = make_point()
    obs = env.set_layout([0.0, 0.0], 0.0, FAR_GOAL, FAR_HAZARDS, FAR_VASE)
    np.testing.assert_allclose(obs[SENSOR_SLICES["accelerometer"]], [0.0, 0.0, 9.81], atol=1e-9)
    np.testing.assert_allclose(obs[SENSOR_SLICES["velocimeter"]], 0.0, atol=1e-12)
    np.testing.assert_allclose(obs[SENSOR_SLICES["gyro"]], 0.0, atol=1e-12)
    # MuJoCo's default field (0, -0.5, 0) seen by a robot turned by 90 degrees lies along its own -x axis.
    obs = env.set_layout([0.0, 0.0], np.pi / 2, FAR_GOAL, FAR_HAZARDS, FAR_VASE)
    np.testing.assert_allclose(obs[SENSOR_SLICES["magnetometer"]], [-0.5, 0.0, 0.0], atol=1e-12)


def test_lidar_matches_hand_computed_geometry():
    env = make_point()
    # Robot facing world +y: egocentric forward = +y, left = -x. Bins are 22.5 degrees wide counter-clockwise.
    robot = np.array([0.5, -0.5])
    goal = robot + np.array([1.0, 1.2])  # front-right: ego angle 360 - 39.8 = 320.2 degrees -> bin 14
    hazard_offsets = np.array(
        [
            [-1.5, 0.1],  # left, slightly ahead: ego angle ~86 degrees -> bin 3
            [-0.5, 0.05],  # same bin, nearer: wins the max
            [0.2, -2.4],  # behind, slightly right: ego angle 184.8 degrees -> bin 8
            [4.0, 0.0],  # beyond the 3 m lidar range: invisible
        ]
        + [[10.0 + i, 10.0] for i in range(4)]
    )
    hazards = robot + hazard_offsets
    vases = robot + np.array([[0.3, 0.01]])  # right, slightly ahead: ego angle 271.9 degrees -> bin 12
    obs = env.set_layout(robot, np.pi / 2, goal, hazards, vases)

    expected_goal = np.zeros(16)
    expected_goal[14] = 1.0 - np.hypot(1.0, 1.2) / 3.0
    expected_hazards = np.zeros(16)
    expected_hazards[3] = 1.0 - np.hypot(0.5, 0.05) / 3.0
    expected_hazards[8] = 1.0 - np.hypot(0.2, 2.4) / 3.0
    expected_vases = np.zeros(16)
    expected_vases[12] = 1.0 - np.hypot(0.3, 0.01) / 3.0
    np.testing.assert_allclose(obs[GOAL_LIDAR_SLICE], expected_goal, atol=1e-12)
    np.testing.assert_allclose(obs[HAZARDS_LIDAR_SLICE], expected_hazards, atol=1e-12)
    np.testing.assert_allclose(obs[VASES_LIDAR_SLICE], expected_vases, atol=1e-12)
    np.testing.assert_allclose(obs[HAZARDS_LIDAR_SLICE], pseudo_lidar(hazards, robot, np.pi / 2), atol=1e-12)
    assert nearest_hazard_distance_from_obs(obs) == pytest.approx(np.hypot(0.5, 0.05))


def test_lidar_bins_follow_heading():
    """An object straight to the world's +x side lands in bin (ego angle / 22.5 deg) as the robot turns."""
    env = make_point()
    for heading_deg, expected_bin in [(-10.0, 0), (10.0, 15), (-100.0, 4), (100.0, 11), (170.0, 8), (190.0, 7)]:
        heading = np.deg2rad(heading_deg)
        obs = env.set_layout([0.0, 0.0], heading, [1.5, 0.0], FAR_HAZARDS, FAR_VASE)
        expected = np.zeros(16)
        expected[expected_bin] = 0.5
        np.testing.assert_allclose(obs[GOAL_LIDAR_SLICE], expected, atol=1e-12)


def test_cost_is_one_inside_hazard_radius():
    env = make_point()
    hazards = HAZARD_AT_ORIGIN
    for x, expected in [(0.15, 1.0), (0.199, 1.0), (0.201, 0.0), (0.5, 0.0)]:
        env.set_layout([x, 0.0], np.pi / 2, FAR_GOAL, hazards, FAR_VASE)
        obs, _, _, _, info = env.step([0.0, 0.0])
        assert info["cost"] == info["cost_hazards"] == expected
        assert env.hazard_distances()[0] == pytest.approx(x)
        assert hazard_cost_from_obs(obs) == expected


def steer_towards(env: SafetyPointGoalEnv, target: np.ndarray) -> np.ndarray:
    """Proportional controller: turn towards ``target`` and drive when roughly facing it."""
    delta = target - env.robot_xy
    error = np.angle(np.exp(1j * (np.arctan2(delta[1], delta[0]) - env.robot_heading)))
    return np.array([1.0 if abs(error) < 0.5 else 0.0, np.clip(3.0 * error, -1.0, 1.0)])


def test_cost_while_driving_through_hazards():
    """Visiting hazards in turn: the cost is 1 exactly when the robot is within 0.2 of a hazard, readable from obs."""
    env = SafetyPointGoalEnv()
    inside_steps = 0
    for seed in range(2):
        env.reset(seed=seed)
        target = 0
        for _ in range(300):
            if np.linalg.norm(env.hazards_xy[target] - env.robot_xy) < 0.05:
                target = (target + 1) % env.num_hazards
            obs, _, _, _, info = env.step(steer_towards(env, env.hazards_xy[target]))
            expected = float(env.hazard_distances().min() <= 0.2)
            assert info["cost"] == expected
            assert hazard_cost_from_obs(obs) == expected
            inside_steps += int(expected)
    assert 10 < inside_steps < 600
    # Also drive straight through a hazard.
    env.set_layout([-1.0, 0.0], 0.0, FAR_GOAL, HAZARD_AT_ORIGIN, FAR_VASE)
    costs, distances = [], []
    for _ in range(150):
        _, _, _, _, info = env.step([1.0, 0.0])
        costs.append(info["cost"])
        distances.append(env.hazard_distances()[0])
    np.testing.assert_array_equal(costs, (np.array(distances) <= 0.2).astype(float))
    assert sum(costs) > 0


def test_hazard_cost_from_obs_batched_numpy_and_torch():
    env = make_point()
    observations = []
    for x in (0.1, 0.3, 2.0):
        observations.append(env.set_layout([x, 0.0], 0.0, FAR_GOAL, HAZARD_AT_ORIGIN, FAR_VASE))
    batch = np.stack(observations).reshape(3, 1, 60)
    np.testing.assert_array_equal(hazard_cost_from_obs(batch), [[1.0], [0.0], [0.0]])
    costs = hazard_cost_from_obs(torch.as_tensor(batch, dtype=torch.float32))
    assert isinstance(costs, torch.Tensor) and costs.dtype == torch.float32
    assert costs.flatten().tolist() == [1.0, 0.0, 0.0]


def test_reward_is_goal_distance_decrease_and_goal_respawns():
    env = make_point()
    goal = np.array([0.9, 0.0])
    env.set_layout([0.0, 0.0], 0.0, goal, FAR_HAZARDS, FAR_VASE)
    previous = env.goal_distance()
    for _ in range(200):
        _, reward, _, _, info = env.step([1.0, 0.0])
        if info["goal_met"]:
            break
        assert reward == pytest.approx(previous - env.goal_distance(), abs=1e-12)
        assert env.goal_distance() > 0.3
        previous = env.goal_distance()
    else:
        pytest.fail("The robot never reached a goal 0.9 m straight ahead")
    distance_to_old_goal = np.linalg.norm(env.robot_xy - goal)
    assert distance_to_old_goal <= 0.3
    assert reward == pytest.approx(previous - distance_to_old_goal + 1.0, abs=1e-12)
    # The goal moved to a free spot inside the placement area, away from the robot.
    assert not np.allclose(env.goal_xy, goal)
    assert np.all(np.abs(env.goal_xy) <= PLACEMENT_EXTENT - GOAL_KEEPOUT)
    assert np.linalg.norm(env.goal_xy - env.robot_xy) >= GOAL_KEEPOUT + ROBOT_KEEPOUT
    # The next reward is measured against the new goal.
    previous = env.goal_distance()
    _, reward, _, _, info = env.step([0.0, 0.0])
    assert not info["goal_met"]
    assert reward == pytest.approx(previous - env.goal_distance(), abs=1e-12)


def test_action_repeat_sums_reward_and_cost():
    env_1, env_5 = SafetyPointGoalEnv(action_repeat=1), SafetyPointGoalEnv(action_repeat=5)
    env_1.reset(seed=3)
    env_5.reset(seed=3)
    rng = np.random.default_rng(1)
    for _ in range(20):
        action = rng.uniform(-1, 1, size=2)
        rewards, costs = [], []
        for _ in range(5):
            obs_1, reward, _, _, info = env_1.step(action)
            rewards.append(reward)
            costs.append(info["cost"])
        obs_5, reward_5, _, _, info_5 = env_5.step(action)
        np.testing.assert_allclose(obs_5, obs_1, atol=1e-12)
        assert reward_5 == pytest.approx(sum(rewards), abs=1e-12)
        assert info_5["cost"] == sum(costs)
    # Standing in a hazard costs 5 per repeated step.
    hazards = HAZARD_AT_ORIGIN
    env_5.set_layout([0.0, 0.0], 0.0, FAR_GOAL, hazards, FAR_VASE)
    assert env_5.step([0.0, 0.0])[4]["cost"] == 5.0


@pytest.mark.parametrize("make", [lambda: gym.make("SafetyPointGoal1AR5-v0"), lambda: SafetyPointGoalEnv(action_repeat=5)])
def test_action_repeat_episode_is_200_steps(make):
    env = make()
    env.reset(seed=0)
    for step in range(1, 201):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated
        assert truncated == (step == 200)


def test_episode_is_1000_raw_steps():
    env = gym.make("SafetyPointGoal1-v0")
    env.reset(seed=0)
    zero = np.zeros(2, dtype=np.float32)
    for step in range(1, 1001):
        _, _, terminated, truncated, _ = env.step(zero)
        assert not terminated
        assert truncated == (step == 1000)
    assert env.unwrapped._raw_steps == 1000


@pytest.mark.parametrize("heading", [0.0, 2.0, -2.5])
def test_forward_action_drives_along_heading(heading):
    env = make_point()
    env.set_layout([0.0, 0.0], heading, FAR_GOAL, FAR_HAZARDS, FAR_VASE)
    for _ in range(100):
        obs, *_ = env.step([1.0, 0.0])
    direction = np.array([np.cos(heading), np.sin(heading)])
    along = env.robot_xy @ direction
    assert 1.0 <= along <= 2.0
    assert abs(direction[0] * env.robot_xy[1] - direction[1] * env.robot_xy[0]) < 1e-6  # no sideways drift
    assert env.robot_heading == pytest.approx(heading, abs=1e-6)
    assert obs[SENSOR_SLICES["velocimeter"]][0] > 0.5  # forward speed in the robot frame
    # Reversing drives backwards.
    env.set_layout([0.0, 0.0], heading, FAR_GOAL, FAR_HAZARDS, FAR_VASE)
    for _ in range(20):
        env.step([-1.0, 0.0])
    assert env.robot_xy @ direction < -0.1


def test_turn_action_rotates_on_the_spot():
    env = make_point()
    env.set_layout([0.3, 0.3], 0.0, FAR_GOAL, FAR_HAZARDS, FAR_VASE)
    for _ in range(50):
        obs, *_ = env.step([0.0, 1.0])
    assert env.robot_heading > 1.0  # counter-clockwise
    assert obs[SENSOR_SLICES["gyro"]][2] > 1.0
    np.testing.assert_allclose(env.robot_xy, [0.3, 0.3], atol=1e-9)
    env.set_layout([0.3, 0.3], 0.0, FAR_GOAL, FAR_HAZARDS, FAR_VASE)
    for _ in range(50):
        env.step([0.0, -1.0])
    assert env.robot_heading < -1.0


def test_robot_pushes_vase():
    env = make_point()
    env.set_layout([0.0, 0.0], 0.0, FAR_GOAL, FAR_HAZARDS, [[0.5, 0.0]])
    for _ in range(100):
        env.step([1.0, 0.0])
    assert env.vases_xy[0, 0] > 0.8
    assert np.all(np.isfinite(env.data.qpos))


def test_set_layout_checks_counts():
    env = make_point()
    with pytest.raises(ValueError, match="8 hazards"):
        env.set_layout([0.0, 0.0], 0.0, FAR_GOAL, FAR_HAZARDS[:3], FAR_VASE)


def test_fewer_hazards_option():
    env = gym.make("SafetyPointGoal1-v0", num_hazards=2, num_vases=0)
    obs, _ = env.reset(seed=0)
    assert env.unwrapped.hazards_xy.shape == (2, 2) and env.unwrapped.vases_xy.shape == (0, 2)
    assert np.all(obs[VASES_LIDAR_SLICE] == 0.0)


# --- velocity-constrained locomotion -------------------------------------------------------------------------


def gait(step: int, action_dim: int) -> np.ndarray:
    """A fixed open-loop action sequence."""
    return np.sin(0.5 * step + np.arange(action_dim)).astype(np.float32)


def test_velocity_default_thresholds():
    expected = {"HalfCheetah": 3.2096, "Hopper": 0.7402, "Walker2d": 2.3415, "Ant": 2.6222, "Humanoid": 1.4149}
    expected["Swimmer"] = 0.2282
    assert expected == VELOCITY_THRESHOLDS
    for robot, threshold in expected.items():
        env = gym.make(f"Safety{robot}Velocity-v1")
        assert env.unwrapped.velocity_threshold == threshold
        env.close()


def test_half_cheetah_velocity_cost_matches_info_velocity():
    plain = gym.make("HalfCheetah-v5")
    for threshold in (None, 0.5):
        kwargs = {} if threshold is None else {"velocity_threshold": threshold}
        env = gym.make("SafetyHalfCheetahVelocity-v1", **kwargs)
        limit = env.unwrapped.velocity_threshold
        obs, _ = env.reset(seed=0)
        plain_obs, _ = plain.reset(seed=0)
        np.testing.assert_array_equal(obs, plain_obs)
        costs = []
        for step in range(150):
            action = gait(step, 6)
            obs, reward, _, _, info = env.step(action)
            plain_obs, plain_reward, *_ = plain.step(action)
            np.testing.assert_array_equal(obs, plain_obs)
            assert reward == plain_reward
            assert info["cost"] == float(info["x_velocity"] > limit)
            costs.append(info["cost"])
        if threshold is not None:
            assert 0.0 < np.mean(costs) < 1.0  # the gait crosses 0.5 m/s both ways


def test_ant_velocity_cost_uses_planar_speed():
    env = gym.make("SafetyAntVelocity-v1", velocity_threshold=1.0)
    env.reset(seed=0)
    costs = []
    for step in range(100):
        _, _, terminated, truncated, info = env.step(gait(step, 8))
        assert info["cost"] == float(np.hypot(info["x_velocity"], info["y_velocity"]) > 1.0)
        costs.append(info["cost"])
        if terminated or truncated:
            break
    assert 0.0 < np.mean(costs) < 1.0


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "fast", True])
def test_bad_velocity_threshold(bad):
    with pytest.raises(ValueError, match="velocity_threshold"):
        gym.make("SafetyHopperVelocity-v1", velocity_threshold=bad)


def test_velocity_threshold_survives_pickling():
    env = gym.make("SafetySwimmerVelocity-v1", velocity_threshold=0.1, ctrl_cost_weight=0.5)
    copy = pickle.loads(pickle.dumps(env.unwrapped))
    assert copy.velocity_threshold == 0.1
    assert copy._ctrl_cost_weight == 0.5


@pytest.mark.parametrize("env_id", POINT_GOAL_ENV_IDS)
def test_point_goal_make_kwargs(env_id):
    env = gym.make(env_id, num_hazards=3)
    assert env.unwrapped.num_hazards == 3
