"""SafeLOOP: constrained scoring, the fallback's widened iterations, the algorithm, deploy-time constraints."""

from __future__ import annotations

import inspect
import math
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from analytic import PointMass, zero_actor, zero_value
from hazard_point import GOAL, hazard_cost, make_env
from loop_helpers import recording_logger, tiny_kwargs
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_loop import LOOP, SafeLOOP, zoo
from sb3_loop.dynamics.ensemble import StepPrediction
from sb3_loop.planning import ARCConfig, ARCPlanner, ConstrainedReturn, CostFunctionModel, MeanReturn, PessimisticReturn
from sb3_loop.safe import ConstrainedPolicy, MissingCostError, constrain
from sb3_loop.safe import hazard_cost as point_goal_hazard_cost

torch.set_num_threads(1)

MODES = ("paper", "random_elite")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def never_terminates(next_obs: torch.Tensor) -> torch.Tensor:
    return torch.zeros(next_obs.shape[:-1], dtype=torch.bool)


# ------------------------------------------------------------------------------ the constrained scorer
def test_all_infeasible_least_cost_wins() -> None:
    returns = torch.tensor([[[9.0, 9.0], [5.0, 5.0], [1.0, 1.0]]])  # the best return is the costliest
    costs = torch.tensor([[[3.0, 3.0], [2.0, 2.5], [1.5, 2.0]]])  # all above the threshold 1
    scorer = ConstrainedReturn(cost_threshold=1.0, min_feasible=1)
    scores = scorer(returns, costs)
    torch.testing.assert_close(scores, -costs.mean(-1))
    assert scores.argmax(dim=1).item() == 2
    verdict = scorer.feasibility(returns, costs)
    assert not verdict.feasible.any() and verdict.retry.tolist() == [True]


def test_threshold_edges() -> None:
    returns = torch.tensor([[[1.0], [2.0], [3.0]]])
    threshold = 0.75
    just_above = torch.nextafter(torch.tensor(threshold), torch.tensor(1.0)).item()  # the next float32
    costs = torch.tensor([[[threshold], [just_above], [0.0]]])
    scorer = ConstrainedReturn(cost_threshold=threshold, min_feasible=2)
    assert scorer.feasibility(returns, costs).feasible.tolist() == [[True, False, True]]  # exactly at it: feasible
    scores = scorer(returns, costs)
    assert scores[0, 0] == 1.0 and scores[0, 1] == -math.inf and scores[0, 2] == 3.0
    # One feasible sequence too few: every sequence is scored by its cost instead.
    scores = ConstrainedReturn(cost_threshold=threshold, min_feasible=3)(returns, costs)
    torch.testing.assert_close(scores, -costs[..., 0])
    # A zero threshold accepts exactly zero cost.
    zero = ConstrainedReturn(cost_threshold=0.0, min_feasible=1)
    assert zero.feasibility(returns, costs).feasible.tolist() == [[False, False, True]]


def test_mean_and_pessimistic_bounds() -> None:
    # Sequence 0: particles 0.0 and 0.4 (mean 0.2, std 0.2); sequence 1: 0.25 and 0.25 (std 0).
    costs = torch.tensor([[[0.0, 0.4], [0.25, 0.25]]])
    returns = torch.tensor([[[10.0, 10.0], [1.0, 1.0]]])
    mean = ConstrainedReturn(cost_threshold=0.3, min_feasible=1)
    torch.testing.assert_close(mean.cost_bound(costs), torch.tensor([[0.2, 0.25]]))
    assert mean.feasibility(returns, costs).feasible.tolist() == [[True, True]]
    assert mean(returns, costs).argmax().item() == 0  # both feasible: the better return
    pessimistic = ConstrainedReturn(cost_threshold=0.3, cost_pessimism=1.0, min_feasible=1)
    torch.testing.assert_close(pessimistic.cost_bound(costs), torch.tensor([[0.4, 0.25]]))
    assert pessimistic.feasibility(returns, costs).feasible.tolist() == [[False, True]]
    assert pessimistic(returns, costs).argmax().item() == 1


