"""Probabilistic dynamics ensemble (PETS-style), evaluated for all members in one batched op."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from sb3_loop.checks import check_positive_int

#: Rows per member evaluated at once on a CPU without gradients: the planner's large batches (e.g. the
#: paper's propagation, every elite carrying every particle) run about 15% faster in cache-sized chunks.
CPU_INFERENCE_CHUNK = 128
#: Per-layer L2 weight decay of the paper's 4x200 ensemble (4 hidden layers + output layer).
PAPER_WEIGHT_DECAYS = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)
#: Per-member normalisation buffers, shaped [E, 1, dim].
NORMALIZER_BUFFERS = ("input_mean", "input_std", "target_mean", "target_std")


class EnsembleLinear(nn.Module):
    """
    A linear layer with one independent weight matrix per ensemble member.

    :param ensemble_size: Number of members E.
    :param in_features: Input size.
    :param out_features: Output size.
    """

    def __init__(self, ensemble_size: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(ensemble_size, 1, out_features))
        # Truncated normal init as in PETS (std = 1 / (2 sqrt(in))).
        nn.init.trunc_normal_(self.weight, std=1.0 / (2.0 * in_features**0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        :param x: Inputs of shape [E', batch, in] where E' is the ensemble size or a prefix of it.
        :return: Outputs of shape [E', batch, out].
        """
        members = x.shape[0]
        return torch.baddbmm(self.bias[:members], x, self.weight[:members])


class StepPrediction(NamedTuple):
    """One sampled model step, in real (unnormalised) units."""

    next_obs: torch.Tensor
    reward: torch.Tensor
    cost: torch.Tensor | None


