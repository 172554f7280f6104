"""Ablations of LOOP's claims: which planner, which horizon, which propagation. One command per table.

Usage (defaults: HalfCheetah-v5, seeds 0 1, 20k steps, an evaluation of 3 episodes every 5k steps):
  python benchmarks/ablations.py planners-train    # LOOP trained with ARC vs CEM vs MPPI
  python benchmarks/ablations.py planners          # at evaluation: every planner + the actor alone on the
                                                   # same trained models (default: the ARC runs' final models)
  python benchmarks/ablations.py planners --models path/to/a.zip path/to/b.zip --env Hopper-v5
  python benchmarks/ablations.py horizon           # LOOP trained with H in {1, 3, 5}; H in {1, 2, 3, 5, 10}
                                                   # at evaluation on the ARC runs' final models
  python benchmarks/ablations.py propagation       # LOOP trained with propagation "paper" vs the default
                                                   # "random_elite", on HalfCheetah-v5 and Hopper-v5
  python benchmarks/ablations.py <table> --report-only   # rebuild the report from what exists

Reports: ``benchmarks/results/ablation_planners.md`` (both planner commands), ``ablation_horizon.md``,
``ablation_propagation.md``, each with a PNG (``--env`` other than HalfCheetah-v5: ``ablation_planners_<env>.md``
and ``ablation_horizon_<env>.md``); every table states its command, seeds, episodes and what was
not run (missing runs and evaluations are listed as such).

Training runs are ``benchmarks/compare.py`` runs (its ``RunSpec`` / ``run_one``: checkpoints, resume and
committed records come with them), one family of runs per configuration, each in its own folders:
``--runs-dir benchmarks/runs_<family> --results-dir benchmarks/results/<family>``, LOOP's configuration
passed to the zoo as ``-params`` (e.g. family ``planner_cem``: ``-params 'planner:"cem"'``; the zoo evaluates
each value as Python, so a string needs its own quotes). LOOP's defaults (ARC, H=3, random_elite) are
the family ``refit_best_epoch``: the runs of the refit comparison (``-params dynamics_refit_selection:'best_epoch'``,
the default), which are also the comparison's LOOP records; they are the ARC row of the planner table,
the H=3 row of the horizon table and the random_elite rows of the propagation table, so those tables
train nothing for them where they exist. Each run can also be made by hand (e.g. in parallel):
the equivalent ``compare.py --only ...`` command of every family is printed in its report. Repeating a
command skips finished runs and continues unfinished ones from their checkpoints.

Evaluations at a fixed model (``planners``, the evaluation half of ``horizon``) load the model afresh for
each variant, switch it with ``configure_planner`` (or ``actor_only``) and run deterministic episodes
from the env seeds ``--seed``, ``--seed + 1``, ...: every variant starts from the same states. Each
(model, variant) leaves a JSON record under ``benchmarks/results/ablations/<table>/`` and is skipped when
its record exists with the same env, episodes, variant settings and model file (its SHA-256); ms per
action is the wall-clock of ``model.predict`` per step (one torch thread). A model saved before LOOP saved
its ``planning_seed`` plans with its training seed (else every load would draw another planning seed).
Only finished runs made with the asked budget, evaluations and ``-params`` count, in the training tables
and as default models.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import json
import re
import shlex
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import compare
import numpy as np

BENCHMARKS_DIR = Path(__file__).resolve().parent
TABLES = ("planners", "planners-train", "horizon", "propagation")


# ------------------------------------------------------------------------------------- training runs
@dataclass(frozen=True)
class Family:
    """
    One training configuration of LOOP and the folders of its runs.

    :param name: Folder suffix: runs in ``<runs-root>/runs_<name>``, records in ``<results-root>/<name>``.
    :param params: The zoo ``-params`` entries that make the configuration (Python literals as values).
    :param label: Its name in the tables.
    """

    name: str
    params: tuple[str, ...]
    label: str

    def runs_dir(self, root: Path) -> Path:
        return root / f"runs_{self.name}"

    def results_dir(self, root: Path) -> Path:
        return root / self.name


DEFAULT_FAMILY = Family("refit_best_epoch", ("dynamics_refit_selection:'best_epoch'",), "ARC (LOOP's defaults)")
PLANNER_FAMILIES = [DEFAULT_FAMILY, *(Family(f"planner_{p}", (f'planner:"{p}"',), p.upper()) for p in ("cem", "mppi"))]
HORIZON_FAMILIES = [
    Family("horizon_1", ("horizon:1",), "H=1"),
    Family(DEFAULT_FAMILY.name, DEFAULT_FAMILY.params, "H=3 (default)"),
    Family("horizon_5", ("horizon:5",), "H=5"),
]
PROPAGATION_FAMILIES = [
    Family(DEFAULT_FAMILY.name, DEFAULT_FAMILY.params, "random_elite (default)"),
    Family("propagation_paper", ('propagation:"paper"',), "paper"),
]


def run_spec(family: Family, env: str, seed: int, args: argparse.Namespace) -> compare.RunSpec:
    """The compare.py run of ``family`` on ``env`` with ``seed`` (``--params`` appended to its ``-params``)."""
    extra = ("-params", *family.params, *args.params)
    return compare.RunSpec(env, "loop", seed, args.steps, args.eval_freq, args.eval_episodes, extra, args.eval_freq)


def compare_command(family: Family, env: str, seed: int, args: argparse.Namespace) -> str:
    """The ``benchmarks/compare.py --only`` command that makes the same run by hand."""
    extra = "loop=" + shlex.join(["-params", *family.params, *args.params])
    return shlex.join([
        "python", "benchmarks/compare.py", "--only", env, "loop", str(seed), "--steps", f"loop={args.steps}",
        "--eval-freq", str(args.eval_freq), "--eval-episodes", str(args.eval_episodes),
        "--runs-dir", compare.portable_path(family.runs_dir(args.runs_root)),
        "--results-dir", compare.portable_path(family.results_dir(args.results_root)),
    ]) + " --extra " + _double_quoted(extra)  # fmt: skip


def train(families: Sequence[Family], envs: Sequence[str], args: argparse.Namespace) -> list[str]:
    """Make (or continue) every run of ``families`` x ``envs`` x seeds; returns their statuses."""
    jobs = [(family, env, seed) for env in envs for family in _unique(families) for seed in args.seeds]

    def one(job: tuple[Family, str, int]) -> str:
        family, env, seed = job
        spec = run_spec(family, env, seed, args)
        return compare.run_one(spec, family.runs_dir(args.runs_root), family.results_dir(args.results_root))

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        return list(pool.map(one, jobs))


def family_runs(family: Family, env: str, args: argparse.Namespace) -> dict[int, compare.RunResult]:
    """The runs of ``family`` on ``env`` by seed (run folders and committed records) made as asked (:func:`matches`)."""
    return {seed: run for seed, run in _all_family_runs(family, env, args).items() if matches(run, family, env, args)}


def _all_family_runs(family: Family, env: str, args: argparse.Namespace) -> dict[int, compare.RunResult]:
    runs = compare.load_runs(family.runs_dir(args.runs_root), env, ["loop"], family.results_dir(args.results_root))
    return {run.seed: run for run in runs.get("loop", [])}


def matches(run: compare.RunResult, family: Family, env: str, args: argparse.Namespace) -> bool:
    """Whether ``run`` was made with the asked budget, evaluations and zoo arguments (``-params``)."""
    spec = run_spec(family, env, run.seed, args)
    command, extra = list(run.command or []), list(spec.extra)
    same_budget = (run.steps, run.eval_freq, run.eval_episodes) == (spec.steps, spec.eval_freq, spec.eval_episodes)
    return same_budget and len(command) >= len(extra) and command[len(command) - len(extra) :] == extra


def _unique(families: Iterable[Family]) -> list[Family]:
    return list({family.name: family for family in families}.values())


# ---------------------------------------------------------------------------- evaluations at a fixed model
@dataclass(frozen=True)
class Variant:
    """
    How a trained model acts in an evaluation.

    :param name: Its name in the tables and records.
    :param settings: ``configure_planner`` arguments; ``None``: the actor alone.
    """

    name: str
    settings: dict[str, Any] | None = field(default=None, hash=False)


DEFAULT_ENV = "HalfCheetah-v5"
PLANNER_VARIANTS = [
    Variant("arc", {"planner": "arc"}),
    Variant("arc_no_actor", {"planner": "arc", "mixture_coef": 0.0}),
    Variant("cem", {"planner": "cem"}),
    Variant("mppi", {"planner": "mppi"}),
    Variant("shooting", {"planner": "shooting"}),
    Variant("actor"),
]
EVAL_HORIZONS = (1, 2, 3, 5, 10)
HORIZON_VARIANTS = [Variant(f"H={h}", {"planner": "arc", "horizon": h}) for h in EVAL_HORIZONS]


def record_dir(args: argparse.Namespace, table: str, model: Path) -> Path:
    return args.results_root / "ablations" / table / re.sub(r"[^A-Za-z0-9_.=-]+", "_", compare.portable_path(model))


def load_model(model_path: Path) -> Any:
    """
    A saved LOOP model on the CPU. A model saved before LOOP saved its ``planning_seed`` plans with its
    training seed: otherwise each load draws another planning seed, and the variants (and a rerun) would
    plan with other random numbers.
    """
    from sb3_loop import LOOP

    data = compare.read_saved_data(model_path)
    missing_seed = data is not None and "planning_seed" not in data
    return LOOP.load(model_path, device="cpu", **({"planning_seed": int(data.get("seed") or 0)} if missing_seed else {}))


def evaluate_variant(model_path: Path, variant: Variant, args: argparse.Namespace) -> dict[str, Any]:
    """Deterministic episodes of one variant of a saved LOOP model from the env seeds ``seed, seed + 1, ...``."""
    import gymnasium as gym
    import torch

    torch.set_num_threads(1)
    model = load_model(model_path)
    trained_with = {"planner": model.planner_name, **model.arc_kwargs}
    if variant.settings is not None:
        model.configure_planner(**variant.settings)
    planner = model.policy.planner
    env = gym.make(args.env, **({"max_episode_steps": args.max_steps} if args.max_steps else {}))
    returns, lengths, seconds = [], [], 0.0
    model.policy.pop_planning_stats()
    with model.actor_only() if variant.settings is None else contextlib.nullcontext():
        for episode in range(args.episodes):
            total, length, seconds = _episode(model, env, args.seed + episode, seconds)
            returns.append(total)
            lengths.append(length)
    stats = model.policy.pop_planning_stats()
    return {
        "model": compare.portable_path(model_path), "model_sha256": _sha256(model_path), "model_steps": model.num_timesteps,
        "trained_with": trained_with, "planning_seed": model.policy.planning_seed, "env": args.env,
        "variant": variant.name, "settings": variant.settings,
        "planner": None if variant.settings is None else type(planner).__name__,
        "planner_config": None if variant.settings is None else dict(vars(planner.config)),
        "episodes": args.episodes, "seed": args.seed, "max_steps": args.max_steps, "returns": returns,
        "lengths": lengths, "ms_per_action": 1e3 * seconds / max(1, sum(lengths)),
        "actor_divergence": None if stats is None else stats["actor_divergence"],
        "fallbacks": model.policy.num_fallbacks, "recorded": _now(),
    }  # fmt: skip


def _episode(model: Any, env: Any, seed: int, seconds: float) -> tuple[float, int, float]:
    """One deterministic episode; returns its return, length and ``seconds`` plus the time spent in predict."""
    obs, _ = env.reset(seed=seed)
    total, length, done = 0.0, 0, False
    while not done:
        start = time.perf_counter()
        action, _ = model.predict(obs, episode_start=np.array([length == 0]), deterministic=True)
        seconds += time.perf_counter() - start
        obs, reward, terminated, truncated, _ = env.step(action)
        total, length, done = total + float(reward), length + 1, terminated or truncated
    return total, length, seconds


def evaluate(table: str, models: Sequence[Path], variants: Sequence[Variant], args: argparse.Namespace) -> None:
    """Evaluate every (model, variant) without a reusable record (:func:`_reusable`)."""
    for model in models:
        directory, digest = record_dir(args, table, model), _sha256(model)
        for variant in variants:
            path = directory / f"{_slug(variant.name)}.json"
            stored = _read_json(path)
            if stored is not None and _reusable(stored, variant, digest, args):
                print(f"[skip] {table} {compare.portable_path(model)} {variant.name}: recorded", flush=True)
                continue
            print(f"[eval] {table} {compare.portable_path(model)} {variant.name}", flush=True)
            record = {**evaluate_variant(model, variant, args), "command": args.command}
            directory.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record, indent=2) + "\n")
            print(f"[done] {variant.name}: return {np.mean(record['returns']):.1f}, "
                  f"{record['ms_per_action']:.1f} ms per action", flush=True)  # fmt: skip


def eval_records(table: str, models: Sequence[Path], variants: Sequence[Variant], args: argparse.Namespace) -> dict:
    """The stored records by (model, variant name), those made as asked only (:func:`_reusable`)."""
    found = {}
    for model in models:
        digest = _sha256(model)
        for variant in variants:
            stored = _read_json(record_dir(args, table, model) / f"{_slug(variant.name)}.json")
            if stored is not None and _reusable(stored, variant, digest, args):
                found[(model, variant.name)] = stored
    return found


def report_models(table: str, args: argparse.Namespace) -> list[Path]:
    """
    The models of a report: :func:`default_models`, else (the model files are not kept between machines) the
    models that the stored records of ``table`` on ``--env`` name, so ``--report-only`` rebuilds the table.
    """
    models = default_models(args)
    if models or args.models:
        return models
    named = {
        stored["model"]
        for path in sorted((args.results_root / "ablations" / table).glob("*/*.json"))
        if (stored := _read_json(path)) is not None and stored.get("env") == args.env and "model" in stored
    }
    return [(compare.REPOSITORY / model).resolve() for model in sorted(named)]


def default_models(args: argparse.Namespace) -> list[Path]:
    """``--models``, else the final models of the default family's runs on ``--env`` finished as asked (:func:`matches`)."""
    if args.models:
        return [Path(model).resolve() for model in args.models]
    runs_dir = DEFAULT_FAMILY.runs_dir(args.runs_root)
    found = []
    for seed in args.seeds:
        directory = compare.run_directory(runs_dir, args.env, "loop", seed)
        run = compare.read_run_directory(directory, args.env, "loop") if directory.is_dir() else None
        model = compare.saved_model_path(directory, "loop", args.env) if run is not None and run.done else None
        if model is not None and matches(run, DEFAULT_FAMILY, args.env, args):
            found.append(model.resolve())
        elif model is not None:
            print(
                f"[eval] {compare.portable_path(directory)}: made with other steps, evaluations or -params; not used",
                flush=True,
            )
    return found


