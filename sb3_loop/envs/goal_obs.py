"""
Observation layout of the ``SafetyPointGoal`` tasks and helpers that read it (numpy only, no MuJoCo import).

The flat observation (60 values, float64) is, in this order:

=========  ==========================  =======================================================
indices    name                        meaning
=========  ==========================  =======================================================
0:3        accelerometer               linear acceleration in the robot frame (z holds +g)
3:6        velocimeter                 linear velocity in the robot frame (x = forward)
6:9        gyro                        angular velocity in the robot frame (z = yaw rate)
9:12       magnetometer                world magnetic field in the robot frame (gives heading)
12:28      goal lidar                  16 bins, ``max(0, 1 - d / 3)`` of the goal centre
28:44      hazards lidar               16 bins, same for hazard centres (max per bin)
44:60      vases lidar                 16 bins, same for vase centres (max per bin)
=========  ==========================  =======================================================

Lidar bin ``k`` covers the egocentric angles ``[k, k + 1) * 2 pi / 16``, counted counter-clockwise from the
robot's heading (bin 0 starts straight ahead, bin 4 starts on the robot's left).

Safety-Gymnasium flattens the same pieces in alphabetical key order instead (accelerometer, goal_lidar, gyro,
hazards_lidar, magnetometer, vases_lidar, velocimeter); the values are the same, only the order differs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LIDAR_NUM_BINS = 16
LIDAR_MAX_DIST = 3.0
HAZARD_SIZE = 0.2

SENSOR_NAMES = ("accelerometer", "velocimeter", "gyro", "magnetometer")
SENSOR_SLICES = {name: slice(3 * i, 3 * i + 3) for i, name in enumerate(SENSOR_NAMES)}
_LIDAR_START = 3 * len(SENSOR_NAMES)
GOAL_LIDAR_SLICE = slice(_LIDAR_START, _LIDAR_START + LIDAR_NUM_BINS)
HAZARDS_LIDAR_SLICE = slice(GOAL_LIDAR_SLICE.stop, GOAL_LIDAR_SLICE.stop + LIDAR_NUM_BINS)
VASES_LIDAR_SLICE = slice(HAZARDS_LIDAR_SLICE.stop, HAZARDS_LIDAR_SLICE.stop + LIDAR_NUM_BINS)
OBS_DIM = VASES_LIDAR_SLICE.stop


def egocentric_polar(points_xy: np.ndarray, robot_xy: np.ndarray, robot_heading: float) -> tuple[np.ndarray, np.ndarray]:
    """
    Distances and angles of points seen from the robot.

    :param points_xy: World positions, shape (n, 2).
    :param robot_xy: Robot position, shape (2,).
    :param robot_heading: Robot yaw in radians (0 = world x axis).
    :return: Distances (n,) and angles in ``[0, 2 pi)`` counter-clockwise from the heading (n,).
    """
    delta = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2) - robot_xy
    cos_h, sin_h = np.cos(robot_heading), np.sin(robot_heading)
    forward = cos_h * delta[:, 0] + sin_h * delta[:, 1]
    left = -sin_h * delta[:, 0] + cos_h * delta[:, 1]
    angles = np.mod(np.arctan2(left, forward), 2 * np.pi)
    return np.hypot(forward, left), angles


def lidar_bin(angles: np.ndarray, num_bins: int = LIDAR_NUM_BINS) -> np.ndarray:
    """
    Lidar bin of egocentric angles.

    :param angles: Angles in ``[0, 2 pi)``.
    :param num_bins: Number of bins splitting the full circle evenly.
    :return: Integer bin indices in ``[0, num_bins)``.
    """
    # np.mod can round a tiny negative angle up to exactly 2 pi
    return np.minimum((np.asarray(angles) / (2 * np.pi / num_bins)).astype(np.int64), num_bins - 1)


def pseudo_lidar(
    points_xy: np.ndarray,
    robot_xy: np.ndarray,
    robot_heading: float,
    num_bins: int = LIDAR_NUM_BINS,
    max_dist: float = LIDAR_MAX_DIST,
) -> np.ndarray:
    """
    Safety-Gymnasium's pseudo-lidar (without aliasing): per bin, the closeness ``max(0, 1 - d / max_dist)``
    of the nearest object whose centre falls in that bin, 0 for empty bins.

    :param points_xy: Object centres, shape (n, 2); n may be 0.
    :param robot_xy: Robot position, shape (2,).
    :param robot_heading: Robot yaw in radians.
    :param num_bins: Number of bins.
    :param max_dist: Distance at which an object stops being seen.
    :return: Lidar readings, shape (num_bins,).
    """
    readings = np.zeros(num_bins)
    if len(points_xy) == 0:
        return readings
    distances, angles = egocentric_polar(points_xy, robot_xy, robot_heading)
    np.maximum.at(readings, lidar_bin(angles, num_bins), np.maximum(0.0, 1.0 - distances / max_dist))
    return readings


def nearest_hazard_distance_from_obs(obs: Any, max_dist: float = LIDAR_MAX_DIST) -> Any:
    """
    Distance to the closest hazard centre read back from the hazards lidar (``max_dist`` or more when none is
    within lidar range). Works on numpy arrays and torch tensors with any leading batch shape.

    :param obs: Flat observations, shape (..., 60).
    :param max_dist: Lidar range the observations were made with.
    :return: Distances, shape (...).
    """
    lidar = obs[..., HAZARDS_LIDAR_SLICE]
    closeness = lidar.amax(dim=-1) if hasattr(lidar, "amax") else np.max(lidar, axis=-1)
    return (1.0 - closeness) * max_dist


def hazard_cost_from_obs(obs: Any, hazard_size: float = HAZARD_SIZE, max_dist: float = LIDAR_MAX_DIST) -> Any:
    """
    The hazard cost (1.0 inside a hazard, else 0.0) computed from observations only, as a deploy-time
    constraint can. Matches ``info["cost_hazards"]`` of a single (non-repeated) step up to float rounding
    at the hazard edge.

    :param obs: Flat observations, shape (..., 60), numpy array or torch tensor.
    :param hazard_size: Hazard radius.
    :param max_dist: Lidar range the observations were made with.
    :return: Costs, shape (...), same array type as ``obs``.
    """
    inside = nearest_hazard_distance_from_obs(obs, max_dist) <= hazard_size
    return inside.to(obs.dtype) if hasattr(inside, "to") else inside.astype(np.float64)
