"""OfflineLOOP: LOOP's H-step lookahead over an offline prior (Sikchi, Zhou & Held, CoRL 2021, section 6.2)."""

from __future__ import annotations

import io
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import torch as th
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule

from sb3_loop.checks import check_number
from sb3_loop.common.planning import ARC_ARGUMENTS, PlanningAlgorithmMixin
from sb3_loop.datasets import OfflineDataset
from sb3_loop.dynamics import EnsembleTrainingStats
from sb3_loop.offline.common import OfflineAlgorithm
from sb3_loop.offline.crr import CRR
from sb3_loop.offline.policies import OfflineLOOPPolicy, OfflineLOOPTD3Policy
from sb3_loop.offline.td3bc import TD3BC
from sb3_loop.planning import PessimisticReturn, Scorer

SelfOfflineLOOP = TypeVar("SelfOfflineLOOP", bound="OfflineLOOP")

#: OfflineLOOP's planner arguments -> ARCConfig fields (no variance: the proposals are the prior's).
OFFLINE_ARC_ARGUMENTS: dict[str, str] = {
    **{name: field for name, field in ARC_ARGUMENTS.items() if name != "var_momentum"},
    "noise_std": "noise_std",
    "smoothing": "smoothing",
}
#: The priors by their ``prior`` name.
PRIORS = ("crr", "td3bc")