def _reusable(record: dict, variant: Variant, digest: str | None, args: argparse.Namespace) -> bool:
    """Whether a stored record is the asked evaluation of ``variant`` on the model file with SHA-256 ``digest``."""
    asked = (args.env, args.episodes, args.seed, args.max_steps, variant.settings)
    stored = tuple(record.get(key) for key in ("env", "episodes", "seed", "max_steps", "settings"))
    return stored == asked and (digest is None or record.get("model_sha256") == digest)


# ----------------------------------------------------------------------------------------------- tables
def eval_table(records: dict, models: Sequence[Path], variants: Sequence[Variant], reference: str) -> list[str]:
    """
    Return per model and over models (with their count), ms per action and its ratio to ``reference`` (on
    the models that have both), actor divergence and the actor fallbacks of non-finite plans.
    """
    names = [f"model {i + 1}" for i in range(len(models))]
    lines = ["| variant | " + " | ".join(f"{n} return" for n in names)
             + " | mean over models | ms per action | ratio to " + reference + " | actor divergence | fallbacks |",
             "|---|" + "---|" * (len(models) + 5)]  # fmt: skip
    for variant in variants:
        found = [records.get((model, variant.name)) for model in models]
        cells = [f"{np.mean(r['returns']):.1f} ± {np.std(r['returns']):.1f}" if r else "not run" for r in found]
        done = [r for r in found if r]
        means = [float(np.mean(r["returns"])) for r in done]
        ms = _mean([r["ms_per_action"] for r in done])
        paired = [(r, records[(m, reference)]) for m, r in zip(models, found) if r and (m, reference) in records]
        reference_ms = _mean([b["ms_per_action"] for _, b in paired])
        ratio = f"{_mean([a['ms_per_action'] for a, _ in paired]) / reference_ms:.2f}" if reference_ms else "-"
        divergence = _mean([r["actor_divergence"] for r in done if r.get("actor_divergence") is not None])
        fallbacks = sum(int(r.get("fallbacks") or 0) for r in done) if done else None
        lines.append(
            f"| {variant.name} | " + " | ".join(cells) + f" | {_fmt(means)} ({len(means)}) | {_num(ms)} | {ratio} | "
            f"{_num(divergence, 3)} | {_num(fallbacks, 0)} |"
        )
    lines += ["", "Models: " + ("; ".join(f"{n} = {_model_label(m, records, variants)}" for n, m in zip(names, models))
                                or "none found.")]  # fmt: skip
    missing = [f"{compare.portable_path(m)} {v.name}" for m in models for v in variants if (m, v.name) not in records]
    lines.append("Not run: " + ("; ".join(missing) if missing else "nothing."))
    return lines