def test_feasible_sequences_scored_by_base() -> None:
    returns = torch.tensor([[[1.0, 3.0], [2.0, 2.0], [9.0, 9.0]]])
    costs = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [5.0, 5.0]]])
    scores = ConstrainedReturn(1.0, min_feasible=2)(returns, costs)
    torch.testing.assert_close(scores[:, :2], MeanReturn()(returns, None)[:, :2])
    assert scores[0, 2] == -math.inf
    pessimistic = ConstrainedReturn(1.0, min_feasible=2, base=PessimisticReturn(1.0))(returns, costs)
    torch.testing.assert_close(pessimistic[:, :2], torch.tensor([[1.0, 2.0]]))  # 2 - 1 * std 1, 2 - 0


def test_scorer_needs_costs() -> None:
    with pytest.raises(ValueError, match="needs predicted costs"):
        ConstrainedReturn(1.0)(torch.zeros(1, 2, 3), None)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("cost_threshold", -0.1),
        ("cost_threshold", math.nan),
        ("cost_threshold", math.inf),
        ("cost_threshold", True),
        ("cost_pessimism", -1.0),
        ("min_feasible", 0),
        ("max_iterations", 0),
        ("widen_factor", 0.5),
    ],
)
def test_scorer_rejects_bad_settings(name: str, value: object) -> None:
    kwargs = {"cost_threshold": 1.0, name: value}
    with pytest.raises(ValueError, match=name):
        ConstrainedReturn(**kwargs)


