"""ARC: Actor Regularized Control, the LOOP planner, batched over environments in one torch graph."""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from sb3_loop.planning.feasibility import FeasibilityLog, IterationSchedule
from sb3_loop.planning.scoring import MeanReturn, Scorer

PROPAGATION_MODES = ("paper", "random_elite")
#: How candidate sequences are proposed, see :class:`ARCConfig`.
PROPOSAL_MODES = ("gaussian", "prior")

#: One generator for the whole batch, or one per environment (batch results then equal single plans).
GeneratorArg = torch.Generator | Sequence[torch.Generator] | None


class PlanningModel(Protocol):
    """What the planner needs from a dynamics model (satisfied by ``ProbabilisticEnsemble``)."""

    num_elites: int
    target_dim: int

    def step_members(self, obs: torch.Tensor, action: torch.Tensor, noise: torch.Tensor | None):
        """Step the first ``obs.shape[0]`` members; returns (next_obs, reward, cost or None)."""
        ...


@dataclass
class ARCConfig:
    """
    ARC settings; defaults are the paper's online configuration.

    :param horizon: Planning horizon H (the model predicts H-1 steps, the critic scores the last action).
    :param population_size: Sampled sequences N per iteration.
    :param num_particles: Particles P per sequence.
    :param iterations: Refinement iterations per real step.
    :param mixture_coef: Fraction of N added as actor-proposed sequences (0.05 -> 5 of 100).
    :param kappa: Temperature of the exponential weighting.
    :param var_momentum: ``alpha`` in ``var <- alpha * var + (1 - alpha) * new_var``.
    :param init_var_divisor: Initial variance is ``(high - low)^2 / init_var_divisor``.
    :param truncation: Proposals are truncated normal within ``+-truncation`` standard deviations.
    :param propagation: ``"paper"``: every elite carries every particle (E_elite * P rollouts per
        sequence); ``"random_elite"``: each particle follows one randomly drawn elite for the whole
        rollout (P rollouts per sequence, the members split the particles evenly).
    :param deterministic_model: Propagate the mean prediction instead of sampling.
    :param proposal: ``"gaussian"`` (online ARC): N sequences from a truncated normal around the plan's
        mean. ``"prior"`` (offline LOOP): N rollouts of the actor (the offline prior) through the model,
        each with its own random elite member and model noise, plus Gaussian noise ``noise_std`` on every
        action, then smoothed towards the current plan (the previous step's plan, shifted, at the first
        iteration; nothing at an episode's first step): ``a <- (1 - smoothing) * a + smoothing * plan``.
    :param noise_std: Standard deviation of the noise added to the prior's actions (``"prior"`` only), in
        the planner's action units (the policies plan in squashed [-1, 1] actions).
    :param smoothing: Weight of the current plan in the smoothing of ``"prior"`` proposals (0: none).
    """

    horizon: int = 3
    population_size: int = 100
    num_particles: int = 4
    iterations: int = 5
    mixture_coef: float = 0.05
    kappa: float = 1.0
    var_momentum: float = 0.1
    init_var_divisor: float = 16.0
    truncation: float = 2.0
    propagation: str = "random_elite"
    deterministic_model: bool = False
    proposal: str = "gaussian"
    noise_std: float = 0.01
    smoothing: float = 0.0

    def __post_init__(self) -> None:
        for name in ("horizon", "population_size", "num_particles", "iterations"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} must be an integer >= 1")
        _check_range("mixture_coef", self.mixture_coef, 0.0, 1.0)
        _check_range("var_momentum", self.var_momentum, 0.0, 1.0)
        for name in ("kappa", "init_var_divisor", "truncation"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value!r} must be a finite number > 0")
        if self.propagation not in PROPAGATION_MODES:
            raise ValueError(f"propagation={self.propagation!r} must be one of {PROPAGATION_MODES}")
        if self.proposal not in PROPOSAL_MODES:
            raise ValueError(f"proposal={self.proposal!r} must be one of {PROPOSAL_MODES}")
        if not (isinstance(self.noise_std, numbers.Real) and math.isfinite(self.noise_std) and self.noise_std >= 0):
            raise ValueError(f"noise_std={self.noise_std!r} must be a finite number >= 0")
        _check_range("smoothing", self.smoothing, 0.0, 1.0)

    @property
    def num_actor_sequences(self) -> int:
        """Actor-proposed sequences added to every iteration's population."""
        return round(self.mixture_coef * self.population_size)


