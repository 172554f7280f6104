"""The fall cost of ``benchmarks/deploy_thresholds.py``: a predicted fall costs extra, a healthy step does not."""

from __future__ import annotations

import pytest
import torch

HOPPER_OBS_DIM = 11
VELOCITY_INDEX = 5  # qvel[0] in Hopper-v5's observation


@pytest.fixture
def deploy_thresholds(import_benchmark):
    return import_benchmark("deploy_thresholds")


def hopper_obs(height: float, speed: float) -> torch.Tensor:
    obs = torch.zeros(HOPPER_OBS_DIM)
    obs[0] = height  # qpos[1], the torso height; angles 0
    obs[VELOCITY_INDEX] = speed
    return obs


def test_fall_cost_is_added_only_to_predicted_falls(deploy_thresholds) -> None:
    task = "SafetyHopperVelocity-v1"
    velocity_cost = deploy_thresholds.deploy_cost_fn(task)
    cost = deploy_thresholds.with_fall_cost(velocity_cost, task, 2.5)
    next_obs = torch.stack([hopper_obs(1.25, 0.1), hopper_obs(1.25, 2.0), hopper_obs(0.3, 0.1), hopper_obs(0.3, 2.0)])
    obs, action = torch.zeros_like(next_obs), torch.zeros(4, 3)
    assert torch.equal(velocity_cost(obs, action, next_obs), torch.tensor([0.0, 1.0, 0.0, 1.0]))
    assert torch.equal(cost(obs, action, next_obs), torch.tensor([0.0, 1.0, 2.5, 3.5]))


def test_zero_fall_cost_keeps_the_cost_function(deploy_thresholds) -> None:
    velocity_cost = deploy_thresholds.deploy_cost_fn("SafetyHopperVelocity-v1")
    assert deploy_thresholds.with_fall_cost(velocity_cost, "SafetyHopperVelocity-v1", 0.0) is velocity_cost