# ---------------------------------------------------------------------- planning under a constraint
class CostlyPointMass(PointMass):
    """Reward pulls the action to +1; each step costs ``offset + (a - 0.3)^2`` (plus 1 where obs > 0)."""

    def __init__(self, offset: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.offset = offset

    def step_members(self, obs, action, noise):
        next_obs = obs.clone()
        a = action[..., 0]
        cost = self.offset + (a - 0.3) ** 2 + (obs[..., 0] > 0).to(a.dtype)
        return StepPrediction(next_obs, a, cost)


def constrained_planner(model, scorer, propagation="random_elite", **config) -> ARCPlanner:
    cfg = ARCConfig(**{"horizon": 3, "population_size": 32, "num_particles": 2, "iterations": 3, "mixture_coef": 0.0,
                       "kappa": 5.0, "propagation": propagation, **config})  # fmt: skip
    return ARCPlanner(model, zero_actor(1), zero_value, [-1.0], [1.0], cfg, scorer=scorer)


class ProposalSpy:
    """Records the variance of every proposal."""

    def __init__(self, planner: ARCPlanner) -> None:
        self.variances: list[torch.Tensor] = []
        original = planner._propose

        def wrapper(mean, var, *args):
            self.variances.append(var.clone())
            return original(mean, var, *args)

        planner._propose = wrapper


@pytest.mark.parametrize("propagation", MODES)
def test_feasible_plans_stop_at_the_minimum_iterations(propagation: str) -> None:
    scorer = ConstrainedReturn(cost_threshold=100.0, min_feasible=10, max_iterations=25)
    planner = constrained_planner(CostlyPointMass(), scorer, propagation)
    spy = ProposalSpy(planner)
    action = planner.plan(torch.full((2, 1), -1.0), deterministic=True, generator=gen(0))
    assert len(spy.variances) == 3  # ARC's iterations: everything is feasible
    assert (action > 0.5).all()  # by return: towards +1
    log = planner.feasibility_log.pop()
    assert log == {"feasible_fraction": 1.0, "fallbacks": 0.0, "iterations": 3.0, "plans": 2.0}


@pytest.mark.parametrize("propagation", MODES)
def test_fallback_widens_iterates_and_acts_least_cost(propagation: str) -> None:
    # Every sequence costs at least 1 per step: never feasible under 0.5.
    scorer = ConstrainedReturn(cost_threshold=0.5, min_feasible=10, max_iterations=12, widen_factor=1.5)
    planner = constrained_planner(CostlyPointMass(offset=1.0), scorer, propagation)
    spy = ProposalSpy(planner)
    action = planner.plan(torch.full((2, 1), -1.0), deterministic=True, generator=gen(0))
    assert len(spy.variances) == 12
    init_var = 4.0 / 16.0
    for retries, var in enumerate(spy.variances):
        assert (var >= init_var * 1.5**retries - 1e-6).all(), (retries, var)
    assert spy.variances[-1].min() > 20 * init_var  # far wider than ARC's own variance would be
    # The least-cost action 0.3, not the rewarded +1 (the proposals are wide by then: a loose tolerance).
    assert ((action - 0.3).abs() < 0.2).all(), action
    log = planner.feasibility_log.pop()
    assert log == {"feasible_fraction": 0.0, "fallbacks": 2.0, "iterations": 12.0, "plans": 2.0}
    assert planner.feasibility_log.total_fallbacks == 2 and planner.feasibility_log.pop() is None


def test_mean_return_scorer_keeps_arc_iterations() -> None:
    planner = constrained_planner(CostlyPointMass(offset=1.0), MeanReturn(), iterations=4)
    spy = ProposalSpy(planner)
    planner.plan(torch.zeros(1, 1), generator=gen(0))
    assert len(spy.variances) == 4 and planner.feasibility_log.pop() is None


@pytest.mark.parametrize("propagation", MODES)
@pytest.mark.parametrize("deterministic", [True, False])
def test_batch_equals_single_plans_when_iterations_differ(propagation: str, deterministic: bool) -> None:
    """Env 0 (obs < 0) finds feasible plans; env 1 (obs > 0, cost +1 per step) keeps retrying."""
    scorer = ConstrainedReturn(cost_threshold=1.0, min_feasible=5, max_iterations=9)
    obs = torch.tensor([[-1.0], [1.0]])

    def plan(states: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        planner = constrained_planner(CostlyPointMass(), scorer, propagation)
        action = planner.plan(states, deterministic=deterministic, generator=[gen(s) for s in seeds])
        iterations = planner.feasibility_log.pop()["iterations"]
        return action, iterations

    batch, batch_iterations = plan(obs, [3, 4])
    first, first_iterations = plan(obs[:1], [3])
    second, second_iterations = plan(obs[1:], [4])
    assert first_iterations == 3 and second_iterations == 9 and batch_iterations == 6
    torch.testing.assert_close(batch, torch.cat((first, second)))


def test_cost_function_model() -> None:
    model = CostFunctionModel(PointMass(goal=1.0, dt=0.5), lambda obs, action, next_obs: next_obs[..., 0] ** 2)
    assert model.num_elites == 2 and model.target_dim == 2  # the wrapped model's
    step = model.step_members(torch.ones(2, 3, 1), torch.ones(2, 3, 1), None)
    torch.testing.assert_close(step.cost, torch.full((2, 3), 2.25))  # x' = 1 + 0.5
    bad = CostFunctionModel(PointMass(), lambda obs, action, next_obs: next_obs)  # [..., 1]: one too many dims
    with pytest.raises(ValueError, match="one cost per observation"):
        bad.step_members(torch.ones(2, 3, 1), torch.ones(2, 3, 1), None)
    with pytest.raises(ValueError, match="not callable"):
        CostFunctionModel(PointMass(), "cost")


# ---------------------------------------------------------------------------------------- SafeLOOP
def toy_kwargs(**overrides) -> dict:
    """Small settings under which the point mass's dynamics, reward and cost are learned in a few hundred steps."""
    settings = dict(
        gamma=0.5,
        learning_starts=200,
        horizon=6,
        dynamics_hidden_sizes=(32, 32),
        dynamics_train_freq=200,
        dynamics_max_epochs=100,
        dynamics_max_gradient_steps=400,
        termination_fn=never_terminates,
    )
    return tiny_kwargs(**{**settings, **overrides})


@pytest.fixture(scope="module")
def safe_model() -> tuple[SafeLOOP, object]:
    model = SafeLOOP("MlpPolicy", make_env(), seed=0, cost_threshold=0.5, min_feasible=4, **toy_kwargs())
    logger, writer = recording_logger()
    model.set_logger(logger)
    model.learn(600, log_interval=1)
    return model, writer


def test_safe_loop_defaults() -> None:
    model = SafeLOOP("MlpPolicy", make_env(), _init_setup_model=False)
    assert model.arc_kwargs["horizon"] == 8 and model.arc_kwargs["population_size"] == 100
    assert model.arc_kwargs["num_particles"] == 4 and model.arc_kwargs["iterations"] == 5
    assert (model.cost_threshold, model.min_feasible, model.max_planning_iterations) == (0.2, 10, 25)
    assert model.widen_factor == 1.5 and model.cost_pessimism == 0.0 and model.cost_fn is None


def test_safe_loop_learns_cost_and_logs(safe_model) -> None:
    model, writer = safe_model
    dynamics = model.policy.dynamics
    assert dynamics.num_extra_targets == 1 and dynamics.is_trained
    assert isinstance(model.policy.planner.scorer, ConstrainedReturn)
    # The cost column is the ensemble's last target: its normaliser saw the stored costs' mean, and the
    # prediction is higher on the transitions that cost (a 0/1 disc is learned coarsely from 600 steps).
    buffer = model.replay_buffer
    costs = buffer.costs[: buffer.pos, 0]
    assert 0.05 < costs.mean() < 0.5
    assert abs(dynamics.target_mean[0, 0, -1].item() - costs.mean()) < 0.05
    predicted = model.predicted_step_cost(buffer.observations[: buffer.pos, 0], buffer.actions[: buffer.pos, 0])
    assert predicted[costs == 1].mean() > predicted[costs == 0].mean() + 0.03
    expected = {
        "planner/feasible_fraction",
        "planner/fallbacks",
        "planner/nonfinite_fallbacks",
        "planner/iterations",
        "safe/predicted_episode_cost",
        "rollout/ep_cost_mean",
        "planner/ms_per_action",
        "dynamics/holdout_mse",
    }
    assert expected <= writer.keys(), expected - writer.keys()
    fractions = writer.values("planner/feasible_fraction")
    assert all(0.0 <= f <= 1.0 for f in fractions) and max(fractions) > 0
    assert all(v >= 1 for v in writer.values("planner/iterations"))
    # Predicted episode costs count the episodes planned from their first step: those after the first fit at 200.
    assert len(model.predicted_ep_cost_buffer) == (600 - 200) // 40
    logged = writer.values("safe/predicted_episode_cost")[-1]
    assert logged == pytest.approx(np.mean(model.predicted_ep_cost_buffer)) and np.isfinite(logged)
    assert model.ep_cost_mean > 0  # the random warm-up walks through the hazard now and then


def test_feasibility_summary_counts_the_plans_and_fallbacks_since_the_last_pop(safe_model) -> None:
    model, _ = safe_model
    model.policy.pop_feasibility()
    before = model.policy.num_cost_fallbacks
    obs = model.replay_buffer.observations[:5, 0]
    for step, observation in enumerate(obs):
        model.predict(observation[None], episode_start=np.array([step == 0]), deterministic=True)
    summary = model.policy.pop_feasibility()
    assert summary is not None and summary["plans"] == len(obs)
    assert summary["fallbacks"] == model.policy.num_cost_fallbacks - before
    assert model.policy.pop_feasibility() is None


def test_safe_loop_save_load_predict(safe_model, tmp_path) -> None:
    model, _ = safe_model
    obs = np.array([[-0.5, 0.05], [0.2, -0.3]], dtype=np.float32)

    def act(m) -> np.ndarray:
        m.policy.planner.reset()
        return m.predict(obs, deterministic=True)[0]

    first = act(model)
    np.testing.assert_array_equal(first, act(model))
    model.save(tmp_path / "safe")
    loaded = SafeLOOP.load(tmp_path / "safe", env=make_env())
    np.testing.assert_allclose(act(loaded), first, atol=1e-6)
    assert isinstance(loaded.policy, type(model.policy)) and loaded.policy.dynamics.num_extra_targets == 1
    assert (loaded.cost_threshold, loaded.min_feasible) == (0.5, 4)
    assert loaded.dynamics_log == model.dynamics_log
    overridden = SafeLOOP.load(tmp_path / "safe", cost_threshold=0.25, horizon=4)
    assert overridden.policy.planner.scorer.cost_threshold == 0.25
    assert overridden.policy.planner.config.horizon == 4
    with pytest.raises(ValueError, match="does not hold a SafeLOOP model"):
        SafeLOOP.load(_loop_file(tmp_path))
    with pytest.raises(ValueError, match="does not hold a LOOP model"):
        LOOP.load(tmp_path / "safe")


def test_critic_cost_penalty_reaches_the_critic_not_the_ensemble(tmp_path) -> None:
    model = SafeLOOP("MlpPolicy", make_env(), seed=0, critic_cost_penalty=3.0, **toy_kwargs(learning_starts=100))
    assert model.critic_cost_penalty == 3.0 and model.replay_buffer.reward_cost_penalty == 0.0
    sampled: list = []
    sample = model.replay_buffer.sample

    def spy(*args, **kwargs):
        sampled.append(sample(*args, **kwargs))
        return sampled[-1]

    model.replay_buffer.sample = spy
    model.learn(250)
    buffer = model.replay_buffer
    assert buffer.reward_cost_penalty == 3.0 and sampled
    costs, rewards = buffer.costs[: buffer.pos, 0], buffer.rewards[: buffer.pos, 0]
    assert costs.max() == 1.0  # the warm-up crossed the hazard
    # The critic's batches are penalised; the ensemble's refit reads the raw stored rewards.
    by_obs = {tuple(o): (r, c) for o, r, c in zip(buffer.observations[: buffer.pos, 0].tolist(), rewards, costs)}
    for batch in sampled[-3:]:
        for obs, reward in zip(batch.observations.tolist(), batch.rewards[:, 0].tolist()):
            raw, cost = by_obs[tuple(obs)]
            assert reward == pytest.approx(raw - 3.0 * cost, abs=1e-5)
    _, _, fitted_rewards, _ = model._replay_transitions()
    np.testing.assert_allclose(np.sort(fitted_rewards.reshape(-1)), np.sort(rewards), rtol=1e-6)
    model.save(tmp_path / "penalised")
    assert SafeLOOP.load(tmp_path / "penalised").critic_cost_penalty == 3.0


def _loop_file(tmp_path) -> str:
    path = str(tmp_path / "loop")
    LOOP("MlpPolicy", "Pendulum-v1", **tiny_kwargs()).save(path)
    return path


def test_configure_planner_switches_cost_source(safe_model) -> None:
    model, _ = safe_model
    try:
        model.configure_planner(cost_fn=hazard_cost, cost_threshold=0.0)
        assert isinstance(model.policy.planner.model, CostFunctionModel)
        assert model.policy.planner.scorer.cost_threshold == 0.0
        predicted = model.predicted_step_cost(np.array([[-0.2, 0.0], [-0.9, 0.0]]), np.array([[1.0, 0.0], [1.0, 0.0]]))
        assert predicted.tolist() == [1.0, 0.0]  # hazard_cost of the predicted next positions (-0.1, 0), (-0.8, 0)
        with pytest.raises(ValueError, match="cost_threshold"):
            model.configure_planner(cost_fn=None, cost_threshold=-1.0)
        assert model.cost_fn is hazard_cost and isinstance(model.policy.planner.model, CostFunctionModel)
    finally:
        model.configure_planner(cost_fn=None, cost_threshold=0.5)
    assert model.policy.planner.model is model.policy.dynamics


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cost_threshold": -0.5}, "cost_threshold"),
        ({"cost_threshold": math.nan}, "cost_threshold"),
        ({"cost_pessimism": math.nan}, "cost_pessimism"),
        ({"min_feasible": 0}, "min_feasible"),
        ({"max_planning_iterations": 0}, "max_planning_iterations"),
        ({"widen_factor": 0.9}, "widen_factor"),
        ({"cost_fn": "no_such_module_path"}, "cost_fn"),
        ({"replay_buffer_class": ReplayBuffer}, "CostReplayBuffer"),
        ({"critic_cost_penalty": -1.0}, "critic_cost_penalty"),
        ({"critic_cost_penalty": math.inf}, "critic_cost_penalty"),
    ],
)
def test_safe_loop_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SafeLOOP("MlpPolicy", make_env(), **kwargs)


