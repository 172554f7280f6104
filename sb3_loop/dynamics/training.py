"""Fitting the probabilistic ensemble: holdout split, per-member shuffles, early stopping, elites."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from sb3_loop.dynamics.ensemble import NORMALIZER_BUFFERS, ProbabilisticEnsemble, default_weight_decays

#: What a member keeps after a refit, see :class:`EnsembleTrainingConfig`.
REFIT_SELECTIONS = ("best_epoch", "keep_better")


@dataclass
class EnsembleTrainingConfig:
    """
    Settings of :func:`train_ensemble` (defaults: the paper's).

    :param batch_size: Minibatch size per member.
    :param holdout_ratio: Fraction of the data held out for early stopping and elite selection.
    :param max_holdout: Cap on the holdout size (keeps evaluation cheap on large buffers).
    :param max_epochs: Epoch cap per call (``None``: train until early stopping alone stops it).
    :param max_gradient_steps: Cap on minibatch updates per call (``None``: no cap). An epoch costs
        time proportional to the dataset, so this keeps the cost of a refit bounded as data grows.
    :param patience: Stop after this many epochs in which no member improved by more than ``improvement``.
    :param improvement: Relative holdout improvement that counts (0.01 = 1%).
    :param weight_decays: L2 coefficient per weight layer (hidden layers then output);
        ``None`` uses the paper's values.
    :param logvar_bound_coef: Penalty on ``sum(max_logvar) - sum(min_logvar)``.
    :param refit_selection: What a member keeps after a call on an already trained ensemble.
        ``"best_epoch"`` (default): its best epoch of this call (the paper's code: "best" starts at +inf).
        ``"keep_better"``: its pre-refit weights, with the normaliser they were trained with, when those
        predict the holdout better than the call's best epoch. Both judge on the fixed holdout only.
    """

    batch_size: int = 256
    holdout_ratio: float = 0.2
    max_holdout: int = 5000
    max_epochs: int | None = 100
    max_gradient_steps: int | None = None
    patience: int = 5
    improvement: float = 0.01
    weight_decays: Sequence[float] | None = None
    logvar_bound_coef: float = 0.01
    refit_selection: str = "best_epoch"

    def __post_init__(self) -> None:
        if self.refit_selection not in REFIT_SELECTIONS:
            raise ValueError(f"refit_selection={self.refit_selection!r} must be one of {REFIT_SELECTIONS}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")
        if not 0.0 < self.holdout_ratio < 1.0:
            raise ValueError(f"holdout_ratio={self.holdout_ratio} must be in (0, 1)")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise ValueError(f"max_epochs={self.max_epochs} must be >= 1 or None")
        if self.max_gradient_steps is not None and self.max_gradient_steps < 1:
            raise ValueError(f"max_gradient_steps={self.max_gradient_steps} must be >= 1 or None")
        if self.patience < 1:
            raise ValueError(f"patience={self.patience} must be >= 1")


@dataclass
class EnsembleTrainingStats:
    """
    What one call of :func:`train_ensemble` did. MSEs are of the mean prediction, in units of the
    standard deviation of this call's training targets, on rows never trained on.

    :param holdout_mse: Holdout MSE per member after the call (sorted, elites first).
    :param kept_previous: Members that kept their pre-refit weights (``refit_selection="keep_better"``).
    :param fresh_mse: Elite MSE on the ``fresh`` rows before training (``None`` without fresh rows or
        on a first fit).
    """

    holdout_mse: list[float]
    epochs: int
    gradient_steps: int
    seconds: float
    train_loss: float
    num_samples: int
    holdout_history: list[float] = field(default_factory=list)
    num_holdout: int = 0
    kept_previous: int = 0
    fresh_mse: float | None = None

    @property
    def elite_holdout_mse(self) -> float:
        return float(np.mean(self.holdout_mse))


def train_ensemble(
    model: ProbabilisticEnsemble,
    optimizer: torch.optim.Optimizer,
    obs: np.ndarray | torch.Tensor,
    action: np.ndarray | torch.Tensor,
    reward: np.ndarray | torch.Tensor,
    next_obs: np.ndarray | torch.Tensor,
    cost: np.ndarray | torch.Tensor | None = None,
    config: EnsembleTrainingConfig | None = None,
    generator: torch.Generator | None = None,
    indices: np.ndarray | torch.Tensor | None = None,
    fresh: np.ndarray | torch.Tensor | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> EnsembleTrainingStats:
    """
    Fit the ensemble on transitions, keep each member's best holdout snapshot and sort members so the
    elites (lowest holdout MSE) come first.

    The holdout is fixed by each transition's index (:func:`holdout_mask`): called again with the same
    indices (e.g. replay buffer slots), a transition is never trained on once it was held out, so early
    stopping, elites and the keep-the-previous-weights decision are judged on data the model never saw.

    :param model: The ensemble to train (in place).
    :param optimizer: Optimiser over ``model.parameters()``.
    :param obs: Observations [N, obs_dim].
    :param action: Actions [N, action_dim] (as the planner will feed them, e.g. scaled to [-1, 1]).
    :param reward: Rewards [N].
    :param next_obs: Next observations [N, obs_dim].
    :param cost: Constraint costs [N] when the ensemble predicts them.
    :param config: Training settings.
    :param generator: Random generator for shuffles and the holdout subsample (CPU generator).
    :param indices: Stable integer id per transition [N] deciding holdout membership (default: row number).
    :param fresh: Boolean mask [N] of transitions the model has never seen (collected since its last
        fit): their error before training is reported as ``fresh_mse``.
    :param on_epoch: Called after every epoch with the epoch number (from 1) and the mean holdout MSE
        over members, e.g. to show the progress of a long fit on a large dataset.
    :return: Holdout MSE per member (sorted, elites first), epochs, seconds, last training loss, ...
    """
    config = config or EnsembleTrainingConfig()
    start = time.perf_counter()
    inputs, targets, finite = _prepare_data(model, obs, action, reward, next_obs, cost)
    num_samples = inputs.shape[0]
    if num_samples < 2:
        raise ValueError(f"need at least 2 transitions to train the dynamics ensemble, got {num_samples}")
    decays = tuple(config.weight_decays or default_weight_decays(len(model.layers)))
    if len(decays) != len(model.layers):
        raise ValueError(f"weight_decays has {len(decays)} entries but the ensemble has {len(model.layers)} layers")
    row_ids = _row_ids(indices, len(finite), "indices")[finite.cpu().numpy()]
    holdout_idx, train_idx = _split_rows(row_ids, config, generator, inputs.device)
    train_x, train_y = inputs[train_idx], targets[train_idx]
    holdout = (inputs[holdout_idx], targets[holdout_idx])
    # Errors are measured in units of the training targets' spread, whatever normaliser a member uses.
    scale = _spread(train_y)

    previously_trained = model.is_trained
    previous = _full_state(model)
    fresh_mse, previous_mse = None, None
    if previously_trained:
        fresh_mse = _fresh_error(model, fresh, finite, inputs, targets, scale)
        previous_mse = scaled_mse(model, *holdout, scale)

    model.set_normalizer(train_x, train_y)
    normalized_train = _normalize(model, train_x, train_y)
    fit = _fit(model, optimizer, normalized_train, holdout, scale, config, decays, generator, on_epoch)
    history = [float((previous_mse if previous_mse is not None else fit.start_mse).mean()), *fit.history]

    keep_previous = _members_keeping_previous(previous_mse, fit.best_mse, config.refit_selection)
    _restore(model, fit.best_state)
    _restore(model, previous, members=keep_previous, shared=bool(keep_previous.all()))
    model.holdout_mse.copy_(scaled_mse(model, *holdout, scale))
    model.reorder_members(torch.argsort(model.holdout_mse), optimizer)
    model.num_trainings += 1
    return EnsembleTrainingStats(
        holdout_mse=model.holdout_mse.tolist(),
        epochs=fit.epochs,
        gradient_steps=fit.gradient_steps,
        seconds=time.perf_counter() - start,
        train_loss=fit.train_loss,
        num_samples=num_samples,
        holdout_history=history,
        num_holdout=int(holdout_idx.numel()),
        kept_previous=int(keep_previous.sum()),
        fresh_mse=fresh_mse,
    )


@dataclass
class _FitResult:
    """Outcome of the epochs of one call: each member's best holdout MSE and the weights that reached it."""

    start_mse: torch.Tensor
    best_mse: torch.Tensor
    best_state: dict[str, torch.Tensor]
    epochs: int
    gradient_steps: int
    train_loss: float
    history: list[float]


def _fit(
    model: ProbabilisticEnsemble,
    optimizer: torch.optim.Optimizer,
    normalized_train: tuple[torch.Tensor, torch.Tensor],
    holdout: tuple[torch.Tensor, torch.Tensor],
    scale: torch.Tensor,
    config: EnsembleTrainingConfig,
    decays: Sequence[float],
    generator: torch.Generator | None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> _FitResult:
    """Train epoch by epoch until early stopping or a cap; snapshot each member's best epoch."""
    # "Best" starts at +inf: the weights from before this call never count as one of its epochs.
    start_mse = scaled_mse(model, *holdout, scale)
    best_mse = torch.full_like(start_mse, math.inf)
    best_state = _full_state(model)
    epochs_since_improvement, epoch, gradient_steps, train_loss = 0, 0, 0, float("nan")
    budget, history = config.max_gradient_steps, []
    while (config.max_epochs is None or epoch < config.max_epochs) and (budget is None or gradient_steps < budget):
        max_batches = None if budget is None else budget - gradient_steps
        train_loss, batches = _train_epoch(model, optimizer, *normalized_train, config, decays, generator, max_batches)
        gradient_steps += batches
        epoch += 1
        mse = scaled_mse(model, *holdout, scale)
        history.append(float(mse.mean()))
        if on_epoch is not None:
            on_epoch(epoch, history[-1])
        improved = torch.isfinite(mse) & ((best_mse - mse) > config.improvement * best_mse.clamp_max(1e30))
        if improved.any():
            best_mse = torch.where(improved, mse, best_mse)
            _snapshot(model, best_state, improved)
            epochs_since_improvement = 0
        else:
            epochs_since_improvement += 1
        if epochs_since_improvement >= config.patience:
            break
    return _FitResult(start_mse, best_mse, best_state, epoch, gradient_steps, train_loss, history)


def _members_keeping_previous(previous_mse: torch.Tensor | None, best_mse: torch.Tensor, selection: str) -> torch.Tensor:
    """Members that go back to their pre-refit weights (never on a first fit)."""
    if previous_mse is None:
        return torch.zeros_like(best_mse, dtype=torch.bool)
    keep = ~torch.isfinite(best_mse)  # no usable epoch: the previous weights stay
    if selection == "keep_better":
        keep |= previous_mse < best_mse
    return keep


def _split_rows(
    row_ids: np.ndarray, config: EnsembleTrainingConfig, generator: torch.Generator | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Holdout rows (a random subset of at most ``max_holdout`` of the fixed holdout) and training rows."""
    is_holdout = torch.as_tensor(_split(row_ids, config.holdout_ratio), device=device)
    return _holdout_rows(is_holdout, config.max_holdout, generator), torch.nonzero(~is_holdout)[:, 0]


def _fresh_error(
    model: ProbabilisticEnsemble,
    fresh: np.ndarray | torch.Tensor | None,
    finite: torch.Tensor,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    scale: torch.Tensor,
) -> float | None:
    """Elite MSE on the rows flagged ``fresh`` (before any training of this call)."""
    if fresh is None:
        return None
    rows = torch.as_tensor(_row_ids(fresh, len(finite), "fresh").astype(bool), device=inputs.device)[finite]
    if not rows.any():
        return None
    return float(scaled_mse(model, inputs[rows], targets[rows], scale)[: model.num_elites].mean())


def holdout_mask(indices: np.ndarray | Sequence[int], holdout_ratio: float) -> np.ndarray:
    """
    Fixed holdout assignment: ``True`` for the ids a hash of the id puts in the holdout fraction.

    The same id is always assigned the same way (for any data size), so a replay-buffer slot held out
    at one refit is held out at every refit and its transitions are never trained on.

    :param indices: Integer ids [N] (e.g. replay buffer slots).
    :param holdout_ratio: Expected fraction held out, in (0, 1).
    """
    return _uniform_hash(np.asarray(indices)) < holdout_ratio


@torch.no_grad()
def scaled_mse(model: ProbabilisticEnsemble, inputs: torch.Tensor, targets: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """
    Per-member MSE of the mean prediction, each member with its own normaliser, in units of ``scale``.

    :param inputs: Raw (obs, action) rows [N, input_dim].
    :param targets: Raw targets [N, target_dim].
    :param scale: Per-target unit [target_dim] (e.g. the training targets' standard deviation).
    :return: [E] MSE per member.
    """
    members = model.ensemble_size
    x = (inputs - model.input_mean) / model.input_std
    mean, _ = model(x)
    error = (model.denormalize_targets(mean) - targets) / scale
    return (error**2).mean(dim=(1, 2)).reshape(members)


def _uniform_hash(ids: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random number in [0, 1) per integer id (splitmix64 finaliser)."""
    with np.errstate(over="ignore"):
        x = ids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)


def _row_ids(values: np.ndarray | torch.Tensor | None, length: int, name: str) -> np.ndarray:
    if values is None:
        return np.arange(length)
    array = values.detach().cpu().numpy() if torch.is_tensor(values) else np.asarray(values)
    array = array.reshape(-1)
    if len(array) != length:
        raise ValueError(f"{name} has {len(array)} entries but there are {length} transitions")
    return array


def _split(row_ids: np.ndarray, holdout_ratio: float) -> np.ndarray:
    """Holdout mask by id, with at least one holdout and one training row."""
    is_holdout = holdout_mask(row_ids, holdout_ratio)
    if not is_holdout.any() or is_holdout.all():
        ranks = np.argsort(_uniform_hash(row_ids))
        is_holdout = np.zeros(len(row_ids), dtype=bool)
        is_holdout[ranks[: max(1, min(round(len(row_ids) * holdout_ratio), len(row_ids) - 1))]] = True
    return is_holdout


def _holdout_rows(is_holdout: torch.Tensor, max_holdout: int, generator: torch.Generator | None) -> torch.Tensor:
    """Row numbers of the holdout, a random subset of at most ``max_holdout`` (evaluation cost)."""
    rows = torch.nonzero(is_holdout)[:, 0]
    if rows.numel() > max_holdout:
        keep = torch.randperm(rows.numel(), generator=generator)[:max_holdout].to(rows.device)
        rows = rows[keep.sort().values]
    return rows


def _spread(targets: torch.Tensor) -> torch.Tensor:
    std = targets.std(dim=0, unbiased=False)
    return torch.where(std < 1e-6, torch.ones_like(std), std)


def gaussian_nll_loss(
    model: ProbabilisticEnsemble, x: torch.Tensor, y: torch.Tensor, decays: Sequence[float], logvar_bound_coef: float
) -> torch.Tensor:
    """
    Gaussian NLL summed over members (mean over batch and dims), plus per-layer L2 and the
    log-variance bound penalty.

    :param x: Normalised inputs [E, batch, input_dim].
    :param y: Normalised targets [E, batch, target_dim].
    """
    mean, logvar = model(x)
    nll = (((mean - y) ** 2) * torch.exp(-logvar) + logvar).mean(dim=(1, 2)).sum()
    l2 = sum(decay * 0.5 * layer.weight.pow(2).sum() for decay, layer in zip(decays, model.layers))
    bound = logvar_bound_coef * (model.max_logvar.sum() - model.min_logvar.sum())
    return nll + l2 + bound


def _prepare_data(
    model: ProbabilisticEnsemble,
    obs: np.ndarray | torch.Tensor,
    action: np.ndarray | torch.Tensor,
    reward: np.ndarray | torch.Tensor,
    next_obs: np.ndarray | torch.Tensor,
    cost: np.ndarray | torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw inputs and targets of the finite rows, and the mask of those rows."""
    device = model.input_mean.device

    def as_tensor(name: str, value: np.ndarray | torch.Tensor, width: int | None) -> torch.Tensor:
        tensor = torch.as_tensor(value, dtype=torch.float32, device=device)
        tensor = tensor.reshape(tensor.shape[0], -1) if width is not None else tensor.reshape(-1)
        if width is not None and tensor.shape[1] != width:
            raise ValueError(f"{name} has {tensor.shape[1]} features per sample, expected {width}")
        return tensor

    obs_t = as_tensor("obs", obs, model.obs_dim)
    action_t = as_tensor("action", action, model.action_dim)
    next_obs_t = as_tensor("next_obs", next_obs, model.obs_dim)
    reward_t = as_tensor("reward", reward, None)
    cost_t = None if cost is None else as_tensor("cost", cost, model.num_extra_targets)
    lengths = {"obs": len(obs_t), "action": len(action_t), "reward": len(reward_t), "next_obs": len(next_obs_t)}
    lengths.update({} if cost_t is None else {"cost": len(cost_t)})
    if len(set(lengths.values())) != 1:
        raise ValueError(f"transition arrays differ in length: {lengths}")
    inputs = torch.cat((obs_t, action_t), dim=-1)
    targets = model.make_targets(obs_t, reward_t, next_obs_t, cost_t)
    finite = torch.isfinite(inputs).all(-1) & torch.isfinite(targets).all(-1)
    return inputs[finite], targets[finite], finite


def _normalize(model: ProbabilisticEnsemble, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalise with member 0's statistics (all members share them while a call trains)."""
    return (inputs - model.input_mean[0]) / model.input_std[0], (targets - model.target_mean[0]) / model.target_std[0]


def _train_epoch(
    model: ProbabilisticEnsemble,
    optimizer: torch.optim.Optimizer,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    config: EnsembleTrainingConfig,
    decays: Sequence[float],
    generator: torch.Generator | None,
    max_batches: int | None = None,
) -> tuple[float, int]:
    """One pass over the training set (or its first ``max_batches`` minibatches): (last loss, batches)."""
    num_train = train_x.shape[0]
    # Each member sees its own shuffle of the training set.
    shuffles = torch.argsort(torch.rand(model.ensemble_size, num_train, generator=generator), dim=1).to(train_x.device)
    loss_value, batches = 0.0, 0
    for start in range(0, num_train, config.batch_size):
        if max_batches is not None and batches >= max_batches:
            break
        idx = shuffles[:, start : start + config.batch_size]
        loss = gaussian_nll_loss(model, train_x[idx], train_y[idx], decays, config.logvar_bound_coef)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_value = loss.item()
        batches += 1
    return loss_value, batches


_SHARED_PARAMS = ("max_logvar", "min_logvar")


def _member_params(model: ProbabilisticEnsemble) -> list[tuple[str, torch.nn.Parameter]]:
    return [(f"{i}.{kind}", getattr(layer, kind)) for i, layer in enumerate(model.layers) for kind in ("weight", "bias")]


def _full_state(model: ProbabilisticEnsemble) -> dict[str, torch.Tensor]:
    """Copies of the member weights, the shared log-variance bounds and the per-member normalisers."""
    state = {name: p.detach().clone() for name, p in _member_params(model)}
    state.update({name: getattr(model, name).detach().clone() for name in (*_SHARED_PARAMS, *NORMALIZER_BUFFERS)})
    return state


@torch.no_grad()
def _snapshot(model: ProbabilisticEnsemble, best_state: dict[str, torch.Tensor], improved: torch.Tensor) -> None:
    for name, param in _member_params(model):
        best_state[name][improved] = param[improved]
    # The log-variance bounds are shared by all members: keep them from the latest improving epoch.
    for name in _SHARED_PARAMS:
        best_state[name] = getattr(model, name).detach().clone()


@torch.no_grad()
def _restore(
    model: ProbabilisticEnsemble, state: dict[str, torch.Tensor], members: torch.Tensor | None = None, shared: bool = True
) -> None:
    """Put back ``state`` for ``members`` (default all): weights with their normalisers; bounds if ``shared``."""
    mask = torch.ones(model.ensemble_size, dtype=torch.bool, device=model.input_mean.device) if members is None else members
    for name, param in [*_member_params(model), *((n, getattr(model, n)) for n in NORMALIZER_BUFFERS)]:
        if name in state:
            param[mask] = state[name][mask]
    if shared:
        for name in _SHARED_PARAMS:
            getattr(model, name).copy_(state[name])


def print_fit_progress(num_samples: int) -> Callable[[int, float], None]:
    """An ``on_epoch`` callback for :func:`train_ensemble` printing each epoch's holdout error and the time so far."""
    start = time.perf_counter()

    def report(epoch: int, holdout_mse: float) -> None:
        elapsed = time.perf_counter() - start
        print(
            f"dynamics fit on {num_samples} transitions: epoch {epoch}, holdout MSE {holdout_mse:.4f}, {elapsed:.0f} s",
            flush=True,
        )

    return report