def _model_label(model: Path, records: dict, variants: Sequence[Variant]) -> str:
    """A model's path with its training steps and trained planner settings (from its records)."""
    stored = next((records[(model, v.name)] for v in variants if (model, v.name) in records), None)
    if stored is None or "trained_with" not in stored:
        return f"`{compare.portable_path(model)}`"
    trained = stored["trained_with"]
    settings = f"{trained.get('planner')}, H={trained.get('horizon')}, {trained.get('propagation')}"
    seed = stored.get("planning_seed")
    return (
        f"`{compare.portable_path(model)}` ({stored.get('model_steps')} steps; trained with {settings}; planning seed {seed})"
    )


def training_table(families: Sequence[Family], env: str, args: argparse.Namespace) -> list[str]:
    """
    Evaluation return at each evaluation step (mean ± std over seeds), the planner's actor divergence and
    ms per action in training (:func:`_training_mean`) and wall-clock, per family.
    """
    checkpoints = list(range(args.eval_freq, args.steps + 1, args.eval_freq))
    lines = ["| configuration | seeds finished | " + " | ".join(f"{c} steps" for c in checkpoints)
             + " | actor divergence in training | ms per action in training | wall-clock per run [s] |",
             "|---|---|" + "---|" * (len(checkpoints) + 3)]  # fmt: skip
    missing = []
    for family in families:
        runs, found = family_runs(family, env, args), _all_family_runs(family, env, args)
        missing += [f"{family.label} seed {s}" + _missing_note(runs.get(s), found.get(s))
                    for s in args.seeds if s not in runs or not runs[s].done]  # fmt: skip
        cells = []
        for checkpoint in checkpoints:
            values = [v for v in (compare.value_at(runs[s], checkpoint) for s in args.seeds if s in runs) if v is not None]
            cells.append(f"{_fmt(values)} ({len(values)})" if values else "-")
        clocks = [runs[s].wall_clock_s for s in args.seeds if s in runs and runs[s].wall_clock_s is not None]
        for key, digits in (("actor_divergence", 2), ("ms_per_action", 1)):
            values = [v for v in (_training_mean(runs[s], key) for s in args.seeds if s in runs) if v is not None]
            cells.append(f"{_fmt(values, digits)} ({len(values)})" if values else "-")
        finished = ", ".join(str(s) for s in args.seeds if s in runs and runs[s].done) or "-"
        lines.append(f"| {family.label} | {finished} | " + " | ".join(cells) + f" | {_fmt(clocks, 0)} |")
    lines += ["", "Not run or unfinished: " + ("; ".join(missing) if missing else "nothing.")]
    lines += ["", "Runs (each also by hand):", ""]
    lines += [f"- {family.label}: `{compare_command(family, env, args.seeds[0], args)}` (and the other seeds)"
              for family in _unique(families)]  # fmt: skip
    return lines