def test_missing_cost_names_the_env() -> None:
    model = SafeLOOP("MlpPolicy", "Pendulum-v1", **tiny_kwargs(learning_starts=10))
    with pytest.raises(MissingCostError, match="Pendulum-v1"):
        model.learn(5)


# ------------------------------------------------------------------------------ deploy-time constraint
@pytest.fixture(scope="module")
def loop_model() -> LOOP:
    """LOOP trained on the point mass without any cost (its env reports none)."""
    kwargs = toy_kwargs(horizon=8, population_size=32)
    model = LOOP("MlpPolicy", make_env(with_cost=False), seed=0, **kwargs)
    model.learn(400)
    return model


def run_episodes(policy, seeds: range) -> np.ndarray:
    """(return, cost, final distance to the goal) of deterministic episodes from the env seeds' start states."""
    env = make_env(with_cost=True)
    results = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        total_return = total_cost = 0.0
        for step in range(40):
            action, _ = policy.predict(obs[None], episode_start=np.array([step == 0]), deterministic=True)
            obs, reward, _, _, info = env.step(action[0])
            total_return += reward
            total_cost += info["cost"]
        results.append((total_return, total_cost, np.linalg.norm(obs - GOAL)))
    return np.array(results)


def test_deploy_time_constraint_lowers_cost(loop_model) -> None:
    free = run_episodes(loop_model, range(4))
    safe = constrain(loop_model, hazard_cost, cost_threshold=0.0)
    assert isinstance(safe, ConstrainedPolicy)
    constrained = run_episodes(safe, range(4))
    assert free[:, 1].mean() >= 5.0, free  # unconstrained: straight through the hazard
    assert constrained[:, 1].mean() <= 0.2 * free[:, 1].mean(), (constrained, free)
    assert (constrained[:, 2] < 1.9).all()  # it still moved towards the goal (start distance ~2)
    log = safe.pop_feasibility()
    assert log is not None and log["plans"] == 4 * 40 and 0 < log["feasible_fraction"] <= 1
    # The model itself is unchanged: same actions as before, its own planner back in place.
    np.testing.assert_allclose(run_episodes(loop_model, range(4)), free)
    assert not isinstance(loop_model.policy.planner.scorer, ConstrainedReturn)


