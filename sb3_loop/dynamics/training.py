"""Fitting the probabilistic ensemble: holdout split, per-member shuffles, early stopping, elites."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from sb3_loop.dynamics.ensemble import ProbabilisticEnsemble, default_weight_decays


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

    def __post_init__(self) -> None:
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
    """What one call of :func:`train_ensemble` did."""

    holdout_mse: list[float]
    epochs: int
    gradient_steps: int
    seconds: float
    train_loss: float
    num_samples: int
    holdout_history: list[float] = field(default_factory=list)

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
) -> EnsembleTrainingStats:
    """
    Fit the ensemble on transitions, keep each member's best holdout snapshot and sort members so the
    elites (lowest holdout MSE) come first.

    :param model: The ensemble to train (in place).
    :param optimizer: Optimiser over ``model.parameters()``.
    :param obs: Observations [N, obs_dim].
    :param action: Actions [N, action_dim] (as the planner will feed them, e.g. scaled to [-1, 1]).
    :param reward: Rewards [N].
    :param next_obs: Next observations [N, obs_dim].
    :param cost: Constraint costs [N] when the ensemble predicts them.
    :param config: Training settings.
    :param generator: Random generator for the split and shuffles (CPU generator).
    :return: Holdout MSE per member (sorted, elites first), epochs, seconds, last training loss.
    """
    config = config or EnsembleTrainingConfig()
    start = time.perf_counter()
    inputs, targets = _prepare_data(model, obs, action, reward, next_obs, cost)
    num_samples = inputs.shape[0]
    if num_samples < 2:
        raise ValueError(f"need at least 2 transitions to train the dynamics ensemble, got {num_samples}")

    permutation = torch.randperm(num_samples, generator=generator).to(inputs.device)
    num_holdout = max(1, min(int(num_samples * config.holdout_ratio), config.max_holdout))
    holdout_idx, train_idx = permutation[:num_holdout], permutation[num_holdout:]
    model.set_normalizer(inputs[train_idx], targets[train_idx])
    train_x, train_y = _normalize(model, inputs[train_idx], targets[train_idx])
    holdout_x, holdout_y = _normalize(model, inputs[holdout_idx], targets[holdout_idx])

    decays = tuple(config.weight_decays or default_weight_decays(len(model.layers)))
    if len(decays) != len(model.layers):
        raise ValueError(f"weight_decays has {len(decays)} entries but the ensemble has {len(model.layers)} layers")

    best_mse = _holdout_mse(model, holdout_x, holdout_y)
    best_state = {name: p.detach().clone() for name, p in _member_params(model)}
    best_state.update({name: getattr(model, name).detach().clone() for name in _SHARED_PARAMS})
    epochs_since_improvement, epoch, gradient_steps, train_loss = 0, 0, 0, float("nan")
    budget = config.max_gradient_steps
    history = [float(best_mse.mean())]
    while (config.max_epochs is None or epoch < config.max_epochs) and (budget is None or gradient_steps < budget):
        max_batches = None if budget is None else budget - gradient_steps
        train_loss, batches = _train_epoch(model, optimizer, train_x, train_y, config, decays, generator, max_batches)
        gradient_steps += batches
        epoch += 1
        mse = _holdout_mse(model, holdout_x, holdout_y)
        history.append(float(mse.mean()))
        improved = (best_mse - mse) / best_mse.clamp_min(1e-12) > config.improvement
        if improved.any():
            best_mse = torch.where(improved, mse, best_mse)
            _snapshot(model, best_state, improved)
            epochs_since_improvement = 0
        else:
            epochs_since_improvement += 1
        if epochs_since_improvement >= config.patience:
            break

    _restore(model, best_state)
    model.holdout_mse.copy_(_holdout_mse(model, holdout_x, holdout_y))
    model.reorder_members(torch.argsort(model.holdout_mse), optimizer)
    model.num_trainings += 1
    return EnsembleTrainingStats(
        holdout_mse=model.holdout_mse.tolist(),
        epochs=epoch,
        gradient_steps=gradient_steps,
        seconds=time.perf_counter() - start,
        train_loss=train_loss,
        num_samples=num_samples,
        holdout_history=history,
    )


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
) -> tuple[torch.Tensor, torch.Tensor]:
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
    return inputs[finite], targets[finite]


def _normalize(model: ProbabilisticEnsemble, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (inputs - model.input_mean) / model.input_std, (targets - model.target_mean) / model.target_std


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


@torch.no_grad()
def _holdout_mse(model: ProbabilisticEnsemble, holdout_x: torch.Tensor, holdout_y: torch.Tensor) -> torch.Tensor:
    mean, _ = model(holdout_x.expand(model.ensemble_size, -1, -1))
    return ((mean - holdout_y) ** 2).mean(dim=(1, 2))


_SHARED_PARAMS = ("max_logvar", "min_logvar")


def _member_params(model: ProbabilisticEnsemble) -> list[tuple[str, torch.nn.Parameter]]:
    return [(f"{i}.{kind}", getattr(layer, kind)) for i, layer in enumerate(model.layers) for kind in ("weight", "bias")]


@torch.no_grad()
def _snapshot(model: ProbabilisticEnsemble, best_state: dict[str, torch.Tensor], improved: torch.Tensor) -> None:
    for name, param in _member_params(model):
        best_state[name][improved] = param[improved]
    # The log-variance bounds are shared by all members: keep them from the latest improving epoch.
    for name in _SHARED_PARAMS:
        best_state[name] = getattr(model, name).detach().clone()


@torch.no_grad()
def _restore(model: ProbabilisticEnsemble, best_state: dict[str, torch.Tensor]) -> None:
    for name, param in _member_params(model):
        param.copy_(best_state[name])
    for name in _SHARED_PARAMS:
        getattr(model, name).copy_(best_state[name])
