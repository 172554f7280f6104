"""The probabilistic dynamics ensemble: fitting, elites, normalisation, save/load, validation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sb3_loop.dynamics import (
    EnsembleTrainingConfig,
    ProbabilisticEnsemble,
    holdout_mask,
    print_fit_progress,
    train_ensemble,
)

torch.set_num_threads(1)

OBS_DIM, ACT_DIM = 3, 2
ENSEMBLE, ELITES, HIDDEN = 4, 2, (32, 32)
NOISE = 0.01
MAX_EPOCHS = 300

_params = np.random.default_rng(1234)
A_MAT = _params.normal(0.0, 0.2, (OBS_DIM, OBS_DIM))
B_MAT = _params.normal(0.0, 0.5, (ACT_DIM, OBS_DIM))
C_VEC = np.array([1.0, -0.5, 0.25])
D_VEC = np.array([0.5, -1.0])


def true_step(obs: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noiseless next obs, reward and cost of the known system."""
    next_obs = obs + obs @ A_MAT + action @ B_MAT
    reward = obs @ C_VEC + action @ D_VEC
    cost = 0.3 * obs[:, 2] - action[:, 1] + 0.2
    return next_obs, reward, cost


def make_data(n: int, seed: int, noise: float = NOISE) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, OBS_DIM))
    action = rng.uniform(-1.0, 1.0, (n, ACT_DIM))
    next_obs, reward, cost = true_step(obs, action)
    next_obs = next_obs + noise * rng.normal(size=next_obs.shape)
    reward = reward + noise * rng.normal(size=reward.shape)
    cost = cost + noise * rng.normal(size=cost.shape)
    data = {"obs": obs, "action": action, "reward": reward, "next_obs": next_obs, "cost": cost}
    return {k: v.astype(np.float32) for k, v in data.items()}