def test_constrained_policy_with_evaluate_policy(loop_model) -> None:
    safe = constrain(loop_model, hazard_cost, cost_threshold=0.0, horizon=5)
    assert safe.planner.config.horizon == 5 and loop_model.policy.planner.config.horizon == 8
    env = make_env(with_cost=True)
    env.reset(seed=0)
    costs: list[float] = []
    _, lengths = evaluate_policy(
        safe,
        env,
        n_eval_episodes=1,
        return_episode_rewards=True,
        callback=lambda local, _: costs.append(local["info"]["cost"]),
    )
    assert lengths == [40] and len(costs) == 40 and sum(costs) <= 2.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cost_threshold": math.nan}, "cost_threshold"),
        ({"cost_threshold": -1.0}, "cost_threshold"),
        ({"cost_fn": None}, "learned no cost"),
        ({"max_planning_iterations": 0}, "max_planning_iterations"),
        ({"horizon": 0}, "horizon"),
        ({"cost_budget": 1.0}, "not planner arguments"),
    ],
)
def test_constrain_errors(loop_model, kwargs: dict, match: str) -> None:
    arguments = {"cost_fn": hazard_cost, "cost_threshold": 0.5, **kwargs}
    with pytest.raises(ValueError, match=match):
        constrain(loop_model, **arguments)


