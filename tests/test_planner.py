"""ARC planner: direction, bounds, warm start, reset, reproducibility, batching, validation, robustness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from analytic import ActionCostModel, NaNModel, PointMass, Spy, gen, tiny_ensemble, zero_actor, zero_value
from hypothesis import given, settings
from hypothesis import strategies as st

from sb3_loop.dynamics.ensemble import ProbabilisticEnsemble, StepPrediction
from sb3_loop.dynamics.termination import hopper_termination
from sb3_loop.planning import ARCConfig, ARCPlanner, MeanReturn, PessimisticReturn

torch.set_num_threads(1)

MODES = ("paper", "random_elite")
SMALL = {"population_size": 32, "num_particles": 2, "iterations": 3}


def point_mass_planner(low=-1.0, high=1.0, value_fn=zero_value, actor=None, model=None, **config) -> ARCPlanner:
    model = model or PointMass(goal=1.0, dt=0.5)
    actor = actor or zero_actor(model.action_dim)
    cfg = ARCConfig(**{**SMALL, "mixture_coef": 0.0, **config})
    return ARCPlanner(model, actor, value_fn, [low] * model.action_dim, [high] * model.action_dim, cfg)


# ------------------------------------------------------------------------------------------ direction
@pytest.mark.parametrize("propagation", MODES)
@pytest.mark.parametrize("deterministic", [True, False])
def test_first_action_moves_toward_goal(propagation: str, deterministic: bool) -> None:
    planner = point_mass_planner(propagation=propagation, horizon=3, kappa=5.0)
    obs = torch.tensor([[-2.0], [-0.5], [2.5], [4.0]])  # goal = 1
    for seed in range(3):
        planner.reset()
        action = planner.plan(obs, deterministic=deterministic, generator=gen(seed))
        assert action.shape == (4, 1)
        assert (action[:2] > 0).all(), action
        assert (action[2:] < 0).all(), action
    if deterministic:
        # Far from the goal the best first action is the bound.
        planner.reset()
        action = planner.plan(obs, deterministic=True, generator=gen(0))
        assert action[0, 0] > 0.8 and action[3, 0] < -0.8


# --------------------------------------------------------------------------------------------- bounds


@settings(max_examples=25, deadline=None)
@given(
    data=st.data(),
    action_dim=st.integers(1, 3),
    batch=st.integers(1, 4),
    horizon=st.integers(1, 4),
    propagation=st.sampled_from(MODES),
    deterministic=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_actions_within_bounds(data, action_dim, batch, horizon, propagation, deterministic, seed) -> None:
    floats = st.floats(-3.0, 3.0, allow_nan=False, width=32)
    low = np.array(data.draw(st.lists(floats, min_size=action_dim, max_size=action_dim)), dtype=np.float32)
    width = np.array(
        data.draw(st.lists(st.floats(0.0625, 4.0, width=32), min_size=action_dim, max_size=action_dim)), dtype=np.float32
    )
    high = low + width
    obs = torch.tensor(data.draw(st.lists(floats, min_size=batch, max_size=batch)))[:, None]
    target = torch.tensor(data.draw(st.lists(floats, min_size=action_dim, max_size=action_dim)))
    model = ActionCostModel(target, goal=data.draw(floats), action_dim=action_dim)
    actor = lambda o: torch.full((o.shape[0], action_dim), 10.0)  # noqa: E731 (out of bounds on purpose)
    cfg = ARCConfig(horizon, 8, 2, 2, mixture_coef=0.25, kappa=data.draw(st.floats(0.1, 100.0)), propagation=propagation)
    planner = ARCPlanner(model, actor, lambda o, a: -(a**2).sum(-1), low, high, cfg)
    scores = Spy(planner, "_score")
    low_t, high_t = torch.from_numpy(low), torch.from_numpy(high)
    for _ in range(2):  # second call uses the warm start
        action = planner.plan(obs, deterministic=deterministic, generator=gen(seed))
        assert action.shape == (batch, action_dim)
        assert torch.isfinite(action).all()
        assert (action >= low_t).all() and (action <= high_t).all(), (action, low, high)
        # Every scored candidate (proposals and clipped actor sequences) is feasible too.
        for (_, candidates, _), _ in scores.calls:
            assert (candidates >= low_t).all() and (candidates <= high_t).all()
        scores.calls.clear()
    assert planner.num_fallbacks == 0


# ----------------------------------------------------------------------------------------- warm start
@pytest.mark.parametrize("propagation", MODES)
def test_warm_start_shifts_the_optimised_mean(propagation: str) -> None:
    planner = point_mass_planner(propagation=propagation, horizon=4)
    scores = Spy(planner, "_score")
    weights = Spy(planner, "_weights")
    obs = torch.tensor([[-2.0], [0.5], [3.0]])
    planner.plan(obs, deterministic=True, generator=gen(0))
    assert len(scores.calls) == len(weights.calls) == SMALL["iterations"]
    candidates = scores.calls[-1][0][1]  # _score(obs, candidates, rng)
    final_mean = torch.einsum("bs,bsha->bha", weights.calls[-1][1], candidates)
    stored = planner._mean
    assert stored.shape == (3, 4, 1)
    torch.testing.assert_close(stored[:, :-1], final_mean[:, 1:])
    assert torch.equal(stored[:, -1], stored[:, -2])
    # The optimised means differ per env, so the shift is not trivially the center.
    assert not torch.allclose(stored[0], stored[2])

    # The next plan samples its first population around the shifted mean.
    proposals = Spy(planner, "_propose")
    planner.plan(obs, deterministic=True, generator=gen(1))
    torch.testing.assert_close(proposals.calls[0][0][0], stored)


@pytest.mark.parametrize("propagation", MODES)
def test_iteration_update_of_mean_and_variance(propagation: str) -> None:
    planner = point_mass_planner(propagation=propagation, horizon=3, iterations=3, low=-2.0, high=2.0)
    proposals, scores, weights = Spy(planner, "_propose"), Spy(planner, "_score"), Spy(planner, "_weights")
    planner.plan(torch.tensor([[-2.0], [3.0]]), generator=gen(0))
    means = [call[0][0] for call in proposals.calls]
    variances = [call[0][1] for call in proposals.calls]
    assert torch.equal(variances[0], torch.full((2, 3, 1), 4.0**2 / 16))  # (high - low)^2 / 16
    alpha = planner.config.var_momentum
    for k in range(2):
        candidates, w = scores.calls[k][0][1], weights.calls[k][1]
        new_mean = torch.einsum("bs,bsha->bha", w, candidates)
        new_var = torch.einsum("bs,bsha->bha", w, (candidates - new_mean[:, None]) ** 2)
        torch.testing.assert_close(means[k + 1], new_mean)
        torch.testing.assert_close(variances[k + 1], alpha * variances[k] + (1 - alpha) * new_var)
    assert (variances[-1] < variances[0]).all()


# ---------------------------------------------------------------------------------------------- reset
def test_reset_clears_chosen_envs_only() -> None:
    model = PointMass(action_dim=2)
    low, high = [-1.0, 0.0], [3.0, 1.0]
    planner = ARCPlanner(model, zero_actor(2), zero_value, low, high, ARCConfig(horizon=3, **SMALL))
    center = torch.tensor([1.0, 0.5])
    obs = torch.tensor([[-3.0], [5.0], [-4.0]])
    planner.plan(obs, generator=gen(0))
    before = planner._mean.clone()
    assert not torch.allclose(before, center.expand_as(before))
    planner.reset(np.array([True, False, True]))
    after = planner._mean
    assert torch.equal(after[0], center.expand(3, 2)) and torch.equal(after[2], center.expand(3, 2))
    assert torch.equal(after[1], before[1])

    planner.plan(obs, generator=gen(1))
    planner.reset()
    proposals = Spy(planner, "_propose")
    planner.plan(obs, generator=gen(2))
    assert torch.equal(proposals.calls[0][0][0], center.expand(3, 3, 2))

    # A batch-size change re-initialises the warm start.
    planner.plan(obs[:2], generator=gen(3))
    assert torch.equal(proposals.calls[-SMALL["iterations"]][0][0], center.expand(2, 3, 2))
    assert planner._mean.shape == (2, 3, 2)


# ----------------------------------------------------------------------------------- reproducibility


def ensemble_planner(model: ProbabilisticEnsemble, propagation: str, **config) -> ARCPlanner:
    weight = torch.linspace(-1.0, 1.0, model.obs_dim * model.action_dim).reshape(model.obs_dim, model.action_dim)

    def actor(obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(obs @ weight)

    def value_fn(obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return obs.sum(-1) - (action**2).sum(-1)

    cfg = ARCConfig(**{**SMALL, "horizon": 3, "mixture_coef": 0.1, "propagation": propagation, **config})
    return ARCPlanner(model, actor, value_fn, [-1.0] * model.action_dim, [1.0] * model.action_dim, cfg)


@pytest.mark.parametrize("propagation", MODES)
def test_same_seed_same_actions(propagation: str) -> None:
    model = tiny_ensemble()
    obs = torch.randn(3, 3, generator=gen(0))
    first = ensemble_planner(model, propagation).plan(obs, generator=gen(42))
    second = ensemble_planner(model, propagation).plan(obs, generator=gen(42))
    other = ensemble_planner(model, propagation).plan(obs, generator=gen(43))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("propagation", MODES)
@pytest.mark.parametrize("deterministic", [True, False])
def test_batch_equals_single_plans_with_per_env_generators(propagation: str, deterministic: bool) -> None:
    model = tiny_ensemble()
    obs = torch.randn(3, 3, generator=gen(1))
    seeds = [11, 22, 33]
    batched = ensemble_planner(model, propagation).plan(obs, deterministic, generator=[gen(s) for s in seeds])
    singles = torch.stack(
        [ensemble_planner(model, propagation).plan(obs[i], deterministic, generator=gen(s)) for i, s in enumerate(seeds)]
    )
    assert batched.shape == singles.shape == (3, 2)
    torch.testing.assert_close(batched, singles, atol=1e-5, rtol=1e-5)
    # Three envs planned with different seeds differ: the comparison above is not vacuous.
    assert not torch.allclose(batched[0], batched[1])


def test_generator_list_length_must_match_batch() -> None:
    planner = ensemble_planner(tiny_ensemble(), "paper")
    with pytest.raises(ValueError, match="2 generators"):
        planner.plan(torch.zeros(3, 3), generator=[gen(0), gen(1)])


# ----------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "name, value",
    [
        ("horizon", 0),
        ("population_size", 0),
        ("num_particles", 0),
        ("iterations", 0),
        ("horizon", 2.5),
        ("mixture_coef", -0.1),
        ("mixture_coef", 1.5),
        ("kappa", 0),
        ("kappa", -1),
        ("kappa", math.inf),
        ("kappa", math.nan),
        ("var_momentum", 1.1),
        ("propagation", "bogus"),
    ],
)
def test_config_validation(name: str, value) -> None:
    with pytest.raises(ValueError) as info:
        ARCConfig(**{name: value})
    assert name in str(info.value) and str(value) in str(info.value)


@pytest.mark.parametrize(
    "low, high",
    [([math.nan], [1.0]), ([-1.0], [math.inf]), ([-math.inf], [1.0]), ([1.0], [1.0]), ([2.0], [1.0]), ([0.0, 0.0], [1.0])],
)
def test_invalid_bounds(low, high) -> None:
    with pytest.raises(ValueError, match="action"):
        ARCPlanner(PointMass(), zero_actor(1), zero_value, low, high)


@pytest.mark.parametrize(
    "obs, match",
    [
        (torch.zeros(2, 3), "features"),
        (torch.zeros(2, 1, 1), "shape"),
        (torch.tensor(0.5), "shape"),
        (torch.tensor([[0.0], [math.nan]]), "NaN"),
        (torch.tensor([[math.inf]]), "NaN or inf"),
    ],
)
def test_invalid_observations(obs, match) -> None:
    planner = point_mass_planner()
    with pytest.raises(ValueError, match=match):
        planner.plan(obs)


def test_single_observation_returns_single_action() -> None:
    action = point_mass_planner().plan(torch.tensor([-2.0]), deterministic=True, generator=gen(0))
    assert action.shape == (1,) and action.item() > 0


# -------------------------------------------------------------------------------- non-finite models


ACTOR_ACTION = 0.37


def constant_actor(obs: torch.Tensor) -> torch.Tensor:
    return torch.full((obs.shape[0], 1), ACTOR_ACTION)


def nan_value_beyond(threshold: float):
    def value_fn(obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return torch.where(obs[:, 0] > threshold, math.nan, 0.0)

    return value_fn


@pytest.mark.parametrize("what", ["reward", "next_obs", "value"])
@pytest.mark.parametrize("propagation", MODES)
@pytest.mark.parametrize("deterministic", [True, False])
def test_non_finite_predictions_fall_back_to_actor(what: str, propagation: str, deterministic: bool) -> None:
    if what == "value":
        model, value_fn = PointMass(goal=1.0, dt=0.5), nan_value_beyond(4.0)
    else:
        model, value_fn = NaNModel(what), zero_value
    planner = point_mass_planner(model=model, actor=constant_actor, value_fn=value_fn, propagation=propagation)
    # env 1 and 3 start beyond the threshold: every candidate of theirs is NaN (H=3 moves at most 1).
    obs = torch.tensor([[-1.0], [6.0], [0.5], [10.0]])
    for call in range(1, 3):
        action = planner.plan(obs, deterministic=deterministic, generator=gen(call))
        assert torch.isfinite(action).all()
        assert ((action >= -1) & (action <= 1)).all()
        assert action[1, 0] == ACTOR_ACTION and action[3, 0] == ACTOR_ACTION
        assert action[0, 0] > 0  # the healthy envs still plan toward the goal
        assert planner.num_fallbacks == 2 * call
    assert torch.isfinite(planner._mean).all()


@pytest.mark.parametrize("propagation", MODES)
@pytest.mark.parametrize("deterministic", [True, False])
def test_partially_non_finite_candidates_are_discarded(propagation: str, deterministic: bool) -> None:
    class NaNForLargeActions(PointMass):
        def step_members(self, obs, action, noise):
            next_obs, reward, _ = super().step_members(obs, action, noise)
            return StepPrediction(next_obs, torch.where(action[..., 0] > 0.5, math.nan, reward), None)

    planner = point_mass_planner(model=NaNForLargeActions(goal=1.0, dt=0.5), propagation=propagation, kappa=5.0)
    # The goal is far to the right: without the NaNs the first action would be ~1.
    action = planner.plan(torch.tensor([[-3.0], [-2.0]]), deterministic=deterministic, generator=gen(0))
    assert planner.num_fallbacks == 0
    assert (action <= 0.5 + 1e-6).all() and (action > 0).all(), action


def test_all_nan_actor_fallback_is_clipped_and_finite() -> None:
    nan_actor = lambda o: torch.full((o.shape[0], 1), math.nan)  # noqa: E731
    planner = point_mass_planner(model=NaNModel("reward"), actor=nan_actor, low=0.2, high=0.9, mixture_coef=0.1)
    action = planner.plan(torch.tensor([[6.0]]), deterministic=True, generator=gen(0))
    assert torch.isfinite(action).all() and 0.2 <= action.item() <= 0.9
    assert planner.num_fallbacks == 1


# -------------------------------------------------------------------------------- termination masking
class TimedModel:
    """
    obs = (x, t). x' = x + a, t' = t + 1. Reward ``-a + 10 x'`` from the second step on, ``-a`` at the
    first step: the first step favours negative actions, everything after favours positive ones.
    """

    num_elites, obs_dim, action_dim, target_dim = 2, 2, 1, 3

    def step_members(self, obs, action, noise):
        a = action[..., 0]
        next_obs = torch.stack((obs[..., 0] + a, obs[..., 1] + 1), dim=-1)
        later = (obs[..., 1] >= 1).float()
        return StepPrediction(next_obs, -a + later * 10.0 * next_obs[..., 0], None)


def always_terminal(next_obs: torch.Tensor) -> torch.Tensor:
    return torch.ones(next_obs.shape[:-1], dtype=torch.bool)


def big_value(obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    return 10.0 * obs[:, 0] + 10.0 * action[:, 0]


@pytest.mark.parametrize("propagation", MODES)
@pytest.mark.parametrize("horizon", [2, 3])
def test_termination_masks_later_rewards_and_value(propagation: str, horizon: int) -> None:
    cfg = ARCConfig(
        horizon=horizon, population_size=64, num_particles=2, iterations=4, mixture_coef=0.0, kappa=5.0,
        propagation=propagation,
    )  # fmt: skip
    obs = torch.tensor([[0.0, 0.0], [0.3, 0.0]])

    def plan(termination_fn):
        planner = ARCPlanner(TimedModel(), zero_actor(1), big_value, [-1.0], [1.0], cfg, termination_fn=termination_fn)
        return planner.plan(obs, deterministic=True, generator=gen(0))

    # Without termination the later rewards / terminal value (+10 per unit of a_0) dominate.
    assert (plan(None) > 0.25).all()
    # Every predicted next state is terminal: only r_0 = -a_0 counts.
    assert (plan(always_terminal) < -0.5).all()
    # Only the first predicted state is terminal: termination is absorbing, later steps stay masked.
    first_only = lambda o: o[..., 1] == 1  # noqa: E731
    assert (plan(first_only) < -0.5).all()
    # A termination function that never fires changes nothing.
    never = lambda o: torch.zeros(o.shape[:-1], dtype=torch.bool)  # noqa: E731
    assert torch.equal(plan(never), plan(None))


# ------------------------------------------------------------------------------------ terminal value
@pytest.mark.parametrize("propagation", MODES)
def test_horizon_one_uses_only_terminal_value(propagation: str) -> None:
    def value_fn(obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return -((action[:, 0] - 0.3) ** 2)

    planner = point_mass_planner(
        value_fn=value_fn, horizon=1, kappa=50.0, iterations=5, population_size=64, propagation=propagation
    )
    # PointMass would pull toward +1 / -1; with H=1 the model is never stepped.
    action = planner.plan(torch.tensor([[-5.0], [5.0]]), deterministic=True, generator=gen(0))
    assert torch.allclose(action, torch.full_like(action, 0.3), atol=0.05), action


# -------------------------------------------------------------------------------------- actor mixing
@pytest.mark.parametrize(
    "coef, population, expected", [(0.05, 100, 5), (0.3, 10, 3), (0.0, 50, 0), (1.0, 7, 7), (0.24, 10, 2)]
)
def test_num_actor_sequences(coef: float, population: int, expected: int) -> None:
    cfg = ARCConfig(population_size=population, mixture_coef=coef)
    assert cfg.num_actor_sequences == expected == round(coef * population)


@pytest.mark.parametrize("propagation", MODES)
def test_candidates_include_actor_rollouts(propagation: str) -> None:
    model = PointMass(goal=1.0, dt=0.5)

    def actor(obs: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.tanh(obs[:, :1])

    planner = point_mass_planner(
        model=model, actor=actor, horizon=3, mixture_coef=0.25, population_size=8, propagation=propagation
    )
    scores = Spy(planner, "_score")
    obs = torch.tensor([[0.8], [-1.5]])
    planner.plan(obs, generator=gen(0))
    candidates = scores.calls[0][0][1]
    assert candidates.shape == (2, 8 + 2, 3, 1)
    # Expected actor rollout through the (exact) model: a_t = actor(x_t), x_{t+1} = x_t + dt a_t.
    x, expected = obs[:, 0].clone(), []
    for _ in range(3):
        a = 0.5 * torch.tanh(x)
        expected.append(a)
        x = x + 0.5 * a
    expected = torch.stack(expected, dim=1)  # [B, H]
    for k in (-2, -1):
        torch.testing.assert_close(candidates[:, k, :, 0], expected)


@pytest.mark.parametrize("propagation", MODES)
def test_actor_rollouts_follow_one_member_each(propagation: str) -> None:
    class TwoMembers(PointMass):
        """Member 0 moves by +dt * a, member 1 by -dt * a."""

        def step_members(self, obs, action, noise):
            sign = torch.tensor([1.0, -1.0])[: obs.shape[0], None]
            next_obs = obs.clone()
            next_obs[..., 0] = obs[..., 0] + sign * self.dt * action[..., 0]
            return StepPrediction(next_obs, -((next_obs[..., 0] - self.goal) ** 2), None)

    def actor(obs: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.tanh(obs[:, :1] + 0.3)

    planner = point_mass_planner(
        model=TwoMembers(goal=1.0, dt=0.5), actor=actor, horizon=3, mixture_coef=1.0, population_size=8,
        iterations=1, propagation=propagation,
    )  # fmt: skip
    scores = Spy(planner, "_score")
    obs = torch.tensor([[0.8], [-1.5]])
    planner.plan(obs, generator=gen(0))
    actor_part = scores.calls[0][0][1][:, 8:, :, 0]  # [B, 8, H]

    def rollout(sign: float) -> torch.Tensor:
        x, actions = obs[:, 0].clone(), []
        for _ in range(3):
            a = 0.5 * torch.tanh(x + 0.3)
            actions.append(a)
            x = x + sign * 0.5 * a
        return torch.stack(actions, dim=1)[:, None]  # [B, 1, H]

    matches = [torch.isclose(actor_part, rollout(sign)).all(-1) for sign in (1.0, -1.0)]  # [B, 8] each
    assert (matches[0] | matches[1]).all()
    assert matches[0].any(dim=1).all() and matches[1].any(dim=1).all()  # both members are used


@pytest.mark.parametrize("propagation", MODES)
def test_stochastic_choice_draws_by_weight(propagation: str) -> None:
    batch = 400
    planner = point_mass_planner(horizon=2, iterations=1, population_size=16, propagation=propagation)
    scores = Spy(planner, "_score")
    fixed = torch.zeros(batch, 16)
    fixed[:, 3], fixed[:, 9] = 0.7, 0.3
    planner._weights = lambda s: fixed  # replace the softmax: the draw must follow these weights
    action = planner.plan(torch.zeros(batch, 1), deterministic=False, generator=gen(0))
    candidates = scores.calls[-1][0][1][:, :, 0, 0]  # first actions [B, 16]
    picked_3 = action[:, 0] == candidates[:, 3]
    picked_9 = action[:, 0] == candidates[:, 9]
    assert (picked_3 | picked_9).all()  # never a zero-weight candidate
    assert 0.6 < picked_3.float().mean() < 0.8  # 0.7 expected, std ~0.023
    # Deterministic mode acts the weighted mean instead.
    planner.reset()
    action = planner.plan(torch.zeros(batch, 1), deterministic=True, generator=gen(1))
    candidates = scores.calls[-1][0][1][:, :, 0, 0]
    torch.testing.assert_close(action[:, 0], 0.7 * candidates[:, 3] + 0.3 * candidates[:, 9])


@pytest.mark.parametrize("propagation", MODES)
def test_actor_sequence_wins_with_sharp_value(propagation: str) -> None:
    def value_fn(obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return -1000.0 * (action[:, 0] - 0.7) ** 2

    def actor(obs: torch.Tensor) -> torch.Tensor:
        return torch.full((obs.shape[0], 1), 0.7)

    planner = point_mass_planner(
        actor=actor, value_fn=value_fn, horizon=1, population_size=1, iterations=1, mixture_coef=1.0,
        kappa=1000.0, propagation=propagation,
    )  # fmt: skip
    assert planner.config.num_actor_sequences == 1
    for seed in range(3):
        planner.reset()
        action = planner.plan(torch.tensor([[0.0], [2.0]]), deterministic=True, generator=gen(seed))
        assert torch.allclose(action, torch.full_like(action, 0.7), atol=0.02), action


# --------------------------------------------------------------------------------------------- scoring
def test_scorers() -> None:
    returns = torch.randn(2, 5, 7, generator=gen(0))
    torch.testing.assert_close(MeanReturn()(returns, None), returns.mean(-1))
    expected = returns.mean(-1) - 1.5 * returns.std(-1, unbiased=False)
    torch.testing.assert_close(PessimisticReturn(1.5)(returns, None), expected)
    torch.testing.assert_close(PessimisticReturn(0.0)(returns, None), returns.mean(-1))
    manual = torch.tensor([[[1.0, 3.0]]])  # mean 2, population std 1
    torch.testing.assert_close(PessimisticReturn(2.0)(manual, None), torch.tensor([[0.0]]))
    single = torch.tensor([[[4.0], [5.0]]])
    torch.testing.assert_close(PessimisticReturn(3.0)(single, None), torch.tensor([[4.0, 5.0]]))
    for beta in (-0.1, math.nan):
        with pytest.raises(ValueError, match="beta"):
            PessimisticReturn(beta)


@pytest.mark.parametrize("propagation", MODES)
def test_pessimistic_scorer_avoids_uncertain_sequences(propagation: str) -> None:
    """Expected reward +a, spread 2|a| across particles: the mean picks a -> 1, pessimism (beta 2) a -> 0."""

    class SpreadModel(PointMass):
        def step_members(self, obs, action, noise):
            next_obs, _, _ = super().step_members(obs, action, noise)
            a = action[..., 0]
            return StepPrediction(next_obs, a + 2.0 * a.abs() * noise[..., 0], None)

    def plan(scorer):
        cfg = ARCConfig(
            horizon=2, population_size=32, num_particles=32, iterations=3, mixture_coef=0.0, kappa=5.0,
            propagation=propagation,
        )  # fmt: skip
        planner = ARCPlanner(SpreadModel(), zero_actor(1), zero_value, [-1.0], [1.0], cfg, scorer=scorer)
        return planner.plan(torch.zeros(2, 1), deterministic=True, generator=gen(0))

    assert (plan(MeanReturn()) > 0.3).all()
    assert (plan(PessimisticReturn(2.0)).abs() < 0.2).all()


# ------------------------------------------------------------------------------ with a real ensemble
@pytest.mark.parametrize("propagation", MODES)
@pytest.mark.parametrize("deterministic", [True, False])
def test_with_untrained_ensemble_hopper_shapes(propagation: str, deterministic: bool) -> None:
    model = tiny_ensemble(obs_dim=11, action_dim=3, seed=1)
    planner = ensemble_planner(model, propagation)
    planner.termination_fn = hopper_termination
    low, high = planner.action_low, planner.action_high
    obs = torch.randn(4, 11, generator=gen(5)) * 0.1
    obs[:, 0] += 1.25  # healthy height
    for _ in range(2):
        action = planner.plan(obs.double(), deterministic=deterministic, generator=gen(6))
        assert action.shape == (4, 3) and action.dtype == torch.float32
        assert torch.isfinite(action).all()
        assert ((action >= low) & (action <= high)).all()
    single = planner.plan(obs[0], deterministic=deterministic, generator=gen(7))
    assert single.shape == (3,)
    assert planner.last_plan_seconds > 0