def _training_mean(run: compare.RunResult, key: str) -> float | None:
    """The mean of a ``planner/<key>`` value over a run's log dumps (``planner_log``; ``None`` if not logged)."""
    return _mean([float(d[key]) for d in run.planner_log or [] if d.get(key) is not None])


def _missing_note(run: compare.RunResult | None, found: compare.RunResult | None) -> str:
    if run is not None:
        return f" (at {run.last_step} steps)"
    return "" if found is None else " (its run was made with other steps, evaluations or -params: not shown)"


def training_header(args: argparse.Namespace) -> list[str]:
    return [f"Seeds {', '.join(map(str, args.seeds))}; {args.steps} env steps; evaluation every {args.eval_freq} "
            f"steps, {args.eval_episodes} deterministic episodes (the zoo's EvalCallback), return = mean over them; "
            "cells: mean ± std over seeds (population std) and (seeds). Actor divergence (mean |a_plan - a_actor|^2, "
            "squashed actions) and ms per action in training: a run's mean of `planner/actor_divergence` and "
            "`planner/ms_per_action` over the log dumps in its `train.log` (SB3 prints 3 significant digits); "
            "'-' for runs whose log did not survive.", ""]  # fmt: skip


def eval_header(args: argparse.Namespace) -> list[str]:
    cap = f", at most {args.max_steps} steps each" if args.max_steps else ""
    return [f"Env {args.env}; {args.episodes} deterministic episodes per model and variant{cap}, from the env seeds "
            f"{args.seed}..{args.seed + args.episodes - 1} (the same start states for every variant); each variant "
            "loads the model afresh (same ensemble, critic, actor and planning seed); return: mean ± std over "
            "episodes, mean over models: mean ± std of the models' means (models); ms per action: `model.predict` "
            "wall-clock per step, one torch thread (a planner's includes one actor call for the divergence); actor "
            "divergence: mean |a_plan - a_actor|^2 (squashed actions) over the planned steps; fallbacks: planned "
            "actions replaced by the actor's because the plan went non-finite.", ""]  # fmt: skip