def test_constrain_needs_a_trained_model() -> None:
    with pytest.raises(ValueError, match="not been trained"):
        constrain(LOOP("MlpPolicy", make_env(with_cost=False), **toy_kwargs()), hazard_cost, 0.5)


def test_constrain_safe_loop_uses_learned_cost(safe_model) -> None:
    model, _ = safe_model
    safe = constrain(model, None, cost_threshold=0.1)
    assert safe.planner.model is model.policy.dynamics
    assert isinstance(safe.planner.scorer.base, MeanReturn)  # not a constraint inside a constraint
    action, _ = safe.predict(np.array([[-0.5, 0.0]], dtype=np.float32), deterministic=True)
    assert action.shape == (1, 2) and np.isfinite(action).all()


# ------------------------------------------------------------------------------------------- zoo
def test_packaged_safe_loop_hyperparameters() -> None:
    repo = Path(__file__).resolve().parents[1]
    packaged = repo / "sb3_loop" / "hyperparams" / "safe_loop.yml"
    assert packaged.read_bytes() == (repo / "hyperparams" / "safe_loop.yml").read_bytes()
    entries = yaml.safe_load(packaged.read_text())
    assert set(entries) == {
        "SafetyPointGoal1AR5-v0",
        "SafetyPointGoal1-v0",
        "SafetyHalfCheetahVelocity-v1",
        "SafetyHopperVelocity-v1",
    }
    arguments = set(inspect.signature(SafeLOOP.__init__).parameters)
    for env_id, entry in entries.items():
        assert entry["policy"] == "MlpPolicy" and entry["n_timesteps"] > 0 and entry["cost_threshold"] >= 0, env_id
        assert set(entry) - {"n_timesteps"} <= arguments, env_id
        assert env_id in gym.registry, env_id
    model = SafeLOOP(
        "MlpPolicy", "SafetyPointGoal1AR5-v0", cost_fn=entries["SafetyPointGoal1AR5-v0"]["cost_fn"], **tiny_kwargs()
    )
    assert model.policy.cost_fn is point_goal_hazard_cost
    assert model.policy.planner.termination_fn.__name__ == "never_terminates"
    hopper = SafeLOOP("MlpPolicy", "SafetyHopperVelocity-v1", **tiny_kwargs())
    assert hopper.policy.planner.termination_fn.__name__ == "hopper_termination"  # as Hopper-v5
    zoo.register_algorithms(["safe_loop"])
    from rl_zoo3.utils import ALGOS

    assert ALGOS["safe_loop"] is SafeLOOP


