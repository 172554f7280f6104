"""ARC: Actor Regularized Control, the LOOP planner, batched over environments in one torch graph."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from sb3_loop.checks import check_number
from sb3_loop.planning.sampling import (
    PlannerRandom,
    SamplingConfig,
    TruncatedGaussianPlanner,
)

#: How candidate sequences are proposed, see :class:`ARCConfig`.
PROPOSAL_MODES = ("gaussian", "prior")


@dataclass
class ARCConfig(SamplingConfig):
    """
    ARC settings; defaults are the paper's online configuration. The shared fields (``horizon``,
    ``population_size``, ``num_particles``, ``iterations``, ``propagation``, ``deterministic_model``) are
    those of :class:`~sb3_loop.planning.sampling.SamplingConfig`.

    :param mixture_coef: Fraction of N added as actor-proposed sequences (0.05 -> 5 of 100; 0: ARC
        without the actor).
    :param kappa: Temperature of the exponential weighting.
    :param var_momentum: ``alpha`` in ``var <- alpha * var + (1 - alpha) * new_var``.
    :param init_var_divisor: Initial variance is ``(high - low)^2 / init_var_divisor``.
    :param truncation: Proposals are truncated normal within ``+-truncation`` standard deviations.
    :param proposal: ``"gaussian"`` (online ARC): N sequences from a truncated normal around the plan's
        mean. ``"prior"`` (offline LOOP): N rollouts of the actor (the offline prior) through the model,
        each with its own random elite member and model noise, plus Gaussian noise ``noise_std`` on every
        action, then smoothed towards the current plan (the previous step's plan, shifted, at the first
        iteration; nothing at an episode's first step): ``a <- (1 - smoothing) * a + smoothing * plan``.
    :param noise_std: Standard deviation of the noise added to the prior's actions (``"prior"`` only), in
        the planner's action units (the policies plan in squashed [-1, 1] actions).
    :param smoothing: Weight of the current plan in the smoothing of ``"prior"`` proposals (0: none).
    """

    mixture_coef: float = 0.05
    kappa: float = 1.0
    var_momentum: float = 0.1
    init_var_divisor: float = 16.0
    truncation: float = 2.0
    proposal: str = "gaussian"
    noise_std: float = 0.01
    smoothing: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("mixture_coef", self.mixture_coef, 0.0, 1.0)
        check_number("var_momentum", self.var_momentum, 0.0, 1.0)
        for name in ("kappa", "init_var_divisor", "truncation"):
            check_number(name, getattr(self, name), 0.0, low_open=True)
        if self.proposal not in PROPOSAL_MODES:
            raise ValueError(f"proposal={self.proposal!r} must be one of {PROPOSAL_MODES}")
        check_number("noise_std", self.noise_std, 0.0)
        check_number("smoothing", self.smoothing, 0.0, 1.0)

    @property
    def num_actor_sequences(self) -> int:
        """Actor-proposed sequences added to every iteration's population."""
        return round(self.mixture_coef * self.population_size)


class ARCPlanner(TruncatedGaussianPlanner):
    """
    ARC (LOOP's planner): a truncated-normal population around the plan's mean (or, with
    ``proposal="prior"``, noisy rollouts of the actor) plus the actor's own trajectories through the
    model, weighted by ``softmax(kappa * score)`` over the whole population; the mean is the weighted
    mean, the variance the weighted variance with momentum. Exploring acts the first action of one
    candidate drawn by weight. See :class:`~sb3_loop.planning.sampling.SamplingPlanner`
    for the arguments and the shared loop.
    """

    config_class = ARCConfig
    config: ARCConfig

    def _proposer(
        self, obs: torch.Tensor, rng: PlannerRandom, low: torch.Tensor, high: torch.Tensor
    ) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], torch.Tensor]:
        """``propose(mean, var) -> [B, N, H, A]`` for this step, and the actor sequences added to every population."""
        if self.config.proposal == "gaussian":
            actor_sequences = self._actor_sequences(obs, rng).clamp(low, high)
            return (lambda mean, var: self._propose(mean, var, rng, low, high)), actor_sequences
        count = self.config.population_size
        rollouts = self._actor_sequences(obs, rng, count + self.config.num_actor_sequences).clamp(low, high)
        prior, actor_sequences = rollouts[:, :count], rollouts[:, count:]
        planned = self._planned
        fits = planned is not None and planned.shape[0] == obs.shape[0]
        smooth = planned.clone() if fits else torch.zeros(obs.shape[0], dtype=torch.bool, device=obs.device)
        return (lambda mean, var: self._propose_around_prior(prior, mean, smooth, rng, low, high)), actor_sequences

    def _propose_around_prior(
        self,
        prior: torch.Tensor,
        mean: torch.Tensor,
        smooth: torch.Tensor,
        rng: PlannerRandom,
        low: torch.Tensor,
        high: torch.Tensor,
    ) -> torch.Tensor:
        """
        The prior's rollouts [B, N, H, A] plus Gaussian noise, smoothed towards the plan ``mean`` [B, H, A]
        for the envs in ``smooth`` [B] (those with a plan from an earlier step).
        """
        cfg = self.config
        noisy = prior + cfg.noise_std * rng.normal(tuple(prior.shape[1:]))
        smoothed = (1.0 - cfg.smoothing) * noisy + cfg.smoothing * mean.unsqueeze(1)
        return torch.where(smooth[:, None, None, None], smoothed, noisy).clamp(low, high)

    def _weights(self, scores: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.config.kappa * scores, dim=1)

    def _refit(
        self, mean: torch.Tensor, var: torch.Tensor, new_mean: torch.Tensor, new_var: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = self.config.var_momentum
        return new_mean, alpha * var + (1.0 - alpha) * new_var

    def _actor_sequences(self, obs: torch.Tensor, rng: PlannerRandom, count: int | None = None) -> torch.Tensor:
        """
        Roll the actor through the model from each observation, each rollout following one random elite
        member with model noise: [B, count, H, A] (default count: the mixture's actor sequences).
        """
        count = self.config.num_actor_sequences if count is None else count
        horizon = self.config.horizon
        batch, obs_dim = obs.shape
        if count == 0:
            return obs.new_zeros((batch, 0, horizon, self.action_dim))
        elites = self.model.num_elites
        state = obs.unsqueeze(1).expand(batch, count, obs_dim).reshape(-1, obs_dim)
        member = rng.randint(elites, (count,)).reshape(-1)
        rows = torch.arange(state.shape[0], device=obs.device)
        actions = []
        for t in range(horizon):
            action = self.actor(state)
            actions.append(action)
            if t == horizon - 1:
                break
            noise = self._member_major_noise(rng, elites, count)
            step = self.model.step_members(state.expand(elites, -1, -1), action.expand(elites, -1, -1), noise)
            state = step[0][member, rows]
        sequences = torch.stack(actions, dim=1).reshape(batch, count, horizon, self.action_dim)
        return torch.nan_to_num(sequences, nan=0.0)