def new_model(seed: int = 0, lr: float = 1e-3, **kwargs) -> tuple[ProbabilisticEnsemble, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    kwargs = {"ensemble_size": ENSEMBLE, "num_elites": ELITES, "hidden_sizes": HIDDEN, **kwargs}
    model = ProbabilisticEnsemble(OBS_DIM, ACT_DIM, **kwargs)
    return model, torch.optim.Adam(model.parameters(), lr=lr)


def fit(model, optimizer, data, seed=0, with_cost=False, indices=None, fresh=None, on_epoch=None, **config):
    return train_ensemble(
        model,
        optimizer,
        data["obs"],
        data["action"],
        data["reward"],
        data["next_obs"],
        cost=data["cost"] if with_cost else None,
        config=EnsembleTrainingConfig(**config),
        generator=torch.Generator().manual_seed(seed),
        indices=indices,
        fresh=fresh,
        on_epoch=on_epoch,
    )


@pytest.fixture(scope="module")
def trained():
    """An ensemble fitted to 1500 noisy transitions of the linear system (early stopping on)."""
    model, optimizer = new_model(seed=0)
    data = make_data(1500, seed=0)
    stats = fit(model, optimizer, data, seed=0, max_epochs=MAX_EPOCHS)
    return model, optimizer, data, stats


def test_fits_linear_system(trained) -> None:
    model, _, _, stats = trained
    # Holdout MSE in normalised target units; observed ~6e-4 (noise floor), threshold with margin.
    assert len(stats.holdout_mse) == ENSEMBLE
    assert max(stats.holdout_mse) < 5e-3
    assert torch.isfinite(model.holdout_mse).all()
    assert model.is_trained and int(model.num_trainings) == 1
    # Deterministic predictions on fresh data are close to the noiseless truth.
    fresh = make_data(500, seed=99)
    pred = model.sample(torch.as_tensor(fresh["obs"]), torch.as_tensor(fresh["action"]), deterministic=True)
    next_obs, reward, _ = true_step(fresh["obs"], fresh["action"])
    assert pred.next_obs.shape == (500, OBS_DIM) and pred.reward.shape == (500,) and pred.cost is None
    assert np.abs(pred.next_obs.numpy() - next_obs).max() < 0.15
    assert np.abs(pred.reward.numpy() - reward).max() < 0.3
    assert ((pred.next_obs.numpy() - next_obs) ** 2).mean() < 1e-3
    assert ((pred.reward.numpy() - reward) ** 2).mean() < 2e-3


def test_holdout_loss_falls_and_early_stopping(trained) -> None:
    _, _, data, stats = trained
    assert stats.holdout_history[-1] < stats.holdout_history[0]
    assert stats.holdout_history[-1] < 0.1 * stats.holdout_history[0]
    assert len(stats.holdout_history) == stats.epochs + 1
    # Easy problem: early stopping ends training well before the cap.
    assert 5 <= stats.epochs < MAX_EPOCHS
    assert stats.num_samples == len(data["obs"])


def test_max_epochs_caps_training() -> None:
    model, optimizer = new_model(seed=1)
    stats = fit(model, optimizer, make_data(400, seed=1), seed=1, max_epochs=3, patience=100)
    assert stats.epochs == 3
    assert len(stats.holdout_history) == 4


def test_on_epoch_reports_every_epoch(capsys) -> None:
    model, optimizer = new_model(seed=1)
    data = make_data(400, seed=1)
    seen: list[tuple[int, float]] = []
    stats = fit(
        model, optimizer, data, seed=1, on_epoch=lambda epoch, mse: seen.append((epoch, mse)), max_epochs=3, patience=100
    )
    assert [epoch for epoch, _ in seen] == [1, 2, 3]
    assert [mse for _, mse in seen] == pytest.approx(stats.holdout_history[1:])
    print_fit_progress(400)(2, 0.125)
    assert "400 transitions: epoch 2, holdout MSE 0.1250" in capsys.readouterr().out


def test_elites_are_lowest_holdout_members(trained) -> None:
    model, _, data, _ = trained
    mse = model.holdout_mse
    assert torch.equal(mse, torch.sort(mse).values)
    # Recompute each member's holdout MSE independently: the fixed split by row id, normalised with
    # the stored statistics (a first fit: all members share the training data's normaliser).
    n = len(data["obs"])
    holdout = torch.as_tensor(holdout_mask(np.arange(n), 0.2))
    obs, action = torch.as_tensor(data["obs"])[holdout], torch.as_tensor(data["action"])[holdout]
    targets = model.make_targets(obs, torch.as_tensor(data["reward"])[holdout], torch.as_tensor(data["next_obs"])[holdout])
    with torch.no_grad():
        mean, _ = model(model.normalize_inputs(obs, action))
    y = (targets - model.target_mean) / model.target_std
    recomputed = ((mean - y) ** 2).mean(dim=(1, 2))
    torch.testing.assert_close(recomputed, mse, rtol=1e-4, atol=1e-7)
    elites = set(torch.argsort(recomputed)[:ELITES].tolist())
    assert elites == set(range(ELITES))


def test_state_dict_round_trip(trained) -> None:
    model, _, _, _ = trained
    # The normaliser was fitted (not the defaults), so it has to travel through the state dict.
    assert not torch.allclose(model.input_mean, torch.zeros_like(model.input_mean))
    assert not torch.allclose(model.target_std, torch.ones_like(model.target_std))
    clone, _ = new_model(seed=123)
    assert not clone.is_trained
    clone.load_state_dict(model.state_dict())
    for name in ("input_mean", "input_std", "target_mean", "target_std", "holdout_mse", "num_trainings"):
        assert torch.equal(getattr(clone, name), getattr(model, name)), name
    assert clone.is_trained
    obs, action = torch.randn(64, OBS_DIM), torch.rand(64, ACT_DIM) * 2 - 1
    for deterministic in (True, False):
        a = model.sample(obs, action, torch.Generator().manual_seed(5), deterministic=deterministic)
        b = clone.sample(obs, action, torch.Generator().manual_seed(5), deterministic=deterministic)
        assert torch.equal(a.next_obs, b.next_obs) and torch.equal(a.reward, b.reward)


def test_reorder_members_permutes_consistently(trained) -> None:
    model = copy.deepcopy(trained[0])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(1, 16, OBS_DIM + ACT_DIM).expand(ENSEMBLE, -1, -1)
    model(x)[0].sum().backward()
    optimizer.step()  # creates per-member Adam state
    with torch.no_grad():
        old_mean, old_logvar = model(x)
    old_mse = model.holdout_mse.clone()
    weight = model.hidden_layers[0].weight
    old_exp_avg = optimizer.state[weight]["exp_avg"].clone()
    order = torch.tensor([2, 0, 3, 1])
    model.reorder_members(order, optimizer)
    with torch.no_grad():
        new_mean, new_logvar = model(x)
    for i, j in enumerate(order.tolist()):
        torch.testing.assert_close(new_mean[i], old_mean[j])
        torch.testing.assert_close(new_logvar[i], old_logvar[j])
        assert model.holdout_mse[i] == old_mse[j]
        torch.testing.assert_close(optimizer.state[weight]["exp_avg"][i], old_exp_avg[j])
    # A non-trivial permutation really changed member 0.
    assert not torch.allclose(new_mean[0], old_mean[0])


def test_learns_extra_cost_target() -> None:
    model, optimizer = new_model(seed=2, lr=3e-3, num_extra_targets=1)
    assert model.target_dim == 1 + OBS_DIM + 1
    fit(model, optimizer, make_data(1000, seed=2), seed=2, with_cost=True, max_epochs=40)
    fresh = make_data(300, seed=98)
    obs, action = torch.as_tensor(fresh["obs"]), torch.as_tensor(fresh["action"])
    _, _, cost = true_step(fresh["obs"], fresh["action"])
    pred = model.sample(obs, action, deterministic=True)
    assert pred.cost is not None and pred.cost.shape == (300,)
    # Observed ~3e-4 (cost variance ~0.36).
    assert ((pred.cost.numpy() - cost) ** 2).mean() < 3e-3
    with torch.no_grad():
        step = model.step_members(obs.expand(ENSEMBLE, -1, -1), action.expand(ENSEMBLE, -1, -1), None)
    assert step.cost is not None and step.cost.shape == (ENSEMBLE, 300)
    assert ((step.cost[0].numpy() - cost) ** 2).mean() < 3e-3


def test_missing_cost_raises() -> None:
    model, optimizer = new_model(num_extra_targets=1)
    with pytest.raises(ValueError, match="cost"):
        fit(model, optimizer, make_data(50, seed=3), max_epochs=1)


@pytest.mark.parametrize(
    "name, bad",
    [
        ("action", lambda d: d["action"][:-1]),
        ("reward", lambda d: d["reward"][:-3]),
        ("next_obs", lambda d: np.concatenate([d["next_obs"], d["next_obs"][:2]])),
        ("cost", lambda d: d["cost"][:-1]),
    ],
)
def test_mismatched_lengths_raise(name, bad) -> None:
    data = make_data(50, seed=4)
    data[name] = bad(data)
    model, optimizer = new_model(num_extra_targets=1)
    with pytest.raises(ValueError, match=name) as info:
        fit(model, optimizer, data, with_cost=True, max_epochs=1)
    assert str(len(data[name])) in str(info.value)


@pytest.mark.parametrize("name, width", [("obs", 4), ("action", 3), ("next_obs", 2)])
def test_wrong_feature_count_raises(name, width) -> None:
    data = make_data(50, seed=5)
    data[name] = np.zeros((50, width), dtype=np.float32)
    model, optimizer = new_model()
    with pytest.raises(ValueError, match=rf"^{name} has {width} features"):
        fit(model, optimizer, data, max_epochs=1)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"ensemble_size": 4, "num_elites": 5}, "num_elites"),
        ({"ensemble_size": 0, "num_elites": 1}, "ensemble_size"),
        ({"num_elites": 0}, "num_elites"),
        ({"hidden_sizes": ()}, "hidden_sizes"),
        ({"hidden_sizes": (32, 0)}, "hidden_sizes"),
        ({"num_extra_targets": -1}, "num_extra_targets"),
    ],
)
def test_invalid_constructor_args_raise(kwargs, name) -> None:
    with pytest.raises(ValueError, match=name):
        ProbabilisticEnsemble(OBS_DIM, ACT_DIM, **kwargs)


