"""
OfflineLOOP (sb3_loop.offline.OfflineLOOP) and the planner's prior proposals: planning improves a weak
prior on a point-mass task, pessimism, the ensemble fit on the dataset, save/load, determinism,
actor_only, logs, arguments, and training + enjoying through the zoo launcher.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import numpy as np
import pytest
import torch as th
import yaml
from analytic import PointMass as AnalyticPointMass
from analytic import Spy, zero_value
from loop_helpers import recording_logger
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.monitor import Monitor
from test_offline_priors import PointMass, mean_return, pendulum_dataset, rollout_dataset

from sb3_loop import LOOP, OfflineLOOP, zoo
from sb3_loop.dynamics import holdout_mask
from sb3_loop.dynamics.termination import never_terminates
from sb3_loop.offline import CRR, TD3BC, OfflineLOOPCRR, OfflineLOOPTD3BC
from sb3_loop.planning import ARCConfig, ARCPlanner, PessimisticReturn

th.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:rich is experimental")

REPO = Path(__file__).resolve().parents[1]
PRIOR_STEPS = 100  # a weak prior: 100 gradient steps on uniformly random actions
TINY = dict(
    policy_kwargs=dict(net_arch=[32, 32]),
    batch_size=64,
    ensemble_size=3,
    num_elites=2,
    dynamics_hidden_sizes=(32, 32),
    dynamics_batch_size=64,
    dynamics_max_epochs=40,
    termination_fn=never_terminates,
    population_size=64,
    # The point mass's rewards are small (|r| < 1): kappa 0.3 would weight the sequences almost evenly.
    kappa=10.0,
    noise_std=0.6,
)


@pytest.fixture(scope="module")
def dataset():
    """Uniformly random actions: the model sees the whole task, the prior learns little from it."""
    return rollout_dataset(PointMass(), lambda obs, rng: rng.uniform(-1, 1, 1).astype(np.float32), episodes=50, seed=0)


@pytest.fixture(scope="module")
def trained(dataset):
    """One OfflineLOOP per prior, fitted and trained briefly, with every dump recorded."""
    models = {}
    for prior in ("crr", "td3bc"):
        model = OfflineLOOP("MlpPolicy", Monitor(PointMass()), dataset, prior=prior, seed=0, **TINY)
        logger, writer = recording_logger()
        model.set_logger(logger)
        evaluation = EvalCallback(Monitor(PointMass()), eval_freq=50, n_eval_episodes=1, verbose=0)
        model.learn(PRIOR_STEPS, callback=evaluation, log_interval=50, progress_bar=True)
        models[prior] = (model, writer)
    return models


def plan(model, obs: np.ndarray) -> np.ndarray:
    """A deterministic action at an episode start."""
    return model.predict(obs, episode_start=np.ones(len(obs), dtype=bool), deterministic=True)[0]


# -------------------------------------------------------------------------------- the algorithm
@pytest.mark.parametrize("prior", ["crr", "td3bc"])
def test_planning_improves_a_weak_prior(prior, trained):
    model, _ = trained[prior]
    with model.actor_only():
        prior_return = mean_return(lambda obs: model.predict(obs, deterministic=True)[0])
    planner_return = mean_return(lambda obs: model.predict(obs, deterministic=True)[0])
    # About -10 for the prior (it barely moves), -3 for the planner, on the same 20 start states.
    assert planner_return > prior_return + 3.0, (planner_return, prior_return)


def test_offline_loop_builds_the_prior_s_class(trained):
    crr, td3bc = trained["crr"][0], trained["td3bc"][0]
    assert type(crr) is OfflineLOOPCRR and isinstance(crr, CRR) and isinstance(crr, OfflineLOOP) and crr.prior == "crr"
    assert type(td3bc) is OfflineLOOPTD3BC and isinstance(td3bc, TD3BC) and td3bc.prior == "td3bc"
    assert crr.policy.planner.config.proposal == "prior" and crr.policy.planner.config.horizon == 5
    assert isinstance(crr.policy.planner.scorer, PessimisticReturn) and crr.policy.planner.scorer.beta == 1.0
    # the prior's own settings come through prior_kwargs
    model = OfflineLOOP("MlpPolicy", PointMass(), prior_kwargs=dict(beta=2.0, n_action_samples=2), **TINY)
    assert (model.beta, model.n_action_samples) == (2.0, 2)
    assert OfflineLOOP("MlpPolicy", PointMass(), prior="td3bc", prior_kwargs=dict(alpha=1.0), **TINY).alpha == 1.0


def test_ensemble_fitted_once_on_the_dataset_with_a_holdout_by_row(dataset, trained):
    model, _ = trained["crr"]
    assert len(model.dynamics_log) == 1 and model.dynamics_log[0]["num_timesteps"] == 0
    assert model.dynamics_log[0]["num_samples"] == len(dataset)
    model.learn(10, reset_num_timesteps=False, log_interval=None)  # continuing does not refit
    assert len(model.dynamics_log) == 1 and model.num_timesteps == PRIOR_STEPS + 10
    stats = model.train_dynamics()  # a refit on demand: same fixed holdout rows
    assert stats.num_holdout == holdout_mask(np.arange(len(dataset)), 0.2).sum()
    assert stats.epochs <= TINY["dynamics_max_epochs"] and len(model.dynamics_log) == 2


def test_logger_keys(trained):
    for prior, own in (("crr", "train/advantage"), ("td3bc", "train/bc_loss")):
        _, writer = trained[prior]
        keys = writer.keys()
        expected = {"dynamics/holdout_mse", "dynamics/epochs", "dynamics/gradient_steps", "dynamics/train_seconds"}
        expected |= {"planner/ms_per_action", "planner/fallbacks", "train/critic_loss", "train/actor_loss", own}
        assert expected <= keys, expected - keys
        assert "eval/mean_reward" in keys
        assert all(ms > 0 for ms in writer.values("planner/ms_per_action"))


def test_actor_only_acts_as_the_prior(trained):
    obs = np.linspace(-1.0, 1.0, 9, dtype=np.float32)[:, None]
    model, _ = trained["crr"]
    actor = model.policy.actor(th.as_tensor(obs), deterministic=True).detach().numpy()
    with model.actor_only():
        np.testing.assert_allclose(model.predict(obs, deterministic=True)[0], actor, atol=1e-5)
    assert not np.allclose(plan(model, obs), actor, atol=0.05)  # the planner acts otherwise
    model, _ = trained["td3bc"]
    with model.actor_only():
        np.testing.assert_allclose(
            model.predict(obs, deterministic=True)[0], model.actor(th.as_tensor(obs)).detach().numpy(), atol=1e-5
        )


def test_deterministic_predict_is_reproducible_and_survives_save_load(trained, tmp_path):
    obs = np.array([[-0.8], [0.1], [0.6]], dtype=np.float32)
    for prior in ("crr", "td3bc"):
        model, _ = trained[prior]
        th.manual_seed(1)
        first = plan(model, obs)
        th.manual_seed(2)
        np.testing.assert_array_equal(plan(model, obs), first)
        model.save(tmp_path / prior)
        loaded = OfflineLOOP.load(tmp_path / f"{prior}.zip")
        assert type(loaded) is type(model) and loaded.dataset is None and loaded.policy.dynamics.is_trained
        np.testing.assert_array_equal(plan(loaded, obs), first)
        assert type(loaded).load(tmp_path / f"{prior}.zip").prior == prior
        other_seed = OfflineLOOP.load(tmp_path / f"{prior}.zip")
        other_seed.policy.planning_seed += 1
        assert not np.array_equal(plan(other_seed, obs), first)


def test_load_overrides_planner_settings_and_refuses_other_models(trained, tmp_path):
    model, _ = trained["crr"]
    model.save(tmp_path / "model")
    loaded = OfflineLOOP.load(tmp_path / "model", horizon=3, noise_std=0.2, beta_pessimism=3.0)
    assert loaded.policy.planner.config.horizon == 3 and loaded.policy.planner.config.noise_std == 0.2
    assert loaded.policy.planner.scorer.beta == 3.0 and loaded.arc_kwargs["kappa"] == TINY["kappa"]
    with pytest.raises(ValueError, match="does not hold a LOOP model"):
        LOOP.load(tmp_path / "model")
    with pytest.raises(ValueError, match="does not hold a OfflineLOOPTD3BC model"):
        OfflineLOOPTD3BC.load(tmp_path / "model")
    LOOP("MlpPolicy", "Pendulum-v1", ensemble_size=2, num_elites=1, dynamics_hidden_sizes=[8]).save(tmp_path / "loop")
    with pytest.raises(ValueError, match="does not hold a OfflineLOOP model"):
        OfflineLOOP.load(tmp_path / "loop")


def test_configure_planner_changes_settings_not_weights(dataset):
    model = OfflineLOOP("MlpPolicy", PointMass(), dataset, seed=0, **TINY)
    weights = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.configure_planner(beta_pessimism=3.0, noise_std=0.1, smoothing=0.5)
    assert model.policy.planner.scorer.beta == 3.0 and model.beta_pessimism == 3.0
    assert model.policy.planner.config.smoothing == 0.5 and model.arc_kwargs["noise_std"] == 0.1
    assert all(th.equal(weights[k], v) for k, v in model.policy.state_dict().items())
    with pytest.raises(ValueError, match="beta_pessimism=-1"):
        model.configure_planner(beta_pessimism=-1.0)
    assert model.beta_pessimism == 3.0
    with pytest.raises(ValueError, match="not planner arguments"):
        model.configure_planner(var_momentum=0.5)


def test_verbose_fit_prints_each_epoch(dataset, capsys):
    model = OfflineLOOP("MlpPolicy", PointMass(), dataset, seed=0, verbose=1, **{**TINY, "dynamics_max_epochs": 2})
    capsys.readouterr()
    stats = model.train_dynamics()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("dynamics fit")]
    assert stats.epochs == 2 and len(lines) == 2
    assert f"on {len(dataset)} transitions: epoch 2" in lines[-1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(prior="bc"), r"prior='bc' is not one of 'crr', 'td3bc'"),
        (dict(beta_pessimism=-1.0), r"beta_pessimism=-1\.0"),
        (dict(noise_std=-0.1), r"noise_std=-0\.1"),
        (dict(smoothing=1.5), r"smoothing=1\.5"),
        (dict(planning_iterations=0), r"planning_iterations=0"),
        (dict(horizon=0), r"horizon=0"),
        (dict(dynamics_max_epochs=0), r"dynamics_max_epochs=0"),
        (dict(num_elites=9), r"num_elites"),
        (dict(learning_starts=10), r"learning_starts=10 does not apply"),
        (dict(prior_kwargs=[1]), r"prior_kwargs=\[1\] must be a dict"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(kwargs, match, dataset):
    with pytest.raises(ValueError, match=match):
        OfflineLOOP("MlpPolicy", PointMass(), dataset, **{**TINY, **kwargs})


def test_a_concrete_class_refuses_another_prior():
    with pytest.raises(ValueError, match="prior='td3bc' does not match OfflineLOOPCRR"):
        OfflineLOOPCRR("MlpPolicy", PointMass(), prior="td3bc")


# ----------------------------------------------------------------------- prior proposals (ARC)
def constant_actor(value: float):
    return lambda obs: th.full((obs.shape[0], 1), value)


def prior_planner(actor_value: float, **config) -> ARCPlanner:
    cfg = ARCConfig(**{"population_size": 16, "num_particles": 1, "iterations": 1, "mixture_coef": 0.0, **config})
    return ARCPlanner(AnalyticPointMass(goal=1.0), constant_actor(actor_value), zero_value, [-1.0], [1.0], cfg)


def test_prior_proposals_without_noise_are_the_prior_s_rollouts():
    planner = prior_planner(0.3, proposal="prior", noise_std=0.0, horizon=4)
    proposals = Spy(planner, "_propose_around_prior")
    action = planner.plan(th.tensor([[-2.0]]), deterministic=True, generator=th.Generator().manual_seed(0))
    candidates = proposals.calls[0][1]
    assert candidates.shape == (1, 16, 4, 1) and th.all(candidates == 0.3)
    assert action.item() == pytest.approx(0.3)


def test_noisy_prior_proposals_let_the_planner_improve_on_the_prior():
    planner = prior_planner(-0.5, proposal="prior", noise_std=0.5, horizon=3, kappa=20.0, population_size=64)
    obs = th.tensor([[-2.0], [3.0]])  # goal 1: the prior (-0.5) is right only for the second state
    action = planner.plan(obs, deterministic=True, generator=th.Generator().manual_seed(0))
    assert action[0].item() > -0.2 and action[1].item() < -0.5


@pytest.mark.parametrize("noise", [0.01, 0.05])
def test_the_noise_bounds_how_far_the_plan_moves_from_the_prior(noise):
    # Every proposal starts with the prior's action, so the planned first action is the prior's plus a
    # weighted mean of the noise: even a greedy kappa only moves it by a few noise_std.
    planner = prior_planner(-0.5, proposal="prior", noise_std=noise, horizon=3, kappa=1e4, population_size=64)
    action = planner.plan(th.tensor([[-2.0]]), deterministic=True, generator=th.Generator().manual_seed(0)).item()
    assert -0.5 < action <= -0.5 + 5 * noise  # towards the goal (1.0), but within 5 sigma of the prior


def test_smoothing_pulls_towards_the_previous_plan_but_not_at_an_episode_start():
    planner = prior_planner(0.3, proposal="prior", noise_std=0.0, smoothing=0.5, horizon=3)
    proposals = Spy(planner, "_propose_around_prior")
    obs = th.tensor([[-2.0], [0.0]])
    planner.plan(obs, deterministic=True, generator=th.Generator().manual_seed(0))
    assert th.all(proposals.calls[-1][1] == 0.3)  # first step: nothing to smooth with
    planner._mean = th.full_like(planner._mean, -0.7)  # a previous plan of -0.7
    planner.reset(np.array([False, True]))  # the second env starts an episode
    planner.plan(obs, deterministic=True, generator=th.Generator().manual_seed(0))
    candidates = proposals.calls[-1][1]
    assert th.allclose(candidates[0], th.tensor(0.5 * 0.3 + 0.5 * -0.7)) and th.all(candidates[1] == 0.3)


def test_pessimism_prefers_the_sequence_the_members_agree_on():
    # Two sequences, four particle returns each: A has the higher mean but the members disagree on it.
    returns = th.tensor([[[3.0, -1.0, 3.0, -1.0], [0.8, 0.8, 0.8, 0.8]]])  # A: mean 1, std 2; B: mean 0.8, std 0
    scores = {beta: PessimisticReturn(beta)(returns) for beta in (0.0, 0.05, 1.0, 3.0)}
    th.testing.assert_close(scores[0.0], th.tensor([[1.0, 0.8]]))
    th.testing.assert_close(scores[1.0], th.tensor([[-1.0, 0.8]]))
    th.testing.assert_close(scores[3.0], th.tensor([[-5.0, 0.8]]))
    assert scores[0.0].argmax() == 0 and scores[0.05].argmax() == 0 and scores[1.0].argmax() == 1
    weight_of_b = [th.softmax(0.3 * scores[beta], dim=1)[0, 1].item() for beta in (0.0, 1.0, 3.0)]
    assert weight_of_b[0] < 0.5 < weight_of_b[1] < weight_of_b[2]


# ------------------------------------------------------------------------------- zoo launcher
def test_zoo_trains_offline_loop_on_a_dataset_file_then_enjoys_it(tmp_path, monkeypatch):
    path = pendulum_dataset(tmp_path / "pendulum.hdf5")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    tiny = [
        "policy_kwargs:dict(net_arch=[16])", "batch_size:32", "ensemble_size:2", "num_elites:1",
        "dynamics_hidden_sizes:[16]", "dynamics_max_epochs:3", "population_size:8", "num_particles:2",
    ]  # fmt: skip
    try:
        zoo.main([
            "train", "--algo", "offline_loop", "--env", "Pendulum-v1", "-n", "40", "--eval-freq", "20",
            "--eval-episodes", "1", "-f", "logs", "--seed", "0", "-params", f"dataset:{str(path)!r}", *tiny,
        ])  # fmt: skip
        run = tmp_path / "logs" / "offline_loop" / "Pendulum-v1_1"
        assert list(np.load(run / "evaluations.npz")["timesteps"]) == [20, 40]
        model = OfflineLOOP.load(run / "Pendulum-v1.zip")
        assert type(model) is OfflineLOOPCRR and model.num_timesteps == 40 and model.policy.dynamics.is_trained
        assert model.arc_kwargs["horizon"] == 5 and model.termination_fn == "Pendulum-v1"
        zoo.main(["enjoy", "--algo", "offline_loop", "--env", "Pendulum-v1", "-f", "logs", "--no-render", "-n", "20"])
    finally:
        zoo.register_algorithms()


def test_packaged_hyperparameters_and_sampler():
    packaged = REPO / "sb3_loop" / "hyperparams" / "offline_loop.yml"
    assert packaged.read_bytes() == (REPO / "hyperparams" / "offline_loop.yml").read_bytes()
    arguments = set(inspect.signature(OfflineLOOP.__init__).parameters)
    entries = yaml.safe_load(packaged.read_text())
    assert {"Pendulum-v1", "Hopper-v5", "HalfCheetah-v5", "Walker2d-v5"} <= set(entries)
    for env_id, entry in entries.items():
        assert entry["dataset"] == f"{env_id}-medium" and entry["policy"] == "MlpPolicy" and entry["n_timesteps"] > 0
        assert set(entry) - {"n_timesteps"} <= arguments, env_id
        entry = {k: v for k, v in entry.items() if k not in ("n_timesteps", "policy", "dataset", "policy_kwargs")}
        OfflineLOOP("MlpPolicy", None, **entry, _init_setup_model=False)  # every value is accepted
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        params = zoo.sample_offline_loop_params(trial, n_actions=1, n_envs=1, additional_args={})
        assert set(params) == {"noise_std", "beta_pessimism", "kappa", "horizon"} <= arguments
        OfflineLOOP("MlpPolicy", None, **params, _init_setup_model=False)
        study.tell(trial, 0.0)
    zoo.register_algorithms()
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER
    from rl_zoo3.utils import ALGOS

    assert ALGOS["offline_loop"] is OfflineLOOP and HYPERPARAMS_SAMPLER["offline_loop"] is zoo.sample_offline_loop_params
