"""The matched baseline ``sac_as_loop``: stock SAC with exactly the SAC settings LOOP trains with."""

from __future__ import annotations

import pytest
import torch
import yaml
from stable_baselines3 import SAC

from sb3_loop import LOOP, zoo

torch.set_num_threads(1)

SAC_SETTINGS = ("learning_rate", "learning_starts", "batch_size", "tau", "gamma", "gradient_steps", "target_entropy")


def _entry(algo: str, env_id: str) -> dict:
    with open(zoo.hyperparams_path(algo)) as file:
        entry = dict(yaml.safe_load(file)[env_id])
    entry.pop("n_timesteps")
    return entry


def test_sac_as_loop_is_registered_as_stock_sac() -> None:
    from rl_zoo3.utils import ALGOS

    zoo.register_algorithms(["sac_as_loop"])
    assert ALGOS["sac_as_loop"] is SAC
    assert zoo.default_conf_file("sac_as_loop", "HalfCheetah-v5") == str(zoo.hyperparams_path("sac_as_loop"))


@pytest.mark.parametrize("env_id", ["InvertedPendulum-v5", "HalfCheetah-v5", "Hopper-v5"])
def test_sac_as_loop_matches_loops_sac_part(env_id: str) -> None:
    """Built from their YAML entries, SAC and LOOP have the same SAC hyperparameters and networks."""
    with open(zoo.hyperparams_path("loop")) as file:
        loop_budget = yaml.safe_load(file)[env_id]["n_timesteps"]
    with open(zoo.hyperparams_path("sac_as_loop")) as file:
        assert yaml.safe_load(file)[env_id]["n_timesteps"] == loop_budget
    loop = LOOP(env=env_id, device="cpu", **_entry("loop", env_id))
    sac = SAC(env=env_id, device="cpu", **_entry("sac_as_loop", env_id))
    for name in SAC_SETTINGS:
        assert getattr(sac, name) == getattr(loop, name), name
    assert sac.train_freq == loop.train_freq and sac.ent_coef == loop.ent_coef
    assert sac.lr_schedule(1.0) == loop.lr_schedule(1.0) == 1e-3
    assert str(sac.policy.actor.latent_pi) == str(loop.policy.actor.latent_pi)
    assert str(sac.policy.critic.qf0) == str(loop.policy.critic.qf0)