class OfflineLOOP(PlanningAlgorithmMixin, OfflineAlgorithm):
    """
    OfflineLOOP: from one dataset, train an offline prior (CRR by default, or TD3+BC) with its critic and
    a dynamics ensemble, then act with the offline ARC, an H-step lookahead around the prior.

    At every step the planner rolls the prior (deterministic) through the ensemble ``population_size``
    times (each rollout following one random elite member, with model noise), adds Gaussian noise
    ``noise_std`` to every action, smooths the sequences towards the previous step's plan (shifted one
    step; weight ``smoothing``), clips them to the action bounds and scores each by
    ``r_0 + ... + r_{H-2} + Q(s_{H-1}, a_{H-1})`` (Q: the prior's first critic) on ``num_particles``
    particles per elite: ``mean - beta_pessimism * std`` of those returns
    (:class:`~sb3_loop.planning.PessimisticReturn`). It acts the first action of the average of the
    sequences weighted by ``exp(kappa * score)`` (one iteration by default).

    ``OfflineLOOP(...)`` builds an ``OfflineLOOPCRR`` or ``OfflineLOOPTD3BC`` (subclasses of
    ``OfflineLOOP`` and of the prior's class, chosen by ``prior``), and ``OfflineLOOP.load`` loads either.
    ``learn(total_timesteps=N)`` first fits the ensemble on the dataset (when it has not been fitted yet:
    a fixed holdout by row index, early stopping; see :meth:`train_dynamics`), then does N gradient steps
    of the prior, as :class:`~sb3_loop.offline.common.OfflineAlgorithm` describes; ``predict()`` plans
    once the ensemble is fitted, ``actor_only()`` acts with the prior alone. The dataset is not saved.

    Paper: https://arxiv.org/abs/2008.10066. Defaults are the paper's offline configuration and the
    defaults of its code's offline ARC (horizon 5, 100 sequences, 4 particles, one iteration, kappa 0.3,
    noise 0.01, smoothing 0, pessimism 1, no extra noise-free prior sequences, every elite carrying every
    particle). One difference of scale: the paper's code takes the mean and std over the particles of one
    member (the last elite, as its loop overwrites the others) and divides the score by members x particles
    (5 x 4 with its offline config's 5 members) before ``exp(kappa * score)``; here the statistics are over
    all elites' particles and the score is not divided, so its ``kappa`` 0.3 acts like 0.3 / 20 = 0.015
    here, a much flatter weighting than our default.
    ``kappa`` is one of the ``-optimize`` search dimensions.

    :param policy: The policy model to use (``"MlpPolicy"``).
    :param env: The environment whose spaces the dataset must fit; callbacks evaluate on it. May be ``None``
        only to build a model for loading.
    :param dataset: The transitions to learn from: an :class:`~sb3_loop.datasets.OfflineDataset`, or a file
        path, dataset name (``"Hopper-v5-medium"``) or Minari id read by ``sb3_loop.datasets.load_dataset``.
    :param prior: The offline prior: ``"crr"`` (the paper's, default) or ``"td3bc"``.
    :param prior_kwargs: The prior's own arguments (CRR: ``beta``, ``n_action_samples``, ``advantage_type``,
        ``weight_type``, ``max_weight``, ``target_update_interval``, ``normalize_observations``; TD3+BC:
        ``alpha``, ``policy_delay``, ``target_policy_noise``, ``target_noise_clip``,
        ``normalize_observations``); their defaults are the prior's.
    :param learning_rate: Learning rate of the prior's actor and critic (constant or schedule).
    :param batch_size: Minibatch size of each gradient step of the prior.
    :param tau: Soft update coefficient of the prior's target networks.
    :param gamma: Discount factor of the prior's critic.
    :param horizon: Planning horizon H (the model predicts H-1 steps, the critic scores the last action;
        the paper sweeps 2-10).
    :param population_size: Noisy prior rollouts N per step.
    :param num_particles: Particles P per sequence (per elite member with ``propagation="paper"``).
    :param planning_iterations: Planning iterations per step (later iterations smooth towards the
        current plan instead of the previous step's).
    :param noise_std: Standard deviation sigma of the Gaussian noise on the prior's actions, in the squashed
        [-1, 1] action units (the paper sweeps 0.01-0.8; 0.01 is its code's default). Every proposal starts
        with the prior's action at the current state, so the planned action moves from the prior's by the
        weighted mean of this noise: it bounds what planning can change, and 0.01 keeps the prior nearly as is.
    :param smoothing: Weight beta of the previous plan in the smoothing of each proposed action (0: none).
    :param beta_pessimism: Score = mean - beta_pessimism * std of the return across members and particles
        (0: the plain mean; the paper sweeps 0-5).
    :param kappa: Temperature of the exponential weighting ``exp(kappa * score)``.
    :param mixture_coef: Fraction of N added as noise-free prior rollouts (the paper's code: none).
    :param propagation: ``"paper"`` (every elite carries every particle, so the spread covers the members'
        disagreement, as in the paper's code) or ``"random_elite"`` (each particle follows one random elite).
    :param ensemble_size: Dynamics ensemble members.
    :param num_elites: Members used for planning.
    :param dynamics_hidden_sizes: Hidden layers of each member.
    :param dynamics_learning_rate: Adam learning rate of the ensemble.
    :param dynamics_batch_size: Minibatch size of ensemble training.
    :param dynamics_max_epochs: Epoch cap of the fit (``None``: until early stopping, the paper's).
    :param dynamics_max_gradient_steps: Cap on the fit's minibatch updates (``None``: no cap).
    :param dynamics_holdout_ratio: Fraction of the dataset held out (by a hash of the row index) for early
        stopping and elite selection.
    :param termination_fn: Env id or callable ``next_obs -> done``; ``None`` infers it from the env id.
    :param stats_window_size: Window size for the rollout logging (unused offline, kept for SB3).
    :param tensorboard_log: The log location for tensorboard (if None, no logging).
    :param policy_kwargs: Additional arguments to the policy on creation (default ``net_arch=[256, 256]``).
    :param verbose: Verbosity level.
    :param seed: Seed for the pseudo random generators. It is also the policy's ``planning_seed``, which
        makes ``predict(deterministic=True)`` reproducible across calls, save/load and copies.
    :param device: Device on which the code should be run.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance.
    :param online_arguments: Online-only arguments (``learning_starts``, ``train_freq``, ...) are refused
        with a ``ValueError`` that says why.
    """

    arc_arguments: ClassVar[dict[str, str]] = OFFLINE_ARC_ARGUMENTS
    fixed_arc_settings: ClassVar[dict[str, Any]] = {"proposal": "prior"}
    scorer_arguments: ClassVar[tuple[str, ...]] = ("beta_pessimism",)
    #: The ``prior`` name of a concrete class.
    prior_name: ClassVar[str] = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> OfflineLOOP:
        if cls is OfflineLOOP:
            cls = prior_class(kwargs.get("prior", args[3] if len(args) > 3 else None))
        return super().__new__(cls)

    def __init__(
        self,
        policy: str | type[BasePolicy],
        env: GymEnv | str | None,
        dataset: OfflineDataset | str | os.PathLike | None = None,
        prior: str | None = None,
        prior_kwargs: dict[str, Any] | None = None,
        learning_rate: float | Schedule = 3e-4,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        horizon: int = 5,
        population_size: int = 100,
        num_particles: int = 4,
        planning_iterations: int = 1,
        noise_std: float = 0.01,
        smoothing: float = 0.0,
        beta_pessimism: float = 1.0,
        kappa: float = 0.3,
        mixture_coef: float = 0.0,
        propagation: str = "paper",
        ensemble_size: int = 7,
        num_elites: int = 5,
        dynamics_hidden_sizes: Sequence[int] = (200, 200, 200, 200),
        dynamics_learning_rate: float = 1e-3,
        dynamics_batch_size: int = 256,
        dynamics_max_epochs: int | None = None,
        dynamics_max_gradient_steps: int | None = None,
        dynamics_holdout_ratio: float = 0.2,
        termination_fn: str | Callable[[th.Tensor], th.Tensor] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
        **online_arguments: Any,
    ) -> None:
        if prior is not None and prior != self.prior_name:
            raise ValueError(f"prior={prior!r} does not match {type(self).__name__}, whose prior is {self.prior_name!r}")
        if prior_kwargs is not None and not isinstance(prior_kwargs, dict):
            raise ValueError(f"prior_kwargs={prior_kwargs!r} must be a dict of the prior's arguments")
        check_number("beta_pessimism", beta_pessimism, 0.0)
        self._init_planning(locals(), seed)
        self.prior = self.prior_name
        self.beta_pessimism = beta_pessimism
        super().__init__(
            policy,
            env,
            dataset=dataset,
            learning_rate=learning_rate,
            batch_size=batch_size,
            tau=tau,
            gamma=gamma,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
            **(prior_kwargs or {}),
            **online_arguments,
        )
        self._resolve_termination_fn()
        if _init_setup_model:
            self._setup_model()

    @classmethod
    def _accepts_policy_class(cls, policy_class: Any) -> bool:
        if cls is OfflineLOOP:
            return isinstance(policy_class, type) and issubclass(policy_class, (OfflineLOOPPolicy, OfflineLOOPTD3Policy))
        return super()._accepts_policy_class(policy_class)

    def _make_scorer(self) -> Scorer:
        check_number("beta_pessimism", self.beta_pessimism, 0.0)
        return PessimisticReturn(self.beta_pessimism)

    # ------------------------------------------------------------------------------- the ensemble
    def train_dynamics(self) -> EnsembleTrainingStats:
        """
        Fit the ensemble on the dataset and log ``dynamics/*``: a fixed holdout of rows (by a hash of the
        row index), early stopping when no member improved by 1% for 5 epochs (capped only by
        ``dynamics_max_epochs`` / ``dynamics_max_gradient_steps``), elites by holdout error. ``learn``
        calls it when the ensemble has not been fitted; call it to refit, e.g. after ``set_dataset``.
        With ``verbose >= 1`` it prints every epoch's holdout error (a fit on 1M rows takes a while).
        """
        if self.dataset is None or self.replay_buffer is None:
            raise ValueError(
                f"{type(self).__name__} has no dataset to fit the ensemble on: pass dataset=... to the constructor "
                "or to load(), or call set_dataset()"
            )
        return self._fit_dynamics_on_replay_buffer(print_epochs=self.verbose >= 1)

    def _setup_learn(self, *args: Any, **kwargs: Any) -> Any:
        result = super()._setup_learn(*args, **kwargs)
        if not self.policy.dynamics.is_trained:
            self.train_dynamics()
        return result

    def learn(
        self: SelfOfflineLOOP,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int | None = 1000,
        tb_log_name: str | None = "OfflineLOOP",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfOfflineLOOP:
        """
        Fit the ensemble on the dataset if it is not fitted yet, then do ``total_timesteps`` gradient
        steps of the prior (``num_timesteps`` counts them; callbacks, e.g. ``EvalCallback``, see the
        planner act once the ensemble is fitted).

        :param total_timesteps: Gradient steps of the prior (in all, when ``reset_num_timesteps=False``).
        :param callback: Called after every gradient step.
        :param log_interval: Dump the logs every this many gradient steps (``None``: never).
        :param tb_log_name: Tensorboard run name.
        :param reset_num_timesteps: Start counting from zero (``False``: continue).
        :param progress_bar: Show a progress bar over the gradient steps.
        """
        return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)

    # ------------------------------------------------------------------------------- save / load
    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfOfflineLOOP],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfOfflineLOOP:
        """
        Load an OfflineLOOP model of either prior (``OfflineLOOP.load``) or of one prior
        (``OfflineLOOPCRR.load``). Planner settings (``horizon``, ``noise_std``, ``beta_pessimism``, ...)
        passed as ``kwargs`` replace the saved ones; to train further pass ``dataset=...`` (and ``env``).
        """
        if cls is OfflineLOOP:
            data = cls._check_saved_class(path, custom_objects)
            cls = prior_class(data.get("prior"))  # type: ignore[assignment]
        # super() would bind the class this was called on, not the prior's class chosen above.
        return super(OfflineLOOP, cls).load(  # noqa: UP008
            path, env, device, custom_objects, print_system_info, force_reset, **kwargs
        )


class OfflineLOOPCRR(OfflineLOOP, CRR):
    """OfflineLOOP with the CRR prior (``OfflineLOOP(..., prior="crr")``); see :class:`OfflineLOOP`."""

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": OfflineLOOPPolicy}
    policy: OfflineLOOPPolicy
    prior_name = "crr"


class OfflineLOOPTD3BC(OfflineLOOP, TD3BC):
    """OfflineLOOP with the TD3+BC prior (``OfflineLOOP(..., prior="td3bc")``); see :class:`OfflineLOOP`."""

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": OfflineLOOPTD3Policy}
    policy: OfflineLOOPTD3Policy
    prior_name = "td3bc"


def prior_class(prior: str | None) -> type[OfflineLOOP]:
    """
    The OfflineLOOP class of a prior.

    :param prior: ``"crr"`` (also for ``None``) or ``"td3bc"``.
    """
    classes: dict[str, type[OfflineLOOP]] = {"crr": OfflineLOOPCRR, "td3bc": OfflineLOOPTD3BC}
    if prior is None:
        return OfflineLOOPCRR
    if prior not in classes:
        raise ValueError(f"prior={prior!r} is not one of {', '.join(map(repr, PRIORS))}")
    return classes[prior]
