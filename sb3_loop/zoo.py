"""
rl-zoo3 launcher: ``python -m sb3_loop train|enjoy|record_video|plots ...``.

The launcher adds our algorithms to rl-zoo3's tables (``rl_zoo3.utils.ALGOS`` and, for
``-optimize``, ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER`` / ``HYPERPARAMS_CONVERTER``) and then
runs rl-zoo3's own entry points with the user's arguments (``sys.argv`` rewritten), so every zoo
option works unchanged. It adds a default ``--conf-file``:

- for one of our algorithms (``loop``, ``offline_loop``, ``crr``, ...) the packaged ``sb3_loop/hyperparams/<algo>.yml``;
- for a stock algorithm (``sac``, ``td3``, ...) our packaged ``<algo>.yml`` if it has an entry for
  the requested env (rl-zoo3 ships MuJoCo entries for ``-v4`` only; ours are the matching ``-v5``
  baselines), otherwise nothing: the zoo's own file is used as usual.

An explicit ``-conf/--conf-file`` always wins.

``train`` also takes two options of the launcher's own, for runs longer than a sitting:

- ``--checkpoint-dir DIR``: every ``--checkpoint-freq N`` env steps (default: ``--eval-freq``) write a
  checkpoint of the whole run to ``DIR`` (model with its optimisers and LOOP's ensemble, replay buffer,
  evaluations so far; see :mod:`sb3_loop.resume`). When ``DIR`` already holds one, the run continues
  from it instead of starting over: ``num_timesteps`` and the evaluations carry on and training stops at
  ``-n`` steps in all. Repeating the killed command is enough; a checkpoint written with other ``train``
  arguments or hyperparameters is refused (delete ``DIR`` to start again).

Examples::

    python -m sb3_loop train --algo loop --env HalfCheetah-v5 --eval-freq 5000
    python -m sb3_loop train --algo td3bc --env Hopper-v5 --eval-freq 5000 -params dataset:"'hopper.hdf5'"
    python -m sb3_loop train --algo offline_loop --env Hopper-v5 --eval-freq 5000 -params beta_pessimism:3
    python -m sb3_loop enjoy --algo loop --env HalfCheetah-v5 -f logs --no-render
    MUJOCO_GL=egl python -m sb3_loop record_video --algo loop --env HalfCheetah-v5 -f logs -n 500
    python -m sb3_loop plots all_plots -a loop sac -e HalfCheetah-v5 -f logs --no-display \\
        --figure-dir plots/
    python -m sb3_loop train --algo loop --env Pendulum-v1 -optimize --n-trials 20 \\
        --storage optuna.log --study-name loop-pendulum
    # killed? the same command again continues from the latest checkpoint
    python -m sb3_loop train --algo loop --env Hopper-v5 --eval-freq 5000 --checkpoint-dir logs/hopper-checkpoint
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import re
import runpy
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sb3_loop.resume import CheckpointOptions

#: Directory of the packaged rl-zoo3 hyperparameter files (shipped as package data).
HYPERPARAMS_DIR = Path(__file__).resolve().parent / "hyperparams"


@dataclass(frozen=True)
class ZooAlgorithm:
    """
    How one of our algorithms is exposed to rl-zoo3.

    :param algorithm: ``"module:Class"`` of the algorithm (imported only when registered).
    :param sampler: ``"module:function"`` of the Optuna sampler for ``-optimize`` (or ``None``).
    :param off_policy: Load with a 1-transition replay buffer in ``enjoy``/``record_video``, as the
        zoo does for its own off-policy algorithms.
    :param trainable: ``False`` for what ``train`` cannot make (registered for ``enjoy``/``record_video`` only).
    """

    algorithm: str
    sampler: str | None = None
    off_policy: bool = True
    trainable: bool = True

    def load_algorithm(self) -> type:
        return _import_object(self.algorithm)

    def load_sampler(self) -> Callable[..., dict[str, Any]] | None:
        return None if self.sampler is None else _import_object(self.sampler)


#: Our algorithms by their ``--algo`` name; each trainable one has its ``sb3_loop/hyperparams/<name>.yml``
#: (and the copy in the top-level ``hyperparams/``).
ZOO_ALGORITHMS: dict[str, ZooAlgorithm] = {
    "loop": ZooAlgorithm("sb3_loop.loop:LOOP", sampler="sb3_loop.zoo:sample_loop_params"),
    # Stock SAC with LOOP's SAC settings (hyperparams/sac_as_loop.yml): the paper's baseline, the SAC
    # inside LOOP without the model and the planner.
    "sac_as_loop": ZooAlgorithm("stable_baselines3:SAC"),
    # Offline priors: `-n` counts gradient steps on the YAML's `dataset`. They load without it and size
    # their replay buffer from it, so enjoy needs no 1-transition buffer.
    "crr": ZooAlgorithm("sb3_loop.offline:CRR", off_policy=False),
    "td3bc": ZooAlgorithm("sb3_loop.offline:TD3BC", off_policy=False),
    # OfflineLOOP: the prior's gradient steps as crr/td3bc, after fitting the ensemble on the dataset.
    "offline_loop": ZooAlgorithm(
        "sb3_loop.offline:OfflineLOOP", sampler="sb3_loop.zoo:sample_offline_loop_params", off_policy=False
    ),
    # A saved sb3_loop.lookahead(...) policy, for enjoy/record_video only: save it as
    # <folder>/lookahead/<ENV>_<id>/<ENV>.zip, then `enjoy --algo lookahead --env <ENV> -f <folder>`.
    "lookahead": ZooAlgorithm("sb3_loop.lookahead:LookaheadPolicy", off_policy=False, trainable=False),
    # SAC-Lagrangian, the constrained baseline of SafeLOOP (envs must report info["cost"]).
    "sac_lag": ZooAlgorithm("sb3_loop.safe:SACLagrangian"),
    # SafeLOOP: LOOP with a cost-constrained planner (envs must report info["cost"]).
    "safe_loop": ZooAlgorithm("sb3_loop.safe:SafeLOOP"),
}

PLOT_SCRIPTS = ("all_plots", "plot_train", "plot_from_file")
COMMANDS = ("train", "enjoy", "record_video", "plots", *PLOT_SCRIPTS, "collect", "behaviour")

USAGE = f"""usage: python -m sb3_loop {{{",".join(COMMANDS)}}} [rl-zoo3 arguments ...]