# ---------------------------------------------------------------------------------------------- reports
def report_planners(args: argparse.Namespace) -> Path:
    models = report_models("planners", args)
    records = eval_records("planners", models, PLANNER_VARIANTS, args)
    lines = ["# Ablation: the planner", "", f"Generated by `benchmarks/ablations.py` on {_now()}.", "",
             "## At evaluation: one trained model, each planner", "",
             f"Command: `{_stored_command(records.values(), args, 'planners')}`", "", *eval_header(args),
             "arc_no_actor = ARC with `mixture_coef=0`; cem, mppi, shooting use the model's horizon, population, "
             "particles, iterations and propagation (the same model compute as ARC) and their own constants "
             "(sb3_loop/planning); actor = the SAC actor alone.", "",
             *eval_table(records, models, PLANNER_VARIANTS, "arc"), "",
             "## In training: LOOP trained with each planner", "",
             f"Command: `python benchmarks/ablations.py planners-train {_training_arguments(args)}`", "",
             *training_header(args), *training_table(PLANNER_FAMILIES, args.env, args)]  # fmt: skip
    return _write_report(args, "planners", lines, _plot_planners(args, models, records))


def report_horizon(args: argparse.Namespace) -> Path:
    models = report_models("horizon", args)
    records = eval_records("horizon", models, HORIZON_VARIANTS, args)
    lines = ["# Ablation: the planning horizon", "", f"Generated by `benchmarks/ablations.py` on {_now()}.", "",
             "## At evaluation: ARC with H steps on one trained model (trained with H=3 unless `--models`)", "",
             f"Command: `{_stored_command(records.values(), args, 'horizon')}`", "", *eval_header(args),
             "H counts the planned actions: a sequence scores r_0 + ... + r_{H-2} predicted by the ensemble plus the "
             "critic's Q(s_{H-1}, a_{H-1}), so H=1 uses no model step: ARC then maximises the critic's Q(s, a) over "
             "the first action, the actor's action among the candidates (the actor/critic plus one planning step). "
             "Everything else (population, particles, iterations, mixture) is the model's.", "",
             *eval_table(records, models, HORIZON_VARIANTS, "H=3"), "",
             "## In training: LOOP trained with H steps", "",
             f"Command: `python benchmarks/ablations.py horizon {_training_arguments(args)}`", "",
             *training_header(args), *training_table(HORIZON_FAMILIES, args.env, args)]  # fmt: skip
    return _write_report(args, "horizon", lines, _plot_horizon(args, models, records))


