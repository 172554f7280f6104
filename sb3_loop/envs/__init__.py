"""
Safety tasks (Safety-Gymnasium definitions rebuilt for Gymnasium 1.x), registered on ``import sb3_loop``.

Every env reports a per-step cost in ``info["cost"]``:

- ``SafetyPointGoal1-v0``: Point robot Goal task, level 1 (1000 steps of 0.02 s).
- ``SafetyPointGoal1AR5-v0``: the same with ``action_repeat=5`` as in the SafeLOOP paper and OmniSafe
  (200 env steps; reward and cost summed over the 5 repeats).
- ``Safety{HalfCheetah,Hopper,Walker2d,Ant,Humanoid,Swimmer}Velocity-v1``: v5 locomotion with a speed limit
  (``velocity_threshold=`` overrides the default).

Module contents are imported lazily by the entry points, so registering costs no MuJoCo import.
"""

from __future__ import annotations

import gymnasium as gym

from sb3_loop.envs.goal_obs import (
    GOAL_LIDAR_SLICE,
    HAZARD_SIZE,
    HAZARDS_LIDAR_SLICE,
    LIDAR_MAX_DIST,
    LIDAR_NUM_BINS,
    OBS_DIM,
    SENSOR_SLICES,
    VASES_LIDAR_SLICE,
    hazard_cost_from_obs,
    nearest_hazard_distance_from_obs,
    pseudo_lidar,
)

POINT_GOAL_ENV_IDS = ("SafetyPointGoal1-v0", "SafetyPointGoal1AR5-v0")
VELOCITY_ENV_IDS = tuple(
    f"Safety{robot}Velocity-v1" for robot in ("HalfCheetah", "Hopper", "Walker2d", "Ant", "Humanoid", "Swimmer")
)
SAFETY_ENV_IDS = POINT_GOAL_ENV_IDS + VELOCITY_ENV_IDS


def register_safety_envs() -> None:
    """Register the safety env ids with Gymnasium (idempotent)."""
    if SAFETY_ENV_IDS[0] in gym.registry:
        return
    point_goal = "sb3_loop.envs.point_goal:SafetyPointGoalEnv"
    gym.register("SafetyPointGoal1-v0", entry_point=point_goal, max_episode_steps=1000)
    gym.register("SafetyPointGoal1AR5-v0", entry_point=point_goal, max_episode_steps=200, kwargs={"action_repeat": 5})
    for env_id in VELOCITY_ENV_IDS:
        class_name = env_id.removesuffix("-v1") + "Env"
        gym.register(env_id, entry_point=f"sb3_loop.envs.velocity:{class_name}", max_episode_steps=1000)


register_safety_envs()

__all__ = [
    "GOAL_LIDAR_SLICE",
    "HAZARDS_LIDAR_SLICE",
    "HAZARD_SIZE",
    "LIDAR_MAX_DIST",
    "LIDAR_NUM_BINS",
    "OBS_DIM",
    "POINT_GOAL_ENV_IDS",
    "SAFETY_ENV_IDS",
    "SENSOR_SLICES",
    "VASES_LIDAR_SLICE",
    "VELOCITY_ENV_IDS",
    "hazard_cost_from_obs",
    "nearest_hazard_distance_from_obs",
    "pseudo_lidar",
    "register_safety_envs",
]
