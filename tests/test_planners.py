"""
CEM, MPPI and random shooting (and ARC without the actor): direction, bounds, updates, reproducibility,
batching, scorers, validation; LOOP(planner=...) learn / save / load / predict, switching, actor divergence.
"""

from __future__ import annotations

import io
import json
import math
import zipfile

import numpy as np
import pytest
import torch
from analytic import ActionCostModel, NaNModel, PointMass, Spy, gen, tiny_ensemble, zero_actor, zero_value
from hypothesis import given, settings
from hypothesis import strategies as st
from loop_helpers import recording_logger, tiny_kwargs

from sb3_loop import LOOP
from sb3_loop.dynamics.ensemble import ProbabilisticEnsemble, StepPrediction
from sb3_loop.planning import (
    PLANNER_NAMES,
    ARCConfig,
    ARCPlanner,
    CEMConfig,
    CEMPlanner,
    ConstrainedReturn,
    MeanReturn,
    MPPIConfig,
    MPPIPlanner,
    PessimisticReturn,
    RandomShootingPlanner,
    ShootingConfig,
    build_planner,
    planner_config,
)
from sb3_loop.planning.sampling import PlannerRandom, elite_weights

torch.set_num_threads(1)

NEW = ("cem", "mppi", "shooting")
MODES = ("paper", "random_elite")
SMALL = {"population_size": 32, "num_particles": 2, "iterations": 3}
PLANNER_CLASSES = {"arc": ARCPlanner, "cem": CEMPlanner, "mppi": MPPIPlanner, "shooting": RandomShootingPlanner}


def make(name: str, model=None, actor=None, value_fn=zero_value, low=-1.0, high=1.0, scorer=None, **config):
    """A planner by name on the point mass (ARC without the actor: ``mixture_coef=0``)."""
    model = model or PointMass(goal=1.0, dt=0.5)
    actor = actor or zero_actor(model.action_dim)
    settings = {**SMALL, "mixture_coef": 0.0, **config}
    bounds = ([low] * model.action_dim, [high] * model.action_dim)
    return build_planner(name, model, actor, value_fn, *bounds, settings=settings, scorer=scorer)


# ------------------------------------------------------------------------------------------ direction
@pytest.mark.parametrize("name", [*NEW, "arc"])
@pytest.mark.parametrize("propagation", MODES)
@pytest.mark.parametrize("deterministic", [True, False])
def test_first_action_moves_toward_goal(name: str, propagation: str, deterministic: bool) -> None:
    planner = make(name, propagation=propagation, horizon=3)
    assert isinstance(planner, PLANNER_CLASSES[name])
    obs = torch.tensor([[-2.0], [-0.5], [2.5], [4.0]])  # goal = 1
    for seed in range(3):
        planner.reset()
        action = planner.plan(obs, deterministic=deterministic, generator=gen(seed))
        assert action.shape == (4, 1)
        assert (action[:2] > 0).all(), action
        assert (action[2:] < 0).all(), action
    if deterministic:
        planner.reset()
        action = planner.plan(obs, deterministic=True, generator=gen(0))
        assert action[0, 0] > 0.6 and action[3, 0] < -0.6, action  # far from the goal: towards the bound


# --------------------------------------------------------------------------------------------- bounds