def report_propagation(args: argparse.Namespace) -> Path:
    lines = ["# Ablation: the propagation of particles", "", f"Generated by `benchmarks/ablations.py` on {_now()}.",
             "", f"Command: `python benchmarks/ablations.py propagation {_training_arguments(args)}`", "",
             "`paper`: every elite member carries every particle (E·P rollouts per sequence); `random_elite` (the "
             "default): each particle follows one random elite for the whole rollout (P rollouts per sequence).", "",
             *training_header(args)]  # fmt: skip
    for env in args.envs:
        lines += [f"## {env}", "", *training_table(PROPAGATION_FAMILIES, env, args), ""]
    return _write_report(args, "propagation", lines, _plot_propagation(args))


def _env_suffix(args: argparse.Namespace) -> str:
    """Reports of one env other than the default carry its name (``ablation_planners_Hopper-v5.md``)."""
    return "" if args.table == "propagation" or args.env == DEFAULT_ENV else f"_{args.env}"


def _write_report(args: argparse.Namespace, name: str, lines: list[str], png: Path) -> Path:
    path = args.results_root / f"ablation_{name}{_env_suffix(args)}.md"
    path.write_text("\n".join([*lines, "", f"![{name}]({png.name})", ""]))
    print(f"[report] {path} {png}", flush=True)
    return path


