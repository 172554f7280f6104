"""Refits of the dynamics ensemble: a fixed holdout, weights kept with their own normaliser, new data learned."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sb3_loop.dynamics import EnsembleTrainingConfig, holdout_mask, scaled_mse
from sb3_loop.dynamics import training as training_module
from tests.test_dynamics import ACT_DIM, ENSEMBLE, OBS_DIM, make_data, new_model
from tests.test_dynamics import fit as refit

torch.set_num_threads(1)


def concat(*parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def shifted_system(n: int, seed: int) -> dict[str, np.ndarray]:
    """A changed system: other inputs (obs centred at +2) and an extra drift on the next observation."""
    data = make_data(n, seed)
    data["obs"] = data["obs"] + 2.0
    data["next_obs"] = data["next_obs"] + 2.0 + 0.5 * data["action"][:, :1]
    return data


def inputs_targets(model, data) -> tuple[torch.Tensor, torch.Tensor]:
    obs, action = torch.as_tensor(data["obs"]), torch.as_tensor(data["action"])
    targets = model.make_targets(obs, torch.as_tensor(data["reward"]), torch.as_tensor(data["next_obs"]))
    return torch.cat((obs, action), dim=-1), targets


def test_holdout_assignment_is_fixed_by_id() -> None:
    ids = np.arange(20_000)
    mask = holdout_mask(ids, 0.2)
    assert 0.18 < mask.mean() < 0.22
    # The same id gets the same answer whatever else is in the batch (a growing buffer keeps its split).
    np.testing.assert_array_equal(holdout_mask(ids[:500], 0.2), mask[:500])
    np.testing.assert_array_equal(holdout_mask(ids[::-1], 0.2), mask[::-1])


def test_holdout_rows_are_never_in_a_training_minibatch(monkeypatch) -> None:
    """Three refits on a growing buffer: no row held out at the last refit was ever trained on."""
    seen: list[torch.Tensor] = []
    original = training_module.gaussian_nll_loss
    model, optimizer = new_model(seed=3)

    def recording_loss(model_, x, y, decays, coef):
        # Every member shares the call's normaliser while it trains: member 0's statistics undo it.
        seen.append((x * model_.input_std[0] + model_.input_mean[0]).reshape(-1, x.shape[-1]).detach().clone())
        return original(model_, x, y, decays, coef)

    monkeypatch.setattr(training_module, "gaussian_nll_loss", recording_loss)
    buffer = make_data(900, seed=11)
    for size in (300, 600, 900):
        part = {key: value[:size] for key, value in buffer.items()}
        refit(model, optimizer, part, seed=size, indices=np.arange(size), max_epochs=3, patience=100)
    trained_rows = torch.cat(seen)
    holdout = torch.as_tensor(holdout_mask(np.arange(900), 0.2))
    held_inputs = inputs_targets(model, buffer)[0][holdout]
    assert len(held_inputs) > 100 and len(trained_rows) > 1000
    distance = torch.cdist(held_inputs, trained_rows).min()
    assert distance > 1e-3, f"a held-out row was trained on (distance {distance:.2e})"


def _member_pairs_are_consistent(before, after, new_normalizer) -> int:
    """
    Check every member of ``after``: either its weights are a member's pre-refit weights and it carries
    that member's pre-refit normaliser, or it carries the new normaliser. Returns how many kept old weights.
    """
    kept = 0
    for i in range(after.ensemble_size):
        weight = after.output_layer.weight[i]
        matches = [j for j in range(before.ensemble_size) if torch.equal(before.output_layer.weight[j], weight)]
        if matches:
            kept += 1
            j = matches[0]
            for name in ("input_mean", "input_std", "target_mean", "target_std"):
                assert torch.equal(getattr(after, name)[i], getattr(before, name)[j]), (i, name)
        else:
            for name, value in new_normalizer.items():
                torch.testing.assert_close(getattr(after, name)[i, 0], value, rtol=1e-5, atol=1e-6)
    return kept


def _training_normalizer(model, data) -> dict[str, torch.Tensor]:
    inputs, targets = inputs_targets(model, data)
    train = ~torch.as_tensor(holdout_mask(np.arange(len(inputs)), 0.2))
    stats = {}
    for name, values in (("input", inputs[train]), ("target", targets[train])):
        stats[f"{name}_mean"] = values.mean(0)
        stats[f"{name}_std"] = values.std(0, unbiased=False)
    return stats


@pytest.mark.parametrize("selection", ["keep_better", "best_epoch"])
def test_weights_never_sit_with_a_foreign_normaliser(selection) -> None:
    """
    A refit whose training only hurts (destructive learning rate) on more data of the same system: the
    new data moves the normaliser a little, enough to change every prediction of the old weights.
    """
    model, optimizer = new_model(seed=4)
    first = make_data(600, seed=4)
    refit(model, optimizer, first, max_epochs=40)
    before = copy.deepcopy(model)
    data = concat(first, make_data(600, seed=5))
    destructive = torch.optim.Adam(model.parameters(), lr=0.1)
    stats = refit(model, destructive, data, max_epochs=2, patience=100, refit_selection=selection)
    kept = _member_pairs_are_consistent(before, model, _training_normalizer(model, data))
    assert kept == stats.kept_previous
    probe = torch.randn(64, OBS_DIM) + 1.0, torch.rand(64, ACT_DIM) * 2 - 1
    if selection == "keep_better":
        # No epoch beats the old weights with their old normaliser: every member keeps that pair, so the
        # model predicts exactly what it predicted before the refit.
        assert kept == ENSEMBLE
        for i in range(ENSEMBLE):
            j = next(j for j in range(ENSEMBLE) if torch.equal(before.output_layer.weight[j], model.output_layer.weight[i]))
            x_new, x_old = model.normalize_inputs(*probe)[i], before.normalize_inputs(*probe)[j]
            with torch.no_grad():
                new = model.denormalize_targets(model(x_new.expand(ENSEMBLE, -1, -1))[0])[i]
                old = before.denormalize_targets(before(x_old.expand(ENSEMBLE, -1, -1))[0])[j]
            torch.testing.assert_close(new, old, rtol=1e-5, atol=1e-5)
    else:
        assert kept == 0  # always the refit's best epoch, with the refit's normaliser


def test_a_normal_refit_keeps_consistent_pairs() -> None:
    model, optimizer = new_model(seed=6)
    first = make_data(600, seed=6)
    refit(model, optimizer, first, max_epochs=40)
    before = copy.deepcopy(model)
    data = concat(first, shifted_system(300, seed=7))
    stats = refit(model, optimizer, data, max_gradient_steps=30)
    assert _member_pairs_are_consistent(before, model, _training_normalizer(model, data)) == stats.kept_previous


@pytest.mark.parametrize("selection", ["keep_better", "best_epoch"])
def test_refit_on_a_changed_system_learns_the_new_data(selection) -> None:
    """
    After a long fit on noisy data of one system, the system changes (the action now also drifts the
    next observation). One capped refit (100 updates, as LOOP refits) on the buffer with the new
    transitions lowers the error on the changed system, measured against its noise-free function on
    inputs never trained on. (Judged on a holdout it had trained on, the old refit kept the old weights
    here and the error did not fall: 0.255 -> 0.249.) ``fresh_mse`` is the error on the new transitions
    before the refit.
    """
    drift = 0.5

    def changed_system(n: int, seed: int, noise: float) -> dict[str, np.ndarray]:
        data = make_data(n, seed, noise=noise)
        data["next_obs"] = data["next_obs"] + drift * data["action"][:, :1]
        return data

    model, optimizer = new_model(seed=8, hidden_sizes=(64, 64))
    old_system = make_data(1000, seed=8, noise=0.2)
    refit(model, optimizer, old_system, max_epochs=400, patience=400)
    buffer = concat(old_system, changed_system(200, seed=21, noise=0.2))
    fresh = np.arange(len(buffer["obs"])) >= len(old_system["obs"])
    truth_x, truth_y = inputs_targets(model, changed_system(500, seed=10, noise=0.0))
    scale = truth_y.std(0)
    error_before = scaled_mse(model, truth_x, truth_y, scale)[: model.num_elites].mean()
    stats = refit(
        model, optimizer, buffer, seed=1, fresh=fresh, max_gradient_steps=100, batch_size=32, refit_selection=selection
    )
    error_after = scaled_mse(model, truth_x, truth_y, scale)[: model.num_elites].mean()
    assert error_after < 0.9 * error_before, (float(error_before), float(error_after))
    assert stats.fresh_mse is not None and stats.fresh_mse > stats.elite_holdout_mse


def test_fresh_mse_is_measured_before_training() -> None:
    model, optimizer = new_model(seed=12)
    data = make_data(600, seed=12)
    first = refit(model, optimizer, data, max_epochs=30)
    assert first.fresh_mse is None  # nothing to compare on a first fit
    before = copy.deepcopy(model)
    more = concat(data, make_data(200, seed=13))
    fresh = np.arange(800) >= 600
    stats = refit(model, optimizer, more, max_epochs=2, fresh=fresh)
    x, y = inputs_targets(before, {k: v[600:] for k, v in more.items()})
    train_targets = inputs_targets(before, more)[1][~torch.as_tensor(holdout_mask(np.arange(800), 0.2))]
    expected = scaled_mse(before, x, y, train_targets.std(0, unbiased=False))[: before.num_elites].mean()
    assert stats.fresh_mse == pytest.approx(float(expected), rel=1e-4)


def test_refit_selection_is_validated() -> None:
    with pytest.raises(ValueError, match="refit_selection='newest'"):
        EnsembleTrainingConfig(refit_selection="newest")


def test_bad_indices_length_is_named() -> None:
    model, optimizer = new_model(seed=14)
    with pytest.raises(ValueError, match="indices has 3 entries but there are 50 transitions"):
        refit(model, optimizer, make_data(50, seed=14), indices=np.arange(3))