class ProbabilisticEnsemble(nn.Module):
    """
    Ensemble of Gaussian MLPs predicting ``(reward, next_obs - obs[, cost])`` from ``(obs, action)``.

    Members are kept sorted by holdout error after training, so the elites are always the first
    ``num_elites`` members: planning evaluates ``weight[:num_elites]``, a view, with no copy.
    Normalisation statistics (one set per member) are buffers so ``state_dict()`` carries them.

    :param obs_dim: Observation size.
    :param action_dim: Action size.
    :param ensemble_size: Number of members E.
    :param num_elites: Number of members used for planning (lowest holdout error).
    :param hidden_sizes: Hidden layer widths.
    :param num_extra_targets: Extra predicted targets after reward and Δobs (1 for a constraint cost).
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        ensemble_size: int = 7,
        num_elites: int = 5,
        hidden_sizes: Sequence[int] = (200, 200, 200, 200),
        num_extra_targets: int = 0,
    ) -> None:
        super().__init__()
        check_positive_int("obs_dim", obs_dim)
        check_positive_int("action_dim", action_dim)
        check_ensemble_shape(ensemble_size, num_elites, hidden_sizes)
        if num_extra_targets < 0:
            raise ValueError(f"num_extra_targets={num_extra_targets} must be >= 0")
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.ensemble_size = ensemble_size
        self.num_elites = num_elites
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.num_extra_targets = num_extra_targets
        self.input_dim = obs_dim + action_dim
        self.target_dim = 1 + obs_dim + num_extra_targets

        sizes = (self.input_dim, *self.hidden_sizes)
        self.hidden_layers = nn.ModuleList(
            EnsembleLinear(ensemble_size, n_in, n_out) for n_in, n_out in itertools.pairwise(sizes)
        )
        self.output_layer = EnsembleLinear(ensemble_size, sizes[-1], 2 * self.target_dim)
        self.max_logvar = nn.Parameter(torch.full((1, 1, self.target_dim), 0.5))
        self.min_logvar = nn.Parameter(torch.full((1, 1, self.target_dim), -10.0))

        # One normaliser per member: a member that keeps its pre-refit weights keeps the normaliser
        # it was trained with (see train_ensemble), so weights and statistics always belong together.
        self.register_buffer("input_mean", torch.zeros(ensemble_size, 1, self.input_dim))
        self.register_buffer("input_std", torch.ones(ensemble_size, 1, self.input_dim))
        self.register_buffer("target_mean", torch.zeros(ensemble_size, 1, self.target_dim))
        self.register_buffer("target_std", torch.ones(ensemble_size, 1, self.target_dim))
        self.register_buffer("holdout_mse", torch.full((ensemble_size,), float("inf")))
        self.register_buffer("num_trainings", torch.zeros((), dtype=torch.long))

    @property
    def is_trained(self) -> bool:
        """Whether the ensemble has been fitted at least once."""
        return bool(self.num_trainings.item() > 0)

    @property
    def layers(self) -> list[EnsembleLinear]:
        """All ensemble layers, input to output."""
        return [*self.hidden_layers, self.output_layer]

    def set_normalizer(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        """
        Set every member's input and target standardisation from training data.

        :param inputs: Training inputs [N, input_dim].
        :param targets: Training targets [N, target_dim].
        """
        for name, data in (("input", inputs), ("target", targets)):
            std = data.std(dim=0, unbiased=False)
            std = torch.where(std < 1e-6, torch.ones_like(std), std)
            getattr(self, f"{name}_mean").copy_(data.mean(dim=0))  # broadcast to every member
            getattr(self, f"{name}_std").copy_(std)

    def forward(self, normalized_inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Predict the normalised target distribution.

        :param normalized_inputs: Standardised inputs [E', batch, input_dim] (E' <= ensemble_size:
            the first E' members are evaluated).
        :return: Mean and bounded log-variance, each [E', batch, target_dim], in normalised units.
        """
        rows = normalized_inputs.shape[1]
        if rows > CPU_INFERENCE_CHUNK and normalized_inputs.device.type == "cpu" and not torch.is_grad_enabled():
            parts = [self._predict(chunk) for chunk in normalized_inputs.split(CPU_INFERENCE_CHUNK, dim=1)]
            return torch.cat([mean for mean, _ in parts], dim=1), torch.cat([logvar for _, logvar in parts], dim=1)
        return self._predict(normalized_inputs)

    def _predict(self, normalized_inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = normalized_inputs
        for layer in self.hidden_layers:
            x = F.silu(layer(x))
        mean, logvar = self.output_layer(x).chunk(2, dim=-1)
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar

    def normalize_inputs(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """
        Concatenate and standardise (obs, action) with each member's statistics.

        :param obs: [E', M, obs_dim] (member i uses normaliser i) or [M, obs_dim] (all members).
        :param action: Same leading shape as ``obs``.
        :return: [E', M, input_dim] (or [E, M, input_dim] for 2-D inputs).
        """
        x = torch.cat((obs, action), dim=-1)
        members = x.shape[0] if x.dim() == 3 else self.ensemble_size
        return (x - self.input_mean[:members]) / self.input_std[:members]

    def denormalize_targets(self, normalized: torch.Tensor) -> torch.Tensor:
        """Targets [E', M, target_dim] in normalised units of members 0..E'-1 -> real units."""
        members = normalized.shape[0]
        return normalized * self.target_std[:members] + self.target_mean[:members]

    def make_targets(
        self, obs: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor, cost: torch.Tensor | None = None
    ) -> torch.Tensor:
        """
        Build raw targets ``(reward, next_obs - obs[, cost])``.

        :param obs: [N, obs_dim]
        :param reward: [N] or [N, 1]
        :param next_obs: [N, obs_dim]
        :param cost: [N] or [N, k], required when the ensemble has extra targets.
        :return: [N, target_dim]
        """
        parts = [reward.reshape(-1, 1), next_obs - obs]
        if self.num_extra_targets > 0:
            if cost is None:
                raise ValueError(f"this ensemble predicts {self.num_extra_targets} extra target(s): pass `cost`")
            parts.append(cost.reshape(-1, self.num_extra_targets))
        return torch.cat(parts, dim=-1)

    def step_members(self, obs: torch.Tensor, action: torch.Tensor, noise: torch.Tensor | None) -> StepPrediction:
        """
        Sample one step with the first E' members, each on its own batch.

        :param obs: [E', M, obs_dim]
        :param action: [E', M, action_dim]
        :param noise: Standard normal noise [E', M, target_dim]; ``None`` returns the mean prediction.
        :return: Next observation [E', M, obs_dim], reward [E', M] and cost [E', M] (or None).
        """
        mean, logvar = self(self.normalize_inputs(obs, action))
        sample = mean if noise is None else mean + torch.exp(0.5 * logvar) * noise
        target = self.denormalize_targets(sample)
        reward = target[..., 0]
        next_obs = obs + target[..., 1 : 1 + self.obs_dim]
        cost = target[..., 1 + self.obs_dim] if self.num_extra_targets > 0 else None
        return StepPrediction(next_obs, reward, cost)

    @torch.no_grad()
    def sample(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        generator: torch.Generator | None = None,
        deterministic: bool = False,
    ) -> StepPrediction:
        """
        Sample a step for a batch of transitions, each from a uniformly drawn elite member.

        :param obs: [M, obs_dim]
        :param action: [M, action_dim]
        :param generator: Random generator for member choice and noise (reproducibility).
        :param deterministic: Use the elite mean prediction instead of sampling.
        :return: Next observation [M, obs_dim], reward [M] and cost [M] (or None).
        """
        batch = obs.shape[0]
        elites = self.num_elites
        noise = None
        if not deterministic:
            noise = torch.randn((elites, batch, self.target_dim), generator=generator, device=obs.device, dtype=obs.dtype)
        pred = self.step_members(obs.expand(elites, -1, -1), action.expand(elites, -1, -1), noise)
        if deterministic:
            return StepPrediction(*(None if t is None else t.mean(0) for t in pred))
        member = torch.randint(elites, (batch,), generator=generator, device=obs.device)
        rows = torch.arange(batch, device=obs.device)
        return StepPrediction(*(None if t is None else t[member, rows] for t in pred))

    def reorder_members(self, order: torch.Tensor, optimizer: torch.optim.Optimizer | None = None) -> None:
        """
        Permute members (and their optimiser state) so that member ``i`` becomes ``order[i]``.

        :param order: Permutation of ``range(ensemble_size)``.
        :param optimizer: Optimiser over this module's parameters whose per-member state is permuted too.
        """
        with torch.no_grad():
            for layer in self.layers:
                for param in (layer.weight, layer.bias):
                    param.copy_(param[order])
                    if optimizer is not None:
                        for value in optimizer.state.get(param, {}).values():
                            if torch.is_tensor(value) and value.shape[:1] == param.shape[:1] and value.dim() > 0:
                                value.copy_(value[order])
            for name in NORMALIZER_BUFFERS:
                getattr(self, name).copy_(getattr(self, name)[order])
            self.holdout_mse.copy_(self.holdout_mse[order])

    def _load_from_state_dict(self, state_dict: dict[str, torch.Tensor], prefix: str, *args, **kwargs) -> None:
        # Files saved before normalisers were per member hold one shared [dim] statistic.
        for name in NORMALIZER_BUFFERS:
            key = prefix + name
            saved = state_dict.get(key)
            if saved is not None and saved.dim() == 1:
                state_dict[key] = saved.reshape(1, 1, -1).expand_as(getattr(self, name)).clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def check_ensemble_shape(ensemble_size: int, num_elites: int, hidden_sizes: Sequence[int]) -> None:
    """
    Raise ``ValueError`` naming the first invalid ensemble shape argument.

    :param ensemble_size: Number of members, >= 1.
    :param num_elites: Members used for planning, 1 <= num_elites <= ensemble_size.
    :param hidden_sizes: Non-empty positive hidden widths.
    """
    check_positive_int("ensemble_size", ensemble_size)
    check_positive_int("num_elites", num_elites)
    if num_elites > ensemble_size:
        raise ValueError(f"num_elites={num_elites} must not exceed ensemble_size={ensemble_size}")
    if len(hidden_sizes) == 0 or any(int(h) < 1 for h in hidden_sizes):
        raise ValueError(f"hidden_sizes={tuple(hidden_sizes)} must be a non-empty list of positive widths")


def default_weight_decays(num_layers: int) -> tuple[float, ...]:
    """
    The paper's per-layer decays for its 5-layer network, or an even spread over the same range.

    :param num_layers: Number of weight layers (hidden layers + output layer).
    """
    if num_layers == len(PAPER_WEIGHT_DECAYS):
        return PAPER_WEIGHT_DECAYS
    return tuple(torch.linspace(PAPER_WEIGHT_DECAYS[0], PAPER_WEIGHT_DECAYS[-1], num_layers).tolist())
