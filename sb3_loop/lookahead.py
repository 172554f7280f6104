"""
``lookahead(model, data)``: LOOP's H-step lookahead around an already trained SB3 actor-critic (SAC, TD3,
sb3-contrib's TQC, or our CRR / TD3+BC), with a dynamics ensemble fitted on a dataset or replay buffer.
"""

from __future__ import annotations

import inspect
import os
import secrets
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.policies import BasePolicy

from sb3_loop.common.planning import (
    ARC_ARGUMENTS,
    ENSEMBLE_ARGUMENTS,
    TRAINING_ARGUMENTS,
    PlanningSettings,
    replay_buffer_transitions,
    vec_env_id,
)
from sb3_loop.common.policies import PlanningPolicyMixin, check_loop_spaces, deterministic_action, terminal_value
from sb3_loop.datasets import OfflineDataset, fill_replay_buffer, load_dataset
from sb3_loop.dynamics import EnsembleTrainingStats, print_fit_progress, train_ensemble
from sb3_loop.planning import MeanReturn, PessimisticReturn, Scorer

#: The planners ``lookahead`` offers: LOOP's online ARC and OfflineLOOP's.
PLANNERS = ("online", "offline")


class LookaheadPolicy(PlanningPolicyMixin, BasePolicy):
    """
    A trained actor-critic policy (``base_policy``) wrapped with a dynamics ensemble and an ARC planner:
    ``predict()`` plans around the base policy's deterministic actor, with its critic as terminal value.
    Made by :func:`lookahead`; works wherever an SB3 policy's ``predict`` does (``evaluate_policy``,
    rl-zoo3's ``enjoy`` with ``--algo lookahead``). ``save(path)`` / ``LookaheadPolicy.load(path)`` keep
    the base policy, the ensemble and the planner settings. ``actor_only()`` acts with the base policy.

    :param observation_space: The base policy's observation space.
    :param action_space: The base policy's action space (a bounded ``Box``).
    :param base_policy_class: The class of the wrapped policy (``SACPolicy``, ``TD3Policy``, ``TQCPolicy``, ...).
    :param base_policy_kwargs: Its constructor arguments (its ``_get_constructor_parameters()``).
    :param planning_kwargs: The ensemble and planner arguments of
        :class:`~sb3_loop.common.policies.PlanningPolicyMixin` (``ensemble_size``, ``arc_kwargs``,
        ``scorer``, ``planning_seed``, ...).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        base_policy_class: type[BasePolicy],
        base_policy_kwargs: dict[str, Any],
        **planning_kwargs: Any,
    ) -> None:
        planning_kwargs.pop("normalize_images", None)
        super().__init__(observation_space, action_space, squash_output=True, **planning_kwargs)
        self.base_policy_class = base_policy_class
        self.base_policy_kwargs = base_policy_kwargs
        self.base_policy = base_policy_class(**base_policy_kwargs)
        self._build_planning()
        self.fit_stats: EnsembleTrainingStats | None = None

    def planning_actor(self, obs: th.Tensor) -> th.Tensor:
        return deterministic_action(self.base_policy, obs)

    def planning_value(self, obs: th.Tensor, action: th.Tensor) -> th.Tensor:
        return terminal_value(self.base_policy, obs, action)

    def actor_action(self, observation: th.Tensor, deterministic: bool) -> th.Tensor:
        return self.base_policy._predict(observation, deterministic)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(base_policy_class=self.base_policy_class, base_policy_kwargs=self.base_policy_kwargs)
        return data

    @classmethod
    def load(  # type: ignore[override]
        cls, path: str | os.PathLike, device: th.device | str = "auto", **zoo_kwargs: Any
    ) -> LookaheadPolicy:
        """
        Load a saved lookahead policy.

        :param path: What ``save`` wrote.
        :param device: Device to load it on.
        :param zoo_kwargs: Ignored: rl-zoo3's ``enjoy`` passes ``custom_objects``, ``seed`` (and ``env``) to
            the ``load`` of every algorithm. The planner's random numbers come from the saved ``planning_seed``.
        """
        return super().load(os.fspath(path), device)


def lookahead(
    model: BaseAlgorithm,
    data: OfflineDataset | str | os.PathLike | ReplayBuffer,
    planner: str = "online",
    beta_pessimism: float | None = None,
    termination_fn: Any = None,
    seed: int | None = None,
    verbose: int = 0,
    **settings: Any,
) -> LookaheadPolicy:
    """
    Fit a dynamics ensemble on ``data`` and return a policy whose ``predict()`` plans with it around
    ``model``'s actor, scoring the last action with ``model``'s critic (the first twin critic; TQC: the
    mean of its quantiles).

    :param model: A trained SAC, TD3, TQC, CRR or TD3BC model (an off-policy actor-critic with a
        squashed ``Box`` action space).
    :param data: The transitions to fit the ensemble on: the model's replay buffer, an
        :class:`~sb3_loop.datasets.OfflineDataset`, or what ``sb3_loop.datasets.load_dataset`` reads.
    :param planner: ``"online"``: LOOP's ARC (Gaussian proposals around the plan, with actor rollouts mixed
        in; LOOP's defaults). ``"offline"``: OfflineLOOP's (noisy rollouts of the actor, pessimistic scoring;
        OfflineLOOP's defaults).
    :param beta_pessimism: Score = mean - beta_pessimism * std of the return across members and particles
        (``None``: 0, the mean return, for ``"online"``; 1 for ``"offline"``).
    :param termination_fn: Env id or callable ``next_obs -> done`` (``None``: the model's env id, else the
        dataset's ``metadata["env"]``, else never terminates).
    :param seed: Seeds the ensemble fit and the planner (``planning_seed``; ``None``: one is drawn).
    :param verbose: 1: print the fit's holdout error and time, after every epoch and at the end.
    :param settings: Planner and ensemble settings by LOOP's / OfflineLOOP's constructor names (``horizon``,
        ``population_size``, ``kappa``, ``noise_std``, ``ensemble_size``, ``dynamics_hidden_sizes``,
        ``dynamics_max_epochs``, ...). The ensemble is fitted once, so by default to early stopping
        (``dynamics_max_epochs`` and ``dynamics_max_gradient_steps`` ``None``).
    :return: The lookahead policy, on the model's device.
    """
    base = _checked_policy(model)
    parsed, scorer = _settings(planner, beta_pessimism, settings)
    buffer, data_env_id = _as_buffer(model, data)
    obs, actions, rewards, next_obs = replay_buffer_transitions(buffer, int(np.prod(model.observation_space.shape)))  # type: ignore[arg-type]
    if termination_fn is None:
        termination_fn = vec_env_id(model.get_env()) or data_env_id
    planning_seed = int(seed) if seed is not None else secrets.randbits(63)
    policy = LookaheadPolicy(
        model.observation_space,
        model.action_space,  # type: ignore[arg-type]
        type(base),
        base._get_constructor_parameters(),
        arc_kwargs=parsed.arc_kwargs,
        termination_fn=termination_fn,
        planning_seed=planning_seed,
        scorer=scorer,
        **parsed.dynamics_policy_kwargs,
    )
    policy.base_policy.load_state_dict(base.state_dict())
    policy.to(model.device)
    policy.set_training_mode(False)
    dynamics = policy.dynamics
    dynamics.train()
    policy.fit_stats = train_ensemble(
        dynamics,
        dynamics.optimizer,
        obs,
        actions,
        rewards,
        next_obs,
        config=parsed.dynamics_training_config,
        generator=th.Generator().manual_seed(planning_seed),
        indices=np.arange(len(rewards)),
        on_epoch=print_fit_progress(len(rewards)) if verbose else None,
    )
    dynamics.eval()
    if verbose:
        stats = policy.fit_stats
        print(
            f"lookahead: ensemble fitted on {stats.num_samples} transitions in {stats.seconds:.1f} s, "
            f"{stats.epochs} epochs, elite holdout MSE {np.mean(stats.holdout_mse[: dynamics.num_elites]):.4f}"
        )
    return policy


def _checked_policy(model: BaseAlgorithm) -> BasePolicy:
    """The model's policy, if it has what planning needs; otherwise ``ValueError`` naming the model."""
    name = type(model).__name__
    if not isinstance(model, BaseAlgorithm):
        raise ValueError(f"lookahead needs a trained Stable-Baselines3 model (SAC, TD3, TQC, CRR, TD3BC), got {model!r}")
    if not isinstance(model.action_space, spaces.Box):
        raise ValueError(
            f"lookahead plans continuous actions: the {name} model's action space is {model.action_space}, not a Box"
        )
    policy = model.policy
    if not (hasattr(policy, "actor") and hasattr(policy, "critic") and policy.squash_output):
        raise ValueError(
            f"lookahead needs an actor and a Q critic of (observation, action) with actions squashed to [-1, 1]: the "
            f"{name} model's policy {type(policy).__name__} has none (use SAC, TD3, TQC, CRR or TD3BC)"
        )
    check_loop_spaces(model.observation_space, model.action_space, f"lookahead (the {name} model)")
    return policy


def _settings(planner: str, beta_pessimism: float | None, settings: dict[str, Any]) -> tuple[PlanningSettings, Scorer]:
    """Checked planner / ensemble settings (defaults: LOOP's or OfflineLOOP's) and the scorer."""
    from sb3_loop.loop import LOOP
    from sb3_loop.offline.offline_loop import OFFLINE_ARC_ARGUMENTS, OfflineLOOP

    if planner not in PLANNERS:
        raise ValueError(f"planner={planner!r} must be one of {PLANNERS}")
    algorithm, arc_arguments = (LOOP, ARC_ARGUMENTS) if planner == "online" else (OfflineLOOP, OFFLINE_ARC_ARGUMENTS)
    allowed = {*arc_arguments, *TRAINING_ARGUMENTS, *ENSEMBLE_ARGUMENTS}
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise ValueError(f"{unknown} are not settings of the {planner!r} lookahead; those are {sorted(allowed)}")
    parameters = inspect.signature(algorithm.__init__).parameters
    arguments = {name: parameters[name].default for name in allowed if name in parameters}
    arguments.update(dynamics_max_epochs=None, dynamics_max_gradient_steps=None)  # one fit: to convergence
    arguments.update(settings)
    fixed = dict(algorithm.fixed_arc_settings)
    parsed = PlanningSettings.from_arguments(arguments, arc_arguments, **fixed)
    beta = (0.0 if planner == "online" else 1.0) if beta_pessimism is None else beta_pessimism
    if not (isinstance(beta, (int, float)) and beta >= 0):
        raise ValueError(f"beta_pessimism={beta_pessimism!r} must be a number >= 0")
    return parsed, (MeanReturn() if beta == 0 else PessimisticReturn(float(beta)))


def _as_buffer(
    model: BaseAlgorithm, data: OfflineDataset | str | os.PathLike | ReplayBuffer
) -> tuple[ReplayBuffer, str | None]:
    """The data in a replay buffer (actions scaled to [-1, 1]), checked against the model's spaces, and its env id."""
    if isinstance(data, ReplayBuffer):
        _check_buffer_spaces(data, model)
        if data.size() < 2:
            raise ValueError(f"the replay buffer holds {data.size()} transitions; fitting the ensemble needs at least 2")
        return data, None
    if not isinstance(data, (OfflineDataset, str, os.PathLike)):
        raise ValueError(
            f"data={data!r} must be a replay buffer, an OfflineDataset, a file path, a dataset name or a Minari id"
        )
    dataset = data if isinstance(data, OfflineDataset) else load_dataset(data)
    dataset.check_spaces(model.observation_space, model.action_space, f"the {type(model).__name__} model")
    buffer = ReplayBuffer(len(dataset), model.observation_space, model.action_space, device="cpu")
    fill_replay_buffer(buffer, dataset)
    env_id = dataset.metadata.get("env")
    return buffer, env_id if isinstance(env_id, str) else None


def _check_buffer_spaces(buffer: ReplayBuffer, model: BaseAlgorithm) -> None:
    name = type(model).__name__
    if buffer.observation_space.shape != model.observation_space.shape:
        raise ValueError(
            f"the replay buffer's observation space {buffer.observation_space} does not match the {name} model's "
            f"{model.observation_space}"
        )
    buffer_actions, actions = buffer.action_space, model.action_space
    same = (
        isinstance(buffer_actions, spaces.Box)
        and buffer_actions.shape == actions.shape
        and np.allclose(buffer_actions.low, actions.low)  # type: ignore[attr-defined]
        and np.allclose(buffer_actions.high, actions.high)  # type: ignore[attr-defined]
    )
    if not same:
        raise ValueError(f"the replay buffer's action space {buffer_actions} does not match the {name} model's {actions}")