@settings(max_examples=30, deadline=None)
@given(
    data=st.data(),
    name=st.sampled_from(NEW),
    action_dim=st.integers(1, 3),
    batch=st.integers(1, 4),
    horizon=st.integers(1, 4),
    propagation=st.sampled_from(MODES),
    deterministic=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_actions_within_bounds(data, name, action_dim, batch, horizon, propagation, deterministic, seed) -> None:
    floats = st.floats(-3.0, 3.0, allow_nan=False, width=32)
    low = np.array(data.draw(st.lists(floats, min_size=action_dim, max_size=action_dim)), dtype=np.float32)
    width = np.array(
        data.draw(st.lists(st.floats(0.0625, 4.0, width=32), min_size=action_dim, max_size=action_dim)), dtype=np.float32
    )
    high = low + width
    obs = torch.tensor(data.draw(st.lists(floats, min_size=batch, max_size=batch)))[:, None]
    target = torch.tensor(data.draw(st.lists(floats, min_size=action_dim, max_size=action_dim)))
    model = ActionCostModel(target, goal=data.draw(floats), action_dim=action_dim)
    settings = {"horizon": horizon, "population_size": 8, "num_particles": 2, "iterations": 2, "propagation": propagation}
    planner = build_planner(name, model, zero_actor(action_dim), lambda o, a: -(a**2).sum(-1), low, high, settings)
    scores = Spy(planner, "_score")
    low_t, high_t = torch.from_numpy(low), torch.from_numpy(high)
    for _ in range(2):  # the second call starts from the warm start
        action = planner.plan(obs, deterministic=deterministic, generator=gen(seed))
        assert action.shape == (batch, action_dim)
        assert torch.isfinite(action).all()
        assert (action >= low_t).all() and (action <= high_t).all(), (action, low, high)
        assert scores.calls
        for (_, candidates, _), _ in scores.calls:
            assert (candidates >= low_t).all() and (candidates <= high_t).all()
        scores.calls.clear()
    assert planner.num_fallbacks == 0


# -------------------------------------------------------------------------------------------- updates
def test_cem_refits_to_the_elites_with_momentum() -> None:
    planner = make("cem", horizon=3, iterations=3, low=-2.0, high=2.0, elite_fraction=0.25, momentum=0.3)
    assert planner.config.num_elites == 8
    proposals, scores = Spy(planner, "_propose"), Spy(planner, "_score")
    planner.plan(torch.tensor([[-2.0], [3.0]]), deterministic=True, generator=gen(0))
    means = [call[0][0] for call in proposals.calls]
    variances = [call[0][1] for call in proposals.calls]
    torch.testing.assert_close(variances[0], torch.full((2, 3, 1), 4.0**2 / 16))
    for k in range(2):
        (_, candidates, _), score = scores.calls[k]
        elites = torch.gather(candidates, 1, score.topk(8, dim=1).indices[:, :, None, None].expand(-1, -1, 3, 1))
        elite_mean, elite_var = elites.mean(dim=1), elites.var(dim=1, unbiased=False)
        torch.testing.assert_close(means[k + 1], 0.3 * means[k] + 0.7 * elite_mean)
        torch.testing.assert_close(variances[k + 1], 0.3 * variances[k] + 0.7 * elite_var)
    assert len(proposals.calls) == 3 and proposals.calls[0][1].shape == (2, 32, 3, 1)


def test_mppi_weights_elites_by_softmax_and_clamps_std() -> None:
    planner = make("mppi", horizon=3, iterations=3, low=-2.0, high=2.0, temperature=2.0, min_std=0.3, max_std=1.5)
    assert planner.config.num_elites == 4  # 0.125 of 32
    proposals, scores = Spy(planner, "_propose"), Spy(planner, "_score")
    planner.plan(torch.tensor([[-2.0], [3.0]]), deterministic=True, generator=gen(0))
    means = [call[0][0] for call in proposals.calls]
    variances = [call[0][1] for call in proposals.calls]
    half_width = 2.0
    torch.testing.assert_close(variances[0], torch.full((2, 3, 1), (1.5 * half_width) ** 2))  # starts at max_std
    for k in range(2):
        (_, candidates, _), score = scores.calls[k]
        top = score.topk(4, dim=1)
        weights = torch.softmax(2.0 * top.values, dim=1)
        elites = torch.gather(candidates, 1, top.indices[:, :, None, None].expand(-1, -1, 3, 1))
        mean = torch.einsum("be,beha->bha", weights, elites)
        std = torch.einsum("be,beha->bha", weights, (elites - mean[:, None]) ** 2).sqrt()
        torch.testing.assert_close(means[k + 1], mean)  # no momentum
        torch.testing.assert_close(variances[k + 1], std.clamp(0.3 * half_width, 1.5 * half_width) ** 2)
    assert (variances[-1] >= (0.3 * half_width) ** 2 - 1e-6).all()


def test_mppi_samples_within_its_std_bounds_whatever_the_variance() -> None:
    """A feasibility scorer's widening (a huge variance) still samples at most max_std (x the half-width)."""
    planner = make("mppi", low=-10.0, high=10.0, population_size=4000, min_std=0.01, max_std=0.5)
    rng = PlannerRandom(gen(0), 1, torch.device("cpu"))
    low, high = torch.tensor([-10.0]), torch.tensor([10.0])
    mean = torch.zeros(1, 3, 1)
    wide = planner._propose(mean, torch.full_like(mean, 1e4), rng, low, high)
    narrow = planner._propose(mean, torch.full_like(mean, 1e-12), rng, low, high)
    assert 4.7 < wide.std() < 5.3  # 0.5 x 10, not 100
    assert 0.09 < narrow.std() < 0.11  # 0.01 x 10


@pytest.mark.parametrize("deterministic", [True, False])
def test_shooting_acts_the_best_of_uniform_sequences(deterministic: bool) -> None:
    planner = make("shooting", horizon=2, population_size=20, iterations=3, low=-1.0, high=3.0)
    assert planner.config.num_sequences == 60
    scores = Spy(planner, "_score")
    action = planner.plan(torch.tensor([[-2.0], [0.5], [4.0]]), deterministic=deterministic, generator=gen(0))
    assert len(scores.calls) == 1  # no iterations: one population of N x iterations
    (_, candidates, _), score = scores.calls[0]
    assert candidates.shape == (3, 60, 2, 1)
    assert (candidates >= -1.0).all() and (candidates <= 3.0).all() and candidates.std() > 0.8  # uniform, wide
    best = candidates[torch.arange(3), score.argmax(dim=1), 0]
    torch.testing.assert_close(action, best)


def test_elite_weights() -> None:
    scores = torch.tensor([[1.0, 3.0, 2.0, -math.inf], [-math.inf, -math.inf, 5.0, 0.0], [-math.inf] * 4])
    uniform = elite_weights(scores, 3, temperature=0.0)
    torch.testing.assert_close(uniform[0], torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0]))
    torch.testing.assert_close(uniform[1], torch.tensor([0.0, 0.0, 0.5, 0.5]))  # -inf elites get nothing
    assert torch.isnan(uniform[2]).all()  # nothing finite: the planner falls back to the actor
    soft = elite_weights(scores, 2, temperature=1.0)
    expected = torch.softmax(torch.tensor([3.0, 2.0]), dim=0)
    torch.testing.assert_close(soft[0], torch.tensor([0.0, expected[0], expected[1], 0.0]))
    best = elite_weights(scores[:2], 1, temperature=0.0)
    assert best.tolist() == [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]