def test_zoo_trains_safe_loop_on_point_goal_then_enjoys(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    tiny = [
        "learning_starts:100", "population_size:16", "num_particles:2", "planning_iterations:2",
        "max_planning_iterations:4", "ensemble_size:3", "num_elites:2", "dynamics_hidden_sizes:[16,16]",
        "dynamics_train_freq:100", "dynamics_max_epochs:3", "batch_size:32", "policy_kwargs:dict(net_arch=[16])",
    ]  # fmt: skip
    try:
        zoo.main([
            "train", "--algo", "safe_loop", "--env", "SafetyPointGoal1AR5-v0", "-n", "300", "--seed", "0",
            "--eval-freq", "-1", "--num-threads", "1", "-f", "logs", "-params", *tiny,
        ])  # fmt: skip
        run = tmp_path / "logs" / "safe_loop" / "SafetyPointGoal1AR5-v0_1"
        model = SafeLOOP.load(run / "SafetyPointGoal1AR5-v0.zip")
        assert model.num_timesteps == 300 and model.cost_fn == "sb3_loop.safe:hazard_cost"
        assert model.max_planning_iterations == 4 and model.policy.dynamics.is_trained
        assert model.policy.cost_fn is point_goal_hazard_cost
        zoo.main(["enjoy", "--algo", "safe_loop", "--env", "SafetyPointGoal1AR5-v0", "-f", "logs", "--no-render", "-n", "20"])
    finally:
        zoo.register_algorithms()