def test_deterministic_sample_is_elite_mean(trained) -> None:
    model = trained[0]
    obs, action = torch.randn(16, OBS_DIM), torch.rand(16, ACT_DIM)
    with torch.no_grad():
        members = model.step_members(obs.expand(ENSEMBLE, -1, -1), action.expand(ENSEMBLE, -1, -1), None)
    pred = model.sample(obs, action, deterministic=True)
    torch.testing.assert_close(pred.next_obs, members.next_obs[:ELITES].mean(0))
    torch.testing.assert_close(pred.reward, members.reward[:ELITES].mean(0))
    # Stochastic samples come from the elites only: with zero noise they would be one elite's mean.
    assert not torch.allclose(members.reward[ELITES:].mean(0), pred.reward, atol=1e-6)


def test_keeps_best_snapshot_when_training_makes_it_worse(trained) -> None:
    model, _, data, _ = trained
    model = copy.deepcopy(model)
    fresh = make_data(200, seed=97)
    obs, action = torch.as_tensor(fresh["obs"]), torch.as_tensor(fresh["action"])
    before = model.sample(obs, action, deterministic=True)
    mse_before = model.holdout_mse.clone()
    # A destructive learning rate: no epoch improves on the fitted weights, so they are restored.
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    stats = fit(model, optimizer, data, seed=0, max_epochs=2, patience=100, refit_selection="keep_better")
    assert min(stats.holdout_history[1:]) > 10 * stats.holdout_history[0]
    after = model.sample(obs, action, deterministic=True)
    torch.testing.assert_close(after.next_obs, before.next_obs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(after.reward, before.reward, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.holdout_mse, mse_before, rtol=1e-4, atol=1e-7)


def test_diverged_training_keeps_a_usable_model(trained) -> None:
    """A diverging call (NaN weights) restores the snapshot, shared log-variance bounds included."""
    model = copy.deepcopy(trained[0])
    bounds = (model.max_logvar.detach().clone(), model.min_logvar.detach().clone())
    stats = fit(model, torch.optim.SGD(model.parameters(), lr=1.0), trained[2], seed=0, max_epochs=1, patience=100)
    assert not np.isfinite(stats.holdout_history[-1])  # the epoch really diverged
    assert torch.equal(model.max_logvar, bounds[0]) and torch.equal(model.min_logvar, bounds[1])
    pred = model.sample(torch.randn(8, OBS_DIM), torch.rand(8, ACT_DIM), torch.Generator().manual_seed(0))
    assert torch.isfinite(pred.reward).all() and torch.isfinite(pred.next_obs).all()


def test_sample_reproducible_with_seeded_generator(trained) -> None:
    model = trained[0]
    obs, action = torch.randn(32, OBS_DIM), torch.rand(32, ACT_DIM)
    a = model.sample(obs, action, torch.Generator().manual_seed(7))
    b = model.sample(obs, action, torch.Generator().manual_seed(7))
    c = model.sample(obs, action, torch.Generator().manual_seed(8))
    assert torch.equal(a.next_obs, b.next_obs) and torch.equal(a.reward, b.reward)
    assert not torch.equal(a.next_obs, c.next_obs)
    # Stochastic samples stay near the deterministic mean (small learned noise).
    mean = model.sample(obs, action, deterministic=True)
    assert (a.next_obs - mean.next_obs).abs().max() < 1.0


def test_non_finite_rows_are_dropped() -> None:
    data = make_data(300, seed=6)
    data["obs"][[3, 50, 100]] = np.nan
    data["action"][7, 1] = np.inf
    data["reward"][[11, 200]] = np.nan
    data["next_obs"][250, 2] = -np.inf
    model, optimizer = new_model(seed=6)
    stats = fit(model, optimizer, data, seed=6, max_epochs=5, patience=100)
    assert stats.num_samples == 300 - 7
    assert np.isfinite(stats.holdout_mse).all() and np.isfinite(stats.train_loss)
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point():
            assert torch.isfinite(tensor).all(), name
    pred = model.sample(torch.randn(8, OBS_DIM), torch.rand(8, ACT_DIM), deterministic=True)
    assert torch.isfinite(pred.next_obs).all() and torch.isfinite(pred.reward).all()


def test_cpu_inference_in_chunks_matches_one_pass(monkeypatch) -> None:
    """Without gradients large batches are evaluated in chunks of rows: the same predictions, in order."""
    from sb3_loop.dynamics import ensemble as ensemble_module

    torch.manual_seed(0)
    model = ProbabilisticEnsemble(3, 2, ensemble_size=3, num_elites=2, hidden_sizes=(8, 8))
    inputs = torch.randn(3, 50, 5)
    with torch.no_grad():
        whole = model(inputs)
        monkeypatch.setattr(ensemble_module, "CPU_INFERENCE_CHUNK", 7)
        chunked = model(inputs)
    for expected, got in zip(whole, chunked):
        assert got.shape == expected.shape == (3, 50, 3 + 1)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    calls = []
    monkeypatch.setattr(model, "_predict", lambda x: calls.append(x.shape[1]) or (x[..., :4], x[..., :4]))
    with torch.no_grad():
        model(inputs)
    assert calls == [7] * 7 + [1]
    calls.clear()
    model(inputs)  # with gradients (training): one pass
    assert calls == [50]