# ----------------------------------------------------------------------------------- reproducibility


def ensemble_planner(name: str, model: ProbabilisticEnsemble, propagation: str):
    weight = torch.linspace(-1.0, 1.0, model.obs_dim * model.action_dim).reshape(model.obs_dim, model.action_dim)

    def actor(obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(obs @ weight)

    def value_fn(obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return obs.sum(-1) - (action**2).sum(-1)

    settings = {**SMALL, "horizon": 3, "propagation": propagation}
    return build_planner(name, model, actor, value_fn, [-1.0] * model.action_dim, [1.0] * model.action_dim, settings)


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("propagation", MODES)
@pytest.mark.parametrize("deterministic", [True, False])
def test_same_seed_same_actions(name: str, propagation: str, deterministic: bool) -> None:
    model = tiny_ensemble()
    obs = torch.randn(3, 3, generator=gen(0))

    def plan(seed: int) -> torch.Tensor:
        planner = ensemble_planner(name, model, propagation)
        first = planner.plan(obs, deterministic, generator=gen(seed))
        return torch.cat((first, planner.plan(obs, deterministic, generator=gen(seed + 1))))  # with the warm start

    assert torch.equal(plan(42), plan(42))
    assert not torch.equal(plan(42), plan(43))


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("propagation", MODES)
@pytest.mark.parametrize("deterministic", [True, False])
def test_batch_equals_single_plans_with_per_env_generators(name: str, propagation: str, deterministic: bool) -> None:
    model = tiny_ensemble()
    obs = torch.randn(3, 3, generator=gen(1))
    seeds = [11, 22, 33]
    batched = ensemble_planner(name, model, propagation).plan(obs, deterministic, generator=[gen(s) for s in seeds])
    singles = torch.stack(
        [ensemble_planner(name, model, propagation).plan(obs[i], deterministic, generator=gen(s)) for i, s in enumerate(seeds)]
    )
    assert batched.shape == singles.shape == (3, 2)
    torch.testing.assert_close(batched, singles, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(batched[0], batched[1])


@pytest.mark.parametrize("name", NEW)
def test_reset_clears_the_warm_start_of_chosen_envs(name: str) -> None:
    planner = make(name, horizon=3)
    obs = torch.tensor([[-3.0], [5.0]])
    planner.plan(obs, generator=gen(0))
    before = planner._mean.clone()
    assert not torch.allclose(before, torch.zeros_like(before))
    planner.reset(np.array([True, False]))
    assert torch.equal(planner._mean[0], torch.zeros(3, 1)) and torch.equal(planner._mean[1], before[1])


# ---------------------------------------------------------------------------------------------- scorers
class SpreadModel(PointMass):
    """Expected reward +a with spread 2|a| across particles."""

    def step_members(self, obs, action, noise):
        next_obs, _, _ = super().step_members(obs, action, noise)
        a = action[..., 0]
        return StepPrediction(next_obs, a + 2.0 * a.abs() * noise[..., 0], None)


@pytest.mark.parametrize("name", NEW)
def test_pessimistic_scorer_avoids_uncertain_sequences(name: str) -> None:
    def plan(scorer) -> torch.Tensor:
        planner = make(name, model=SpreadModel(), scorer=scorer, horizon=2, num_particles=32, iterations=3)
        return planner.plan(torch.zeros(2, 1), deterministic=True, generator=gen(0))

    assert (plan(MeanReturn()) > 0.3).all()
    assert (plan(PessimisticReturn(2.0)).abs() < 0.25).all()


class CostlyModel(PointMass):
    """Reward ``a`` (pulls to +1), step cost ``(a - 0.3)^2``."""

    def step_members(self, obs, action, noise):
        a = action[..., 0]
        return StepPrediction(obs.clone(), a, (a - 0.3) ** 2)


@pytest.mark.parametrize("name", NEW)
def test_constrained_scorer_keeps_the_cost_budget(name: str) -> None:
    """H=2: one predicted step, feasible when |a_0 - 0.3| <= 0.1, so the best feasible a_0 is 0.4."""

    def plan(scorer) -> torch.Tensor:
        planner = make(name, model=CostlyModel(), scorer=scorer, horizon=2, population_size=64)
        return planner.plan(torch.zeros(2, 1), deterministic=True, generator=gen(0))

    assert (plan(MeanReturn()) > 0.7).all()
    constrained = plan(ConstrainedReturn(cost_threshold=0.01, min_feasible=2, max_iterations=10))
    assert ((constrained > 0.25) & (constrained <= 0.4 + 1e-5)).all(), constrained


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("deterministic", [True, False])
def test_non_finite_predictions_fall_back_to_actor(name: str, deterministic: bool) -> None:
    actor = lambda o: torch.full((o.shape[0], 1), 0.37)  # noqa: E731
    planner = make(name, model=NaNModel("reward"), actor=actor)
    action = planner.plan(torch.tensor([[-1.0], [6.0]]), deterministic=deterministic, generator=gen(0))
    assert action[1, 0] == pytest.approx(0.37) and action[0, 0] > 0
    assert planner.num_fallbacks == 1 and torch.isfinite(planner._mean).all()


# ----------------------------------------------------------------------------------------- settings
def test_defaults_are_the_stated_constants() -> None:
    cem, mppi, shooting = CEMConfig(), MPPIConfig(), ShootingConfig()
    assert (cem.population_size, cem.num_elites, cem.iterations, cem.momentum) == (100, 10, 5, 0.1)
    assert (cem.init_var_divisor, cem.truncation) == (16.0, 2.0)
    assert (mppi.population_size, mppi.num_elites, mppi.iterations, mppi.temperature) == (100, 13, 6, 0.5)
    assert (mppi.min_std, mppi.max_std) == (0.05, 2.0)
    assert MPPIConfig(population_size=512).num_elites == 64  # TD-MPC2's 64 of 512
    assert CEMConfig(population_size=500).num_elites == 50  # PETS's 50 of 500
    assert shooting.num_sequences == 100 and ShootingConfig(population_size=500, iterations=5).num_sequences == 2500
    for config in (cem, mppi, shooting):
        assert (config.horizon, config.num_particles, config.propagation) == (3, 4, "random_elite")


def test_planner_config_reads_the_shared_settings() -> None:
    arc = ARCConfig(horizon=5, population_size=40, num_particles=3, iterations=2, kappa=7.0, propagation="paper")
    cem = planner_config("cem", arc)
    assert isinstance(cem, CEMConfig)
    assert (cem.horizon, cem.population_size, cem.num_particles, cem.iterations, cem.propagation) == (5, 40, 3, 2, "paper")
    assert cem.num_elites == 4 and cem.momentum == 0.1
    mppi = planner_config("mppi", vars(arc))
    assert (mppi.iterations, mppi.temperature) == (2, 0.5)  # LOOP's iterations, MPPI's own temperature
    assert planner_config("arc", arc) is arc
    assert planner_config("shooting", {}).population_size == 100


@pytest.mark.parametrize(
    "config_class, name, value",
    [
        (CEMConfig, "elite_fraction", 0.0),
        (CEMConfig, "elite_fraction", 1.5),
        (CEMConfig, "momentum", -0.1),
        (CEMConfig, "momentum", 1.5),
        (CEMConfig, "truncation", 0.0),
        (CEMConfig, "horizon", 0),
        (MPPIConfig, "temperature", 0.0),
        (MPPIConfig, "temperature", math.inf),
        (MPPIConfig, "min_std", -0.1),
        (MPPIConfig, "max_std", math.nan),
        (MPPIConfig, "elite_fraction", 0.0),
        (MPPIConfig, "iterations", 0),
        (ShootingConfig, "population_size", 0),
        (ShootingConfig, "num_particles", 1.5),
        (ShootingConfig, "propagation", "bogus"),
    ],
)
def test_invalid_settings(config_class, name: str, value) -> None:
    with pytest.raises(ValueError) as info:
        config_class(**{name: value})
    assert name in str(info.value) and str(value) in str(info.value)


def test_invalid_planner_arguments() -> None:
    with pytest.raises(ValueError, match=r"min_std=0\.5 must be <= max_std=0\.1"):
        MPPIConfig(min_std=0.5, max_std=0.1)
    with pytest.raises(ValueError, match="CEMPlanner takes a CEMConfig, got a ARCConfig"):
        CEMPlanner(PointMass(), zero_actor(1), zero_value, [-1.0], [1.0], ARCConfig())
    with pytest.raises(ValueError, match="planner='bogus' must be one of"):
        build_planner("bogus", PointMass(), zero_actor(1), zero_value, [-1.0], [1.0])
    with pytest.raises(ValueError, match="action"):
        MPPIPlanner(PointMass(), zero_actor(1), zero_value, [1.0], [-1.0])
    with pytest.raises(ValueError, match="features"):
        make("cem").plan(torch.zeros(2, 3))


# --------------------------------------------------------------------------------------------- LOOP
@pytest.fixture(scope="module")
def arc_model() -> LOOP:
    model = LOOP("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs())
    model.learn(250)
    return model


def pendulum_obs(count: int = 3) -> np.ndarray:
    return np.stack([np.array([np.cos(t), np.sin(t), 0.5 * t], dtype=np.float32) for t in np.linspace(-2.5, 2.5, count)])


@pytest.mark.parametrize("name", NEW)
def test_loop_learns_saves_loads_and_predicts_with_each_planner(name: str, tmp_path) -> None:
    model = LOOP("MlpPolicy", "Pendulum-v1", seed=1, planner=name, **tiny_kwargs())
    logger, writer = recording_logger()
    model.set_logger(logger)
    calls = Spy(model.policy.rollout_planner, "plan")
    model.learn(300, log_interval=1)
    assert model.planner_name == name and isinstance(model.policy.planner, PLANNER_CLASSES[name])
    assert isinstance(model.policy.rollout_planner, PLANNER_CLASSES[name]) and len(calls.calls) > 100  # trained with it
    divergence = writer.values("planner/actor_divergence")
    assert divergence and all(np.isfinite(d) and d >= 0 for d in divergence) and max(divergence) > 0
    assert writer.values("planner/ms_per_action")
    obs = pendulum_obs()
    action, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "model")
    loaded = LOOP.load(tmp_path / "model")
    assert loaded.planner_name == name and isinstance(loaded.policy.planner, PLANNER_CLASSES[name])
    np.testing.assert_allclose(loaded.predict(obs, deterministic=True)[0], action, rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(action) <= 2.0)


def test_configure_planner_switches_a_trained_model(arc_model) -> None:
    obs = pendulum_obs()
    weights = {k: v.clone() for k, v in arc_model.policy.state_dict().items()}
    try:
        arc_action, _ = arc_model.predict(obs, deterministic=True)
        actions = {}
        for name in NEW:
            arc_model.configure_planner(planner=name)
            assert arc_model.planner_name == name and isinstance(arc_model.policy.planner, PLANNER_CLASSES[name])
            assert isinstance(arc_model.policy.rollout_planner, PLANNER_CLASSES[name])
            actions[name] = arc_model.predict(obs, deterministic=True)[0]
        arc_model.configure_planner(planner="arc", mixture_coef=0.0)  # ARC without the actor
        assert arc_model.policy.planner.config.num_actor_sequences == 0
        assert not np.allclose(actions["cem"], arc_action) and not np.allclose(actions["shooting"], actions["cem"])
        for key, value in arc_model.policy.state_dict().items():
            assert torch.equal(value, weights[key]), key
        with pytest.raises(ValueError, match="planner='beam' must be one of"):
            arc_model.configure_planner(planner="beam")
        assert arc_model.planner_name == "arc"
    finally:
        arc_model.configure_planner(planner="arc", mixture_coef=0.05)
    np.testing.assert_allclose(arc_model.predict(obs, deterministic=True)[0], arc_action, rtol=1e-5, atol=1e-6)


def test_planner_argument_errors(arc_model, tmp_path) -> None:
    with pytest.raises(ValueError, match="planner='CEM' must be one of"):
        LOOP("MlpPolicy", "Pendulum-v1", planner="CEM", **tiny_kwargs())
    arc_model.save(tmp_path / "arc")
    with pytest.raises(ValueError, match="planner=3 must be one of"):
        LOOP.load(tmp_path / "arc", planner=3)
    loaded = LOOP.load(tmp_path / "arc", planner="mppi")
    assert loaded.planner_name == "mppi" and isinstance(loaded.policy.planner, MPPIPlanner)


def test_older_zips_without_the_planner_load_as_arc(arc_model, tmp_path) -> None:
    arc_model.configure_planner(planner="cem")
    try:
        arc_model.save(tmp_path / "model")
    finally:
        arc_model.configure_planner(planner="arc")
    path = tmp_path / "model.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(buffer, "w") as target:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == "data":
                data = json.loads(content)
                assert data.pop("planner_name") == "cem"
                content = json.dumps(data).encode()
            target.writestr(item, content)
    path.write_bytes(buffer.getvalue())
    loaded = LOOP.load(path)
    assert loaded.planner_name == "arc" and isinstance(loaded.policy.planner, ARCPlanner)


def test_actor_divergence_is_the_mean_squared_distance_to_the_actor(arc_model, monkeypatch) -> None:
    policy = arc_model.policy
    obs = pendulum_obs(4)
    policy.pop_planning_stats()
    monkeypatch.setattr(policy.planner, "plan", lambda o, deterministic, generator: policy.planning_actor(o))
    arc_model.predict(obs, deterministic=True)
    stats = policy.pop_planning_stats()
    assert stats["actor_divergence"] == pytest.approx(0.0, abs=1e-12) and stats["ms_per_action"] >= 0
    monkeypatch.setattr(policy.planner, "plan", lambda o, deterministic, generator: policy.planning_actor(o) + 0.5)
    arc_model.predict(obs, deterministic=True)
    arc_model.predict(obs[:2], deterministic=True)
    assert policy.pop_planning_stats()["actor_divergence"] == pytest.approx(0.25)
    assert policy.pop_planning_stats() is None
    monkeypatch.undo()
    arc_model.predict(obs, deterministic=True)  # the real planner
    assert 0 < policy.pop_planning_stats()["actor_divergence"] < 4.0  # actions in [-1, 1]: at most 2^2


def test_planner_names() -> None:
    assert PLANNER_NAMES == ("arc", "cem", "mppi", "shooting")


@pytest.mark.parametrize("name", ["cem", "shooting"])
def test_deploy_time_constraint_plans_with_the_model_s_planner(arc_model, name: str) -> None:
    """
    constrain() builds the model's planner with the constrained scorer: a cost on |a| > 0.2 is respected.
    (Not MPPI: its retries sample at max_std, so 16 sequences rarely hold a feasible one.)
    """
    from sb3_loop.safe import constrain

    def cost_fn(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return (action[..., 0].abs() > 0.2).to(action.dtype)

    arc_model.configure_planner(planner=name)
    try:
        policy = constrain(arc_model, cost_fn, cost_threshold=0.0, min_feasible=2)
        assert isinstance(policy.planner, PLANNER_CLASSES[name])
        action, _ = policy.predict(pendulum_obs(4), deterministic=True)
        summary = policy.planner.feasibility_log.pop()
    finally:
        arc_model.configure_planner(planner="arc")
    assert summary is not None and summary["plans"] == 4.0
    # Pendulum's actions are 2 x the squashed ones: the feasible first actions are within 0.4.
    assert np.all(np.abs(action) <= 0.4 + 1e-5), action