class ARCPlanner:
    """
    Plans an action for each of B observations at once with ARC (model-predictive control).

    Candidate action sequences are scored by ``r_0 + ... + r_{H-2} + Q(s_{H-1}, a_{H-1})`` under the
    learned model, averaged over particles and members (or as ``scorer`` decides), and refined by
    exponentially weighted averaging. The plan's mean is warm-started from the previous step.

    :param model: Dynamics model (its first ``num_elites`` members are used).
    :param actor: Deterministic actor ``obs [M, obs_dim] -> action [M, act_dim]`` within the bounds.
    :param value_fn: Terminal value ``(obs [M, obs_dim], action [M, act_dim]) -> [M]`` (or [M, 1]).
    :param action_low: Lower action bounds [act_dim].
    :param action_high: Upper action bounds [act_dim].
    :param config: ARC settings.
    :param termination_fn: ``next_obs [..., obs_dim] -> bool [...]``; after a predicted termination,
        later rewards and the terminal value count 0. ``None``: never terminates.
    :param scorer: Turns per-particle returns into a score per sequence. A scorer that judges
        feasibility (:class:`~sb3_loop.planning.feasibility.FeasibilityScorer`) may extend the iterations
        of an env, with a wider variance, while too few of its sequences are feasible; ``feasibility_log``
        then keeps the totals.
    """

    def __init__(
        self,
        model: PlanningModel,
        actor: Callable[[torch.Tensor], torch.Tensor],
        value_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        action_low: np.ndarray | torch.Tensor | Sequence[float],
        action_high: np.ndarray | torch.Tensor | Sequence[float],
        config: ARCConfig | None = None,
        termination_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        scorer: Scorer | None = None,
    ) -> None:
        self.model = model
        self.actor = actor
        self.value_fn = value_fn
        self.config = config or ARCConfig()
        self.termination_fn = termination_fn
        self.scorer = scorer or MeanReturn()
        low = torch.as_tensor(np.asarray(action_low, dtype=np.float32)).reshape(-1)
        high = torch.as_tensor(np.asarray(action_high, dtype=np.float32)).reshape(-1)
        if low.shape != high.shape:
            raise ValueError(f"action_low shape {tuple(low.shape)} differs from action_high shape {tuple(high.shape)}")
        if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
            raise ValueError(f"action bounds must be finite, got low={low.tolist()} high={high.tolist()}")
        if not (low < high).all():
            raise ValueError(f"action_low must be < action_high elementwise, got low={low.tolist()} high={high.tolist()}")
        self.action_low, self.action_high = low, high
        self.action_dim = int(low.numel())
        self._mean: torch.Tensor | None = None
        # Envs whose warm start is a plan of an earlier step (not the reset centre).
        self._planned: torch.Tensor | None = None
        self.num_fallbacks = 0
        self.feasibility_log = FeasibilityLog()
        self.last_plan_seconds = 0.0

    # ----------------------------------------------------------------------------------- public API
    def reset(self, env_mask: np.ndarray | torch.Tensor | Sequence[bool] | None = None) -> None:
        """
        Forget the warm start (all envs, or those where ``env_mask`` is True).

        :param env_mask: Boolean mask [B] of environments whose episode (re)starts; ``None`` = all.
        """
        if env_mask is None or self._mean is None:
            self._mean, self._planned = None, None
            return
        mask = torch.as_tensor(np.asarray(env_mask, dtype=bool)).reshape(-1).to(self._mean.device)
        if mask.numel() != self._mean.shape[0]:
            self._mean, self._planned = None, None
            return
        self._mean = torch.where(mask[:, None, None], self._center(self._mean.device), self._mean)
        if self._planned is not None:
            self._planned = self._planned & ~mask

    @torch.no_grad()
    def plan(self, obs: torch.Tensor, deterministic: bool = False, generator: GeneratorArg = None) -> torch.Tensor:
        """
        Plan one action per observation.

        :param obs: Observations [B, obs_dim] (or [obs_dim]).
        :param deterministic: Act the first action of the plan's mean; otherwise the first action of one
            candidate drawn with probability equal to its weight.
        :param generator: A torch generator, or one per environment for batch-independent randomness.
        :return: Actions [B, act_dim] (or [act_dim]), always finite and within bounds.
        """
        start = time.perf_counter()
        single = obs.dim() == 1
        obs = self._check_obs(obs.unsqueeze(0) if single else obs)
        rng = _Random(generator, obs.shape[0], obs.device)
        actions = self._plan_batch(obs, deterministic, rng)
        self.last_plan_seconds = time.perf_counter() - start
        return actions[0] if single else actions

    # ------------------------------------------------------------------------------ planning steps
    def _plan_batch(self, obs: torch.Tensor, deterministic: bool, rng: _Random) -> torch.Tensor:
        cfg = self.config
        low, high = self.action_low.to(obs.device), self.action_high.to(obs.device)
        mean = self._warm_start(obs.shape[0], obs.device)
        init_var = ((high - low) ** 2 / cfg.init_var_divisor).expand_as(mean)
        var = init_var.clone()
        propose, actor_sequences = self._proposer(obs, rng, low, high)
        valid = torch.ones(obs.shape[0], dtype=torch.bool, device=obs.device)
        schedule = IterationSchedule(self.scorer, cfg.iterations, init_var)
        # Drawn before iterating when envs may iterate unequally often: a batch still plans as its envs alone.
        choice = rng.uniform((1,)) if schedule.extensible and not deterministic else None
        candidates = weights = None
        while not schedule.finished:
            # Envs whose schedule has ended keep their plan (a batch plans as its envs would alone).
            active = schedule.active
            proposals = torch.cat((propose(mean, var), actor_sequences), dim=1)
            new_weights = self._weights(self._score(obs, proposals, rng, schedule=schedule))
            ok = torch.isfinite(new_weights).all(dim=1)
            new_weights = torch.where(ok[:, None], new_weights, torch.zeros_like(new_weights))
            new_mean = torch.einsum("bs,bsha->bha", new_weights, proposals)
            new_var = torch.einsum("bs,bsha->bha", new_weights, (proposals - new_mean.unsqueeze(1)) ** 2)
            update = (ok & active)[:, None, None]
            mean = torch.where(update, new_mean, mean)
            var = torch.where(update, cfg.var_momentum * var + (1.0 - cfg.var_momentum) * new_var, var)
            candidates = proposals if candidates is None else torch.where(active[:, None, None, None], proposals, candidates)
            weights = new_weights if weights is None else torch.where(active[:, None], new_weights, weights)
            valid &= ok | ~active
            var = schedule.step(var)
        self.feasibility_log.record(schedule)
        if deterministic:
            action = mean[:, 0]
        else:
            action = self._draw_candidate(candidates, weights, rng, choice)[:, 0]
        action = self._fallback(obs, action, valid, low, high)
        self._mean = torch.cat((mean[:, 1:], mean[:, -1:]), dim=1)
        self._planned = torch.ones(obs.shape[0], dtype=torch.bool, device=obs.device)
        return action

    def _proposer(
        self, obs: torch.Tensor, rng: _Random, low: torch.Tensor, high: torch.Tensor
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
        rng: _Random,
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

    def _warm_start(self, batch: int, device: torch.device) -> torch.Tensor:
        shape = (batch, self.config.horizon, self.action_dim)
        if self._mean is None or self._mean.shape != shape or self._mean.device != device:
            self._mean = self._center(device).expand(shape).clone()
            self._planned = torch.zeros(batch, dtype=torch.bool, device=device)
        return self._mean

    def _center(self, device: torch.device) -> torch.Tensor:
        return ((self.action_low + self.action_high) / 2).to(device)

    def _propose(
        self, mean: torch.Tensor, var: torch.Tensor, rng: _Random, low: torch.Tensor, high: torch.Tensor
    ) -> torch.Tensor:
        """N sequences [B, N, H, A] from a truncated normal whose variance keeps samples in bounds."""
        cfg = self.config
        room = torch.minimum(mean - low, high - mean).clamp_min(0.0) / cfg.truncation
        std = torch.minimum(var, room**2).sqrt()
        noise = rng.truncated_normal((cfg.population_size, cfg.horizon, self.action_dim), cfg.truncation)
        return (mean.unsqueeze(1) + std.unsqueeze(1) * noise).clamp(low, high)

    def _actor_sequences(self, obs: torch.Tensor, rng: _Random, count: int | None = None) -> torch.Tensor:
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

    def _score(
        self, obs: torch.Tensor, candidates: torch.Tensor, rng: _Random, schedule: IterationSchedule | None = None
    ) -> torch.Tensor:
        """Scores [B, S] of candidate sequences [B, S, H, A]; non-finite scores become -inf."""
        if self.config.propagation == "paper":
            returns, costs = self._returns_all_elites(obs, candidates, rng)
        else:
            returns, costs = self._returns_random_elite(obs, candidates, rng)
        if schedule is not None:
            schedule.observe(returns, costs)
        scores = self.scorer(returns, costs)
        return torch.where(torch.isfinite(scores), scores, torch.full_like(scores, -math.inf))

    def _weights(self, scores: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.config.kappa * scores, dim=1)

    def _returns_all_elites(
        self, obs: torch.Tensor, candidates: torch.Tensor, rng: _Random
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every elite member carries every particle: returns [B, S, E*P]."""
        batch, num_seq, horizon, act_dim = candidates.shape
        elites, particles = self.model.num_elites, self.config.num_particles
        rows = num_seq * particles
        actions = candidates.unsqueeze(2).expand(batch, num_seq, particles, horizon, act_dim)
        actions = actions.reshape(1, batch * rows, horizon, act_dim).expand(elites, -1, -1, -1)
        start = obs.unsqueeze(1).expand(batch, rows, obs.shape[1]).reshape(1, batch * rows, -1).expand(elites, -1, -1)
        returns, costs = self._rollout(start, actions, rng, rows)

        def per_sequence(values: torch.Tensor) -> torch.Tensor:
            values = values.reshape(elites, batch, num_seq, particles).permute(1, 2, 0, 3)
            return values.reshape(batch, num_seq, elites * particles)

        return per_sequence(returns), None if costs is None else per_sequence(costs)

    def _returns_random_elite(
        self, obs: torch.Tensor, candidates: torch.Tensor, rng: _Random
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each particle follows one randomly drawn elite; members share each env's rows evenly."""
        batch, num_seq, horizon, act_dim = candidates.shape
        elites, particles = self.model.num_elites, self.config.num_particles
        rows = num_seq * particles
        per_member = -(-rows // elites)
        slots = per_member * elites
        # order[b, j] = the particle row placed in slot j; slot j belongs to member j // per_member.
        order = torch.argsort(rng.uniform((slots,)), dim=1)
        sequence_of_slot = torch.div(order, particles, rounding_mode="floor").clamp(max=num_seq - 1)
        actions = torch.gather(candidates, 1, sequence_of_slot[:, :, None, None].expand(batch, slots, horizon, act_dim))
        actions = actions.reshape(batch, elites, per_member, horizon, act_dim).transpose(0, 1)
        actions = actions.reshape(elites, batch * per_member, horizon, act_dim)
        start = obs[None, :, None, :].expand(elites, batch, per_member, obs.shape[1]).reshape(elites, -1, obs.shape[1])
        returns, costs = self._rollout(start, actions, rng, per_member)

        def per_sequence(values: torch.Tensor) -> torch.Tensor:
            in_slots = values.reshape(elites, batch, per_member).transpose(0, 1).reshape(batch, slots)
            in_rows = torch.empty_like(in_slots).scatter_(1, order, in_slots)
            return in_rows[:, :rows].reshape(batch, num_seq, particles)

        return per_sequence(returns), None if costs is None else per_sequence(costs)

    def _rollout(
        self, state: torch.Tensor, actions: torch.Tensor, rng: _Random, rows_per_env: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Undiscounted ``r_0 + ... + r_{H-2} + Q(s_{H-1}, a_{H-1})`` with termination masking.

        :param state: Start states [E', M, obs_dim], M = B * rows_per_env (env-major).
        :param actions: Action sequences [E', M, H, A].
        :return: Returns [E', M] and summed costs [E', M] (or None).
        """
        members, num_rows, horizon, _ = actions.shape
        total = state.new_zeros((members, num_rows))
        total_cost: torch.Tensor | None = None
        alive = torch.ones_like(total, dtype=torch.bool)
        for t in range(horizon - 1):
            noise = self._member_major_noise(rng, members, rows_per_env)
            next_state, reward, cost = self.model.step_members(state, actions[:, :, t], noise)
            total = total + torch.where(alive, reward, torch.zeros_like(reward))
            if cost is not None:
                step_cost = torch.where(alive, cost, torch.zeros_like(cost))
                total_cost = step_cost if total_cost is None else total_cost + step_cost
            if self.termination_fn is not None:
                alive = alive & ~self.termination_fn(next_state)
            state = next_state
        obs_dim = state.shape[-1]
        value = self.value_fn(state.reshape(-1, obs_dim), actions[:, :, -1].reshape(members * num_rows, -1))
        total = total + torch.where(alive, value.reshape(members, num_rows), torch.zeros_like(total))
        return total, total_cost

    def _member_major_noise(self, rng: _Random, members: int, rows_per_env: int) -> torch.Tensor | None:
        """Standard normal model noise [members, B * rows_per_env, target_dim] (None: mean prediction)."""
        if self.config.deterministic_model:
            return None
        noise = rng.normal((members, rows_per_env, self.model.target_dim)).transpose(0, 1)
        return noise.reshape(members, -1, self.model.target_dim)

    def _draw_candidate(
        self, candidates: torch.Tensor, weights: torch.Tensor, rng: _Random, uniform: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One sequence per env drawn with probability ``weights`` (by ``uniform`` [B, 1] if given): [B, H, A]."""
        cumulative = weights.cumsum(dim=1)
        threshold = (rng.uniform((1,)) if uniform is None else uniform) * cumulative[:, -1:]
        index = torch.searchsorted(cumulative, threshold).clamp(max=candidates.shape[1] - 1)
        return candidates[torch.arange(candidates.shape[0], device=candidates.device), index[:, 0]]

    def _fallback(
        self, obs: torch.Tensor, action: torch.Tensor, valid: torch.Tensor, low: torch.Tensor, high: torch.Tensor
    ) -> torch.Tensor:
        """Replace the action of envs whose plan went non-finite by the actor's action."""
        bad = ~valid | ~torch.isfinite(action).all(dim=1)
        if bad.any():
            self.num_fallbacks += int(bad.sum())
            actor_action = torch.nan_to_num(self.actor(obs[bad]).to(action.dtype), nan=0.0)
            action = action.clone()
            action[bad] = actor_action
        return torch.maximum(torch.minimum(action, high), low)

    def _check_obs(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.dim() != 2:
            raise ValueError(f"observations must have shape [batch, obs_dim], got {tuple(obs.shape)}")
        expected = getattr(self.model, "obs_dim", obs.shape[1])
        if obs.shape[1] != expected:
            raise ValueError(f"observations have {obs.shape[1]} features, the dynamics model expects {expected}")
        if not torch.isfinite(obs).all():
            raise ValueError("observations contain NaN or inf values; the planner cannot plan from them")
        return obs.float()


class _Random:
    """
    Draws the planner's random numbers env-major ([B, ...]), from one generator for the batch or one
    generator per env (then each env's numbers do not depend on the rest of the batch).
    """

    def __init__(self, generator: GeneratorArg, batch: int, device: torch.device) -> None:
        if generator is not None and not isinstance(generator, torch.Generator):
            generator = list(generator)
            if len(generator) != batch:
                raise ValueError(f"got {len(generator)} generators for a batch of {batch} observations")
        self.generator = generator
        self.batch = batch
        self.device = device

    def _draw(self, sampler: Callable[..., torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
        if isinstance(self.generator, list):
            return torch.stack([sampler(shape, generator=g, device=self.device) for g in self.generator])
        return sampler((self.batch, *shape), generator=self.generator, device=self.device)

    def uniform(self, shape: tuple[int, ...]) -> torch.Tensor:
        return self._draw(torch.rand, shape)

    def normal(self, shape: tuple[int, ...]) -> torch.Tensor:
        return self._draw(torch.randn, shape)

    def randint(self, high: int, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.floor(self.uniform(shape) * high).long().clamp(max=high - 1)

    def truncated_normal(self, shape: tuple[int, ...], bound: float) -> torch.Tensor:
        """Standard normal truncated to [-bound, bound], by inverse CDF."""
        cdf_low = 0.5 * (1.0 + math.erf(-bound / math.sqrt(2.0)))
        u = cdf_low + (1.0 - 2.0 * cdf_low) * self.uniform(shape)
        return (math.sqrt(2.0) * torch.erfinv((2.0 * u - 1.0).clamp(-1 + 1e-6, 1 - 1e-6))).clamp(-bound, bound)


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not (isinstance(value, numbers.Real) and low <= value <= high):
        raise ValueError(f"{name}={value!r} must be in [{low}, {high}]")