def _training_arguments(args: argparse.Namespace) -> str:
    parts = ["--seeds", *map(str, args.seeds), "--steps", str(args.steps), "--eval-freq", str(args.eval_freq),
             "--eval-episodes", str(args.eval_episodes)]  # fmt: skip
    parts += ["--envs", *args.envs] if args.table == "propagation" else ["--env", args.env]
    return shlex.join([*parts, *(["--params", *args.params] if args.params else [])])


def _stored_command(records: Iterable[dict], args: argparse.Namespace, table: str) -> str:
    commands = sorted({r["command"] for r in records if r.get("command")})
    return " ; ".join(commands) if commands else f"python benchmarks/ablations.py {table} (no evaluation recorded yet)"


# ------------------------------------------------------------------------------------------------ plots
def _figure(columns: int):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(1, columns, figsize=(6.5 * columns, 4.5), squeeze=False)
    return plt, figure, list(axes[0])


def _curves(axis: Any, families: Sequence[Family], env: str, args: argparse.Namespace) -> None:
    for family in families:
        runs = [r for r in family_runs(family, env, args).values() if len(r.timesteps)]
        if not runs:
            continue
        steps = np.unique(np.concatenate([r.timesteps for r in runs]))
        values = [[float(r.returns[r.timesteps == s][0]) for r in runs if s in r.timesteps] for s in steps]
        mean, std = np.array([np.mean(v) for v in values]), np.array([np.std(v) for v in values])
        (line,) = axis.plot(steps, mean, marker="o", markersize=3, label=f"{family.label} ({len(runs)} seeds)")
        axis.fill_between(steps, mean - std, mean + std, alpha=0.2, color=line.get_color())
    axis.set(title=f"{env}: trained with each configuration", xlabel="env steps", ylabel="evaluation return")
    axis.grid(alpha=0.3)
    if axis.lines:
        axis.legend(fontsize=8)


def _bars(axis: Any, records: dict, models: Sequence[Path], variants: Sequence[Variant], title: str) -> None:
    for index, model in enumerate(models):
        values = [float(np.mean(records[(model, v.name)]["returns"])) if (model, v.name) in records else np.nan
                  for v in variants]  # fmt: skip
        width = 0.8 / max(1, len(models))
        axis.bar(np.arange(len(variants)) + index * width, values, width, label=f"model {index + 1}")
    axis.set_xticks(np.arange(len(variants)) + 0.4 - 0.4 / max(1, len(models)), [v.name for v in variants], fontsize=8)
    axis.set(title=title, ylabel="mean return")
    axis.grid(alpha=0.3, axis="y")
    if models:
        axis.legend(fontsize=8)


def _save(plt: Any, figure: Any, args: argparse.Namespace, name: str) -> Path:
    path = args.results_root / f"ablation_{name}{_env_suffix(args)}.png"
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _plot_planners(args: argparse.Namespace, models: Sequence[Path], records: dict) -> Path:
    plt, figure, (left, right) = _figure(2)
    _bars(left, records, models, PLANNER_VARIANTS, f"{args.env}: at evaluation, same model and start states")
    _curves(right, PLANNER_FAMILIES, args.env, args)
    return _save(plt, figure, args, "planners")


