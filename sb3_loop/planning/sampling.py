"""
What every sampling planner shares (ARC, CEM, MPPI, random shooting): the settings they have in common,
the rollout of candidate action sequences through the dynamics model with the critic's terminal value,
their scoring by a swappable :class:`~sb3_loop.planning.scoring.Scorer`, the refinement loop (sample,
score, weight, refit), the warm start, the feasibility iterations and the actor fallback. A planner
is one of these plus a few hooks: how it samples, weights and refits, and how it explores.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import ClassVar, Protocol

import numpy as np
import torch

from sb3_loop.checks import check_positive_int
from sb3_loop.planning.feasibility import FeasibilityLog, IterationSchedule
from sb3_loop.planning.scoring import MeanReturn, Scorer

PROPAGATION_MODES = ("paper", "random_elite")

#: One generator for the whole batch, or one per environment (batch results then equal single plans).
GeneratorArg = torch.Generator | Sequence[torch.Generator] | None


class PlanningModel(Protocol):
    """What the planner needs from a dynamics model (satisfied by ``ProbabilisticEnsemble``)."""

    num_elites: int
    target_dim: int

    def step_members(self, obs: torch.Tensor, action: torch.Tensor, noise: torch.Tensor | None):
        """Step the first ``obs.shape[0]`` members; returns (next_obs, reward, cost or None)."""
        ...


def elite_count(fraction: float, population: int) -> int:
    """``fraction`` of ``population`` rounded half up, at least 1 (0.125 of 100 -> 13)."""
    return max(1, min(population, math.floor(fraction * population + 0.5)))


@dataclass
class SamplingConfig:
    """
    Settings every sampling planner shares.

    :param horizon: Planning horizon H (the model predicts H-1 steps, the critic scores the last action).
    :param population_size: Sampled sequences N per iteration.
    :param num_particles: Particles P per sequence.
    :param iterations: Refinement iterations per real step.
    :param propagation: ``"paper"``: every elite carries every particle (E_elite * P rollouts per
        sequence); ``"random_elite"``: each particle follows one randomly drawn elite for the whole
        rollout (P rollouts per sequence, the members split the particles evenly).
    :param deterministic_model: Propagate the mean prediction instead of sampling.
    """

    horizon: int = 3
    population_size: int = 100
    num_particles: int = 4
    iterations: int = 5
    # Keyword-only, so that each planner's own fields follow the four above positionally.
    _: KW_ONLY
    propagation: str = "random_elite"
    deterministic_model: bool = False

    def __post_init__(self) -> None:
        for name in ("horizon", "population_size", "num_particles", "iterations"):
            check_positive_int(name, getattr(self, name))
        if self.propagation not in PROPAGATION_MODES:
            raise ValueError(f"propagation={self.propagation!r} must be one of {PROPAGATION_MODES}")


class SamplingPlanner:
    """
    Plans an action for each of B observations at once (model-predictive control) by refining a
    distribution over H-step action sequences (a mean and a variance per step and action dimension).

    Every iteration samples candidates (:meth:`_proposer`: by default :meth:`_propose`), scores them by
    ``r_0 + ... + r_{H-2} + Q(s_{H-1}, a_{H-1})`` under the learned model, reduced over particles and
    members by ``scorer``, turns the scores into weights (:meth:`_weights`) and refits the mean and
    variance from the weighted candidates (:meth:`_refit`). The mean is warm-started from the previous
    step's, shifted by one. ``deterministic=True`` acts the mean's first action; otherwise
    :meth:`_explore` acts. Envs whose candidates all went non-finite act the actor's action.

    :param model: Dynamics model (its first ``num_elites`` members are used).
    :param actor: Deterministic actor ``obs [M, obs_dim] -> action [M, act_dim]`` within the bounds.
    :param value_fn: Terminal value ``(obs [M, obs_dim], action [M, act_dim]) -> [M]`` (or [M, 1]).
    :param action_low: Lower action bounds [act_dim].
    :param action_high: Upper action bounds [act_dim].
    :param config: The planner's settings (an instance of its :attr:`config_class`; ``None``: defaults).
    :param termination_fn: ``next_obs [..., obs_dim] -> bool [...]``; after a predicted termination,
        later rewards and the terminal value count 0. ``None``: never terminates.
    :param scorer: Turns per-particle returns into a score per sequence. A scorer that judges
        feasibility (:class:`~sb3_loop.planning.feasibility.FeasibilityScorer`) may extend the iterations
        of an env, with a wider variance, while too few of its sequences are feasible; ``feasibility_log``
        then keeps the totals.
    """

    #: The settings class of the planner.
    config_class: ClassVar[type[SamplingConfig]] = SamplingConfig

    def __init__(
        self,
        model: PlanningModel,
        actor: Callable[[torch.Tensor], torch.Tensor],
        value_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        action_low: np.ndarray | torch.Tensor | Sequence[float],
        action_high: np.ndarray | torch.Tensor | Sequence[float],
        config: SamplingConfig | None = None,
        termination_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        scorer: Scorer | None = None,
    ) -> None:
        config = config if config is not None else self.config_class()
        if not isinstance(config, self.config_class):
            raise ValueError(f"{type(self).__name__} takes a {self.config_class.__name__}, got a {type(config).__name__}")
        self.model = model
        self.actor = actor
        self.value_fn = value_fn
        self.config = config
        self.termination_fn = termination_fn
        self.scorer = scorer or MeanReturn()
        self.action_low, self.action_high = _check_bounds(action_low, action_high)
        self.action_dim = int(self.action_low.numel())
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
        :param deterministic: Act the first action of the plan's mean; otherwise the planner's
            exploring choice (:meth:`_explore`).
        :param generator: A torch generator, or one per environment for batch-independent randomness.
        :return: Actions [B, act_dim] (or [act_dim]), always finite and within bounds.
        """
        start = time.perf_counter()
        single = obs.dim() == 1
        obs = self._check_obs(obs.unsqueeze(0) if single else obs)
        rng = PlannerRandom(generator, obs.shape[0], obs.device)
        actions = self._plan_batch(obs, deterministic, rng)
        self.last_plan_seconds = time.perf_counter() - start
        return actions[0] if single else actions

    # ------------------------------------------------------------------------ hooks of each planner
    def _initial_var(self, mean: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """The variance [B, H, A] each plan starts from."""
        raise NotImplementedError

    def _propose(
        self, mean: torch.Tensor, var: torch.Tensor, rng: PlannerRandom, low: torch.Tensor, high: torch.Tensor
    ) -> torch.Tensor:
        """An iteration's sampled sequences [B, N, H, A], within the bounds."""
        raise NotImplementedError

    def _proposer(
        self, obs: torch.Tensor, rng: PlannerRandom, low: torch.Tensor, high: torch.Tensor
    ) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], torch.Tensor]:
        """
        ``propose(mean, var) -> [B, N, H, A]`` for this step (by default :meth:`_propose`), and the
        sequences [B, k, H, A] added to every iteration's population (by default none).
        """
        extra = obs.new_zeros((obs.shape[0], 0, self.config.horizon, self.action_dim))
        return (lambda mean, var: self._propose(mean, var, rng, low, high)), extra

    def _weights(self, scores: torch.Tensor) -> torch.Tensor:
        """Weights [B, S] summing to 1 per env from scores [B, S] (non-finite where no score is finite)."""
        raise NotImplementedError

    def _refit(
        self, mean: torch.Tensor, var: torch.Tensor, new_mean: torch.Tensor, new_var: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The next mean and variance from the current ones and the weighted mean and variance of the candidates."""
        raise NotImplementedError

    def _iterations(self) -> int:
        """Iterations per plan (a feasibility scorer may extend them)."""
        return self.config.iterations

    def _exploration_draws(self, rng: PlannerRandom) -> tuple[torch.Tensor, ...]:
        """The random numbers :meth:`_explore` uses: one uniform [B, 1] to draw a candidate by weight."""
        return (rng.uniform((1,)),)

    def _explore(
        self, candidates: torch.Tensor, weights: torch.Tensor, var: torch.Tensor, draws: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        """The exploring action [B, A]: the first action of a candidate of the last iteration drawn by weight."""
        return self._draw_candidate(candidates, weights, draws[0])[:, 0]

    # ------------------------------------------------------------------------------ planning steps
    def _plan_batch(self, obs: torch.Tensor, deterministic: bool, rng: PlannerRandom) -> torch.Tensor:
        low, high = self.action_low.to(obs.device), self.action_high.to(obs.device)
        mean = self._warm_start(obs.shape[0], obs.device)
        init_var = self._initial_var(mean, low, high)
        var = init_var.clone()
        propose, extra = self._proposer(obs, rng, low, high)
        valid = torch.ones(obs.shape[0], dtype=torch.bool, device=obs.device)
        schedule = IterationSchedule(self.scorer, self._iterations(), init_var)
        # Drawn before iterating when envs may iterate unequally often: a batch still plans as its envs alone.
        draws = self._exploration_draws(rng) if schedule.extensible and not deterministic else None
        candidates = weights = None
        while not schedule.finished:
            # Envs whose schedule has ended keep their plan (a batch plans as its envs would alone).
            active = schedule.active
            proposals = torch.cat((propose(mean, var), extra), dim=1)
            new_weights = self._weights(self._score(obs, proposals, rng, schedule=schedule))
            ok = torch.isfinite(new_weights).all(dim=1)
            new_weights = torch.where(ok[:, None], new_weights, torch.zeros_like(new_weights))
            new_mean = torch.einsum("bs,bsha->bha", new_weights, proposals)
            new_var = torch.einsum("bs,bsha->bha", new_weights, (proposals - new_mean.unsqueeze(1)) ** 2)
            refit_mean, refit_var = self._refit(mean, var, new_mean, new_var)
            update = (ok & active)[:, None, None]
            mean = torch.where(update, refit_mean, mean)
            var = torch.where(update, refit_var, var)
            candidates = proposals if candidates is None else torch.where(active[:, None, None, None], proposals, candidates)
            weights = new_weights if weights is None else torch.where(active[:, None], new_weights, weights)
            valid &= ok | ~active
            var = schedule.step(var)
        self.feasibility_log.record(schedule)
        if deterministic:
            action = mean[:, 0]
        else:
            action = self._explore(candidates, weights, var, draws if draws is not None else self._exploration_draws(rng))
        action = self._fallback(obs, action, valid, low, high)
        self._mean = torch.cat((mean[:, 1:], mean[:, -1:]), dim=1)
        self._planned = torch.ones(obs.shape[0], dtype=torch.bool, device=obs.device)
        return action

    def _warm_start(self, batch: int, device: torch.device) -> torch.Tensor:
        shape = (batch, self.config.horizon, self.action_dim)
        if self._mean is None or self._mean.shape != shape or self._mean.device != device:
            self._mean = self._center(device).expand(shape).clone()
            self._planned = torch.zeros(batch, dtype=torch.bool, device=device)
        return self._mean

    def _center(self, device: torch.device) -> torch.Tensor:
        return ((self.action_low + self.action_high) / 2).to(device)

    def _score(
        self, obs: torch.Tensor, candidates: torch.Tensor, rng: PlannerRandom, schedule: IterationSchedule | None = None
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

    def _returns_all_elites(
        self, obs: torch.Tensor, candidates: torch.Tensor, rng: PlannerRandom
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
        self, obs: torch.Tensor, candidates: torch.Tensor, rng: PlannerRandom
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
        self, state: torch.Tensor, actions: torch.Tensor, rng: PlannerRandom, rows_per_env: int
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

    def _member_major_noise(self, rng: PlannerRandom, members: int, rows_per_env: int) -> torch.Tensor | None:
        """Standard normal model noise [members, B * rows_per_env, target_dim] (None: mean prediction)."""
        if self.config.deterministic_model:
            return None
        noise = rng.normal((members, rows_per_env, self.model.target_dim)).transpose(0, 1)
        return noise.reshape(members, -1, self.model.target_dim)

    def _draw_candidate(self, candidates: torch.Tensor, weights: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        """One sequence per env drawn with probability ``weights`` by ``uniform`` [B, 1]: [B, H, A]."""
        cumulative = weights.cumsum(dim=1)
        index = torch.searchsorted(cumulative, uniform * cumulative[:, -1:]).clamp(max=candidates.shape[1] - 1)
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


class TruncatedGaussianPlanner(SamplingPlanner):
    """
    A planner that samples its population from a normal around the plan's mean, truncated so that every
    sample stays within the bounds (ARC's and PETS's CEM sampling). Its config has ``init_var_divisor``
    (initial variance ``(high - low)^2 / init_var_divisor``) and ``truncation`` (in standard deviations).
    """

    def _initial_var(self, mean: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return ((high - low) ** 2 / self.config.init_var_divisor).expand_as(mean)

    def _propose(
        self, mean: torch.Tensor, var: torch.Tensor, rng: PlannerRandom, low: torch.Tensor, high: torch.Tensor
    ) -> torch.Tensor:
        """N sequences [B, N, H, A] from a truncated normal whose variance keeps samples in bounds."""
        cfg = self.config
        return truncated_gaussian_sequences(mean, var, rng, low, high, cfg.population_size, cfg.truncation)


def truncated_gaussian_sequences(
    mean: torch.Tensor,
    var: torch.Tensor,
    rng: PlannerRandom,
    low: torch.Tensor,
    high: torch.Tensor,
    count: int,
    truncation: float,
) -> torch.Tensor:
    """
    ``count`` sequences [B, count, H, A] from a normal truncated to ``+-truncation`` standard deviations
    around ``mean`` [B, H, A], its variance capped so that samples stay within the bounds (PETS's CEM).
    """
    room = torch.minimum(mean - low, high - mean).clamp_min(0.0) / truncation
    std = torch.minimum(var, room**2).sqrt()
    noise = rng.truncated_normal((count, *mean.shape[1:]), truncation)
    return (mean.unsqueeze(1) + std.unsqueeze(1) * noise).clamp(low, high)


def elite_weights(scores: torch.Tensor, num_elites: int, temperature: float) -> torch.Tensor:
    """
    Weights [B, S] over the ``num_elites`` best-scored sequences of each env, 0 for the others:
    ``softmax(temperature * score)`` over the elites, uniform over the finite ones with ``temperature=0``.
    A row without a finite score comes out NaN (the planner then falls back to the actor).

    :param scores: Scores [B, S] (non-finite scores are -inf).
    :param num_elites: Elites per env (at most S are used).
    :param temperature: Inverse temperature of the softmax (>= 0).
    """
    top = scores.topk(min(num_elites, scores.shape[1]), dim=1)
    logits = torch.full_like(scores, -math.inf)
    elite_logits = torch.where(torch.isfinite(top.values), temperature * top.values, top.values)
    return torch.softmax(logits.scatter(1, top.indices, elite_logits), dim=1)


def _check_bounds(
    action_low: np.ndarray | torch.Tensor | Sequence[float], action_high: np.ndarray | torch.Tensor | Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    low = torch.as_tensor(np.asarray(action_low, dtype=np.float32)).reshape(-1)
    high = torch.as_tensor(np.asarray(action_high, dtype=np.float32)).reshape(-1)
    if low.shape != high.shape:
        raise ValueError(f"action_low shape {tuple(low.shape)} differs from action_high shape {tuple(high.shape)}")
    if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
        raise ValueError(f"action bounds must be finite, got low={low.tolist()} high={high.tolist()}")
    if not (low < high).all():
        raise ValueError(f"action_low must be < action_high elementwise, got low={low.tolist()} high={high.tolist()}")
    return low, high


class PlannerRandom:
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