Runs rl-zoo3's entry point with our algorithms ({", ".join(sorted(ZOO_ALGORITHMS))}) registered.
  train          rl_zoo3.train (packaged hyperparams/<algo>.yml used when --conf-file is not given);
                 the launcher's own --checkpoint-dir DIR [--checkpoint-freq N] checkpoints the run to
                 DIR every N steps (default --eval-freq) and continues from DIR's latest checkpoint
  enjoy          rl_zoo3.enjoy
  record_video   rl_zoo3.record_video (headless MuJoCo: MUJOCO_GL=egl)
  collect ENV_ID --kind random|medium|medium-replay|medium-expert|expert
                 make a D4RL-style dataset here (sb3_loop.datasets.cli)
  behaviour ENV_ID --level medium|expert
                 train the behaviour policy of the medium/expert datasets (SAC through this launcher)
  plots [all_plots|plot_train|plot_from_file] ...
                 rl_zoo3.plots scripts (default all_plots); the launcher's own option
                 --figure-dir DIR saves every figure as PNG there (useful without a display)
`python -m sb3_loop <command> -h` shows the zoo's options of that command."""


def _import_object(path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


# --------------------------------------------------------------------------------- registration
def register_algorithms(names: Sequence[str] | None = None, for_inference: bool = False) -> None:
    """
    Add our algorithms (all of :data:`ZOO_ALGORITHMS` by default) to rl-zoo3's ``ALGOS`` table and
    their samplers to ``HYPERPARAMS_SAMPLER`` / ``HYPERPARAMS_CONVERTER``.

    :param names: Which algorithms to register.
    :param for_inference: Register classes whose ``load`` defaults to ``buffer_size=1`` for off-policy
        algorithms (what rl-zoo3's ``enjoy``/``record_video`` do for ``sac``/``td3``, which they only
        do for names in their own hard-coded list).
    """
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER
    from rl_zoo3.utils import ALGOS

    for name in ZOO_ALGORITHMS if names is None else names:
        entry = ZOO_ALGORITHMS[name]
        if not (entry.trainable or for_inference):
            ALGOS.pop(name, None)
            continue
        algorithm_class = entry.load_algorithm()
        if for_inference and entry.off_policy:
            algorithm_class = _inference_class(algorithm_class)
        ALGOS[name] = algorithm_class
        sampler = entry.load_sampler()
        if sampler is not None:
            HYPERPARAMS_SAMPLER[name] = sampler
            HYPERPARAMS_CONVERTER[name] = convert_sampled_params


def _inference_class(algorithm_class: type) -> type:
    """A subclass whose ``load`` uses a 1-transition replay buffer unless told otherwise."""

    def load(cls: type, path: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("buffer_size", 1)
        return algorithm_class.load.__func__(cls, path, *args, **kwargs)  # type: ignore[attr-defined]

    return type(algorithm_class.__name__, (algorithm_class,), {"load": classmethod(load), "__module__": __name__})


# ------------------------------------------------------------------------ hyperparameter files
def hyperparams_path(algo: str) -> Path:
    """The packaged rl-zoo3 YAML file for ``algo`` (it may not exist for stock algorithms)."""
    return HYPERPARAMS_DIR / f"{algo}.yml"


def packaged_env_ids(algo: str) -> set[str]:
    """Env ids that have an entry in our packaged ``<algo>.yml`` (empty if there is no such file)."""
    import yaml

    path = hyperparams_path(algo)
    if not path.is_file():
        return set()
    with open(path) as file:
        return set(yaml.safe_load(file) or {})


def default_conf_file(algo: str, env_id: str) -> str | None:
    """
    The ``--conf-file`` the launcher adds when the user gave none: always ours for our algorithms,
    ours for a stock algorithm only when our file has an entry for ``env_id``, otherwise ``None``
    (rl-zoo3's own file).
    """
    if algo in ZOO_ALGORITHMS:
        return str(hyperparams_path(algo))
    if env_id in packaged_env_ids(algo):
        return str(hyperparams_path(algo))
    return None


def _train_options(argv: Sequence[str]) -> argparse.Namespace:
    """The few ``train`` options the launcher looks at, parsed as rl-zoo3's parser would."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("-conf", "--conf-file", default=None)
    options, _ = parser.parse_known_args(list(argv))
    return options


def with_default_conf_file(argv: Sequence[str]) -> list[str]:
    """``train`` arguments with our default ``--conf-file`` appended when applicable."""
    argv = list(argv)
    if any(arg in ("-h", "--help") for arg in argv):
        return argv
    options = _train_options(argv)
    if options.conf_file is not None:
        return argv
    conf_file = default_conf_file(options.algo, options.env)
    return argv if conf_file is None else [*argv, "--conf-file", conf_file]


def split_checkpoint_options(
    argv: Sequence[str], start_time: float | None = None
) -> tuple[CheckpointOptions | None, list[str]]:
    """
    The launcher's ``--checkpoint-dir`` / ``--checkpoint-freq`` out of ``train`` arguments: a
    :class:`sb3_loop.resume.CheckpointOptions` (``None`` without ``--checkpoint-dir``) and the
    arguments left for the zoo.
    """
    parser = argparse.ArgumentParser(prog="sb3_loop train", add_help=False, allow_abbrev=False)
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--checkpoint-freq", type=int, default=None)
    options, rest = parser.parse_known_args(list(argv))
    if options.checkpoint_dir is None:
        if options.checkpoint_freq is not None:
            parser.error("--checkpoint-freq needs --checkpoint-dir")
        return None, rest
    if options.checkpoint_freq is not None and options.checkpoint_freq < 1:
        parser.error(f"--checkpoint-freq must be >= 1, not {options.checkpoint_freq}")
    from sb3_loop.resume import CheckpointOptions

    start = time.time() if start_time is None else start_time
    return CheckpointOptions(Path(options.checkpoint_dir), options.checkpoint_freq, tuple(rest), start), rest


def _train(argv: list[str]) -> None:
    start_time = time.time()
    checkpoint, argv = split_checkpoint_options(argv, start_time)
    register_algorithms()
    import rl_zoo3.train

    sys.argv = ["sb3_loop train", *with_default_conf_file(argv)]
    if checkpoint is None:
        rl_zoo3.train.train()
        return
    from sb3_loop.resume import IncompatibleCheckpoint, ResumableExperimentManager

    manager = rl_zoo3.train.ExperimentManager
    rl_zoo3.train.ExperimentManager = functools.partial(ResumableExperimentManager, checkpoint=checkpoint)
    try:
        rl_zoo3.train.train()
    except IncompatibleCheckpoint as error:
        raise SystemExit(f"sb3_loop train: error: {error}") from error
    finally:
        rl_zoo3.train.ExperimentManager = manager


# ----------------------------------------------------------------------------- Optuna sampler
def sample_loop_params(trial: Any, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    rl-zoo3 sampler for LOOP: the planner's main knobs, how often the model is refit, and SAC's
    learning rate. Every other value comes from the YAML entry (paper defaults).

    :param trial: Optuna trial.
    :param n_actions: Action dimension (unused).
    :param n_envs: Number of environments (unused).
    :param additional_args: rl-zoo3's extra sampler arguments (unused).
    :return: LOOP constructor keyword arguments.
    """
    return {
        "horizon": trial.suggest_int("horizon", 2, 8),
        "population_size": trial.suggest_categorical("population_size", [25, 50, 100, 200, 400]),
        "num_particles": trial.suggest_categorical("num_particles", [1, 2, 4, 8]),
        "kappa": trial.suggest_float("kappa", 0.1, 10.0, log=True),
        "mixture_coef": trial.suggest_float("mixture_coef", 0.0, 0.3),
        "dynamics_train_freq": trial.suggest_categorical("dynamics_train_freq", [100, 250, 500, 1000]),
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
    }


def sample_offline_loop_params(trial: Any, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    rl-zoo3 sampler for OfflineLOOP: the offline planner's knobs, over the ranges the paper sweeps (noise
    0.01-0.8, pessimism 0-5, kappa 0.01-10, horizon 2-10). Every trial also trains the prior and fits the
    ensemble; to compare planner settings on one trained model, use ``model.configure_planner(...)``.

    :param trial: Optuna trial.
    :param n_actions: Action dimension (unused).
    :param n_envs: Number of environments (unused).
    :param additional_args: rl-zoo3's extra sampler arguments (unused).
    :return: OfflineLOOP constructor keyword arguments.
    """
    return {
        "noise_std": trial.suggest_float("noise_std", 0.01, 0.8, log=True),
        "beta_pessimism": trial.suggest_float("beta_pessimism", 0.0, 5.0),
        "kappa": trial.suggest_float("kappa", 0.01, 10.0, log=True),
        "horizon": trial.suggest_int("horizon", 2, 10),
    }


def convert_sampled_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """Trial parameters -> constructor arguments (ours are sampled under their own names)."""
    return dict(sampled_params)


# ------------------------------------------------------------------------------------- running
def _run_plots(script: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--figure-dir", default=None)
    options, rest = parser.parse_known_args(argv)
    if options.figure_dir is not None and "MPLBACKEND" not in os.environ:
        import matplotlib

        matplotlib.use("Agg")
    import rl_zoo3.plots as zoo_plots

    sys.argv = [f"sb3_loop {script}", *rest]
    getattr(zoo_plots, script)()
    if options.figure_dir is not None:
        save_open_figures(options.figure_dir, prefix=script)


def save_open_figures(directory: str | os.PathLike, prefix: str) -> list[Path]:
    """Save every open matplotlib figure as ``<directory>/<prefix>_<figure label>.png``."""
    from matplotlib import pyplot as plt

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    for number in plt.get_fignums():
        figure = plt.figure(number)
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", figure.get_label() or str(number)).strip("_")
        path = out / f"{prefix}_{label or number}.png"
        figure.savefig(path, dpi=100, bbox_inches="tight")
        saved.append(path)
        print(f"Saved figure {path}")
    return saved


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m sb3_loop``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        raise SystemExit(f"unknown command {command!r}\n{USAGE}")

    if command == "plots":
        script = rest.pop(0) if rest and rest[0] in PLOT_SCRIPTS else "all_plots"
        _run_plots(script, rest)
    elif command in PLOT_SCRIPTS:
        _run_plots(command, rest)
    elif command == "train":
        _train(rest)
    elif command in ("collect", "behaviour"):
        from sb3_loop.datasets import cli

        (cli.main_collect if command == "collect" else cli.main_behaviour)(rest)
    elif command == "enjoy":
        register_algorithms(for_inference=True)
        import rl_zoo3.enjoy

        sys.argv = ["sb3_loop enjoy", *rest]
        rl_zoo3.enjoy.enjoy()
    else:  # record_video: the zoo's script runs under ``if __name__ == "__main__"``
        register_algorithms(for_inference=True)
        sys.argv = ["sb3_loop record_video", *rest]
        runpy.run_module("rl_zoo3.record_video", run_name="__main__", alter_sys=True)