def _plot_horizon(args: argparse.Namespace, models: Sequence[Path], records: dict) -> Path:
    plt, figure, (left, right) = _figure(2)
    for index, model in enumerate(models):
        points = [(h, np.mean(records[(model, v.name)]["returns"])) for h, v in zip(EVAL_HORIZONS, HORIZON_VARIANTS)
                  if (model, v.name) in records]  # fmt: skip
        if points:
            left.plot(*zip(*points), marker="o", label=f"model {index + 1}")
    left.set(title=f"{args.env}: ARC with horizon H at evaluation", xlabel="H", ylabel="mean return", xscale="log")
    left.set_xticks(EVAL_HORIZONS, [str(h) for h in EVAL_HORIZONS])
    left.grid(alpha=0.3)
    if left.lines:
        left.legend(fontsize=8)
    _curves(right, HORIZON_FAMILIES, args.env, args)
    return _save(plt, figure, args, "horizon")


def _plot_propagation(args: argparse.Namespace) -> Path:
    plt, figure, axes = _figure(len(args.envs))
    for axis, env in zip(axes, args.envs):
        _curves(axis, PROPAGATION_FAMILIES, env, args)
    return _save(plt, figure, args, "propagation")


# -------------------------------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", choices=TABLES)
    parser.add_argument("--env", default=DEFAULT_ENV, help="env of planners, planners-train and horizon")
    parser.add_argument("--envs", nargs="+", default=["HalfCheetah-v5", "Hopper-v5"], help="envs of propagation")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="training seeds")
    parser.add_argument("--steps", type=int, default=20_000, help="env steps per training run")
    parser.add_argument("--eval-freq", type=int, default=5000, help="training runs: steps between evaluations")
    parser.add_argument("--eval-episodes", type=int, default=3, help="training runs: episodes per evaluation")
    parser.add_argument("--params", nargs="+", default=[], help="more zoo -params for every training run (KEY:VALUE)")
    parser.add_argument("--jobs", type=int, default=1, help="training runs at the same time")
    parser.add_argument("--models", nargs="+", default=None, help="saved LOOP models (default: the refit_best_epoch runs')")
    parser.add_argument("--episodes", type=int, default=5, help="evaluation at a fixed model: episodes per variant")
    parser.add_argument("--seed", type=int, default=1000, help="env seed of the first evaluation episode")
    parser.add_argument("--max-steps", type=int, default=None, help="cap on evaluation episode length (default: env's)")
    parser.add_argument("--no-train", action="store_true", help="horizon: only the evaluation part")
    parser.add_argument("--no-eval", action="store_true", help="horizon: only the training part")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the report")
    parser.add_argument("--runs-root", type=Path, default=BENCHMARKS_DIR, help="where the runs_<family> folders go")
    parser.add_argument("--results-root", type=Path, default=BENCHMARKS_DIR / "results")
    args = parser.parse_args(argv)
    args.runs_root, args.results_root = args.runs_root.resolve(), args.results_root.resolve()
    args.command = "python benchmarks/ablations.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.results_root.mkdir(parents=True, exist_ok=True)
    status: list[str] = []
    if not args.report_only:
        status = run_table(args)
    {"planners": report_planners, "planners-train": report_planners, "horizon": report_horizon,
     "propagation": report_propagation}[args.table](args)  # fmt: skip
    return 1 if {"failed", "interrupted"} & set(status) else 0


def run_table(args: argparse.Namespace) -> list[str]:
    """Make what the table needs and is missing; returns the training runs' statuses."""
    if args.table == "planners-train":
        return train(PLANNER_FAMILIES, [args.env], args)
    if args.table == "propagation":
        return train(PROPAGATION_FAMILIES, args.envs, args)
    status = train(HORIZON_FAMILIES, [args.env], args) if args.table == "horizon" and not args.no_train else []
    if args.table == "planners" or not args.no_eval:
        models = default_models(args)
        if not models:
            print(f"[eval] no models: pass --models or finish the refit_best_epoch runs on {args.env} first", flush=True)
        variants = PLANNER_VARIANTS if args.table == "planners" else HORIZON_VARIANTS
        evaluate(args.table, models, variants, args)
    return status


# ------------------------------------------------------------------------------------------------ small
def _double_quoted(text: str) -> str:
    """``text`` as one shell word in double quotes (more readable than shlex's nested single quotes)."""
    return '"' + re.sub(r'([\\"$`])', r"\\\1", text) + '"'


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)


def _sha256(path: Path) -> str | None:
    """The SHA-256 of a file (``None`` if it cannot be read, e.g. a model not on this machine)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _fmt(values: Sequence[float], digits: int = 1) -> str:
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}" if len(values) else "-"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


if __name__ == "__main__":
    sys.exit(main())
