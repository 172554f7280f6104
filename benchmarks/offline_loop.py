"""
OfflineLOOP: the offline prior alone vs the offline ARC planning around it, on datasets made here.

Each run trains one OfflineLOOP (CRR prior, the class defaults: the paper's offline settings) on one
dataset for ``--steps`` gradient steps (default 30000, the budget of ``offline_priors.py``), with the
ensemble fitted on the dataset for at most ``--dynamics-max-epochs`` epochs (default 10; early stopping
may end it sooner; 0: no cap), and saves it. The cap is this machine's: on a 1M-transition dataset an epoch
is ~3100 minibatches, 2.5-3.5 minutes on one thread, and an uncapped fit of HalfCheetah-v5-medium was still
improving its holdout error by more than 1% per epoch after 20 epochs (72 minutes). As
in the paper's code, which keeps one dynamics model per dataset, the first run of a dataset fits the
ensemble and the other seeds plan with that fit (``--ensemble-per-seed`` fits one per seed instead).
The same trained prior, critic and ensemble are then evaluated as the prior alone (``actor_only()``) and
as OfflineLOOP (deterministic planner, ``beta_pessimism`` 1; on ``--beta-dataset`` also 0 and 3, and
each ``--noise-sweep`` value of ``noise_std`` with ``beta_pessimism`` 1), on
``--eval-episodes`` episodes from the same start states (env k reset with seed 10000 + k) for every
variant, the planner's episodes one at a time (cheapest per action on one thread); scores are
D4RL-normalised. ``ms_per_action`` is the planner's time for one observation (batch 1, one torch
thread), measured on dataset observations after the evaluation.

The paper swept the action noise per dataset (0.01-0.8) where the class default is its code's 0.01, so
each dataset also gets ``offline_loop_tuned``: ``noise_std`` chosen from 0.01 / 0.1 / 0.2 / 0.4 by the mean
score over ``--tune-episodes`` validation episodes (env k reset with seed 20000 + k: start states the
test episodes never use), on each seed's own trained model (as a user tunes the model they deploy), then
evaluated on the test start states (``results/offline_loop/tuning/DATASET_seedK.json`` keeps the choice).
Until 2026-12-07 the noise was tuned once per dataset on seed 0's model and used for every seed; on
Walker2d-v5-medium seed 0's noise 0.4 halved the stronger priors of seeds 1 and 2, so a tuned record of
another seed's tuning is not reported and is made again (the seed-0 records are unchanged).

With ``--prior-models`` (default ``benchmarks/runs_offline_priors``) holding the CRR that
``benchmarks/offline_priors.py`` trained on the same dataset with the same seed and ``--steps``, that
CRR is the prior and critic and only the ensemble is fitted, so the two benchmarks share their priors.

Every trained model (``--models-dir``) and every evaluation (a JSON record under
``results/offline_loop/runs/``) is kept, and finished ones are skipped when the command is repeated, so
the benchmark continues across sittings (commit the records with ``git add -f``: ``runs/`` is ignored);
``--report-only`` rebuilds ``results/offline_loop.md`` + PNG.

``--lookahead`` measures ``sb3_loop.lookahead`` instead: saved SAC / TD3 models with their replay
buffers (``--sac MODEL.zip BUFFER.pkl``, ``--td3 ...``), each evaluated alone and with the lookahead
(ensemble fitted on its replay buffer), from the same start states.

    python -m sb3_loop behaviour Hopper-v5 --level medium && python -m sb3_loop collect Hopper-v5 --kind medium
    python -m sb3_loop collect Hopper-v5 --kind medium-replay
    python benchmarks/offline_loop.py --datasets Hopper-v5-medium Hopper-v5-medium-replay --seeds 0 1 2
    python benchmarks/offline_loop.py --lookahead --env Hopper-v5 \\
        --sac logs/sac/Hopper-v5_1/Hopper-v5.zip logs/sac/Hopper-v5_1/replay_buffer.pkl
    python benchmarks/offline_loop.py --report-only
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from compare import portable_path

from sb3_loop import OfflineLOOP, lookahead
from sb3_loop.datasets import OfflineDataset, load_dataset, normalized_score
from sb3_loop.datasets.registry import parse_dataset_name

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
MODELS_DIR = HERE / "runs_offline_loop"
PRIOR_MODELS_DIR = HERE / "runs_offline_priors"
ENVS = ("Hopper-v5", "HalfCheetah-v5", "Walker2d-v5")
DEFAULT_DATASETS = [f"{env}-{kind}" for env in ENVS for kind in ("medium", "medium-replay")]
BETA_SWEEP = (0.0, 1.0, 3.0)
EVAL_SEED = 10_000
TUNE_SEED = 20_000
TUNE_NOISES = (0.01, 0.1, 0.2, 0.4)
TUNED = "offline_loop_tuned"
TIMING_OBSERVATIONS = 50

#: ``predict(observations [B, obs_dim], episode_start [B]) -> actions [B, act_dim]``.
Predict = Callable[[np.ndarray, np.ndarray], np.ndarray]


# ------------------------------------------------------------------------------- evaluation
def evaluate(
    predict: Predict, env_id: str, episodes: int, batch: int | None = None, first_seed: int = EVAL_SEED
) -> np.ndarray:
    """
    Undiscounted returns of ``episodes`` episodes, env k reset with seed ``first_seed`` + k, stepped ``batch``
    at a time (default: all together). On one CPU thread the offline planner is cheapest per action one
    observation at a time (its batched rollouts outgrow the caches), so the planner variants use batch 1.
    """
    batch = episodes if batch is None else batch
    seeds = [first_seed + k for k in range(episodes)]
    return np.concatenate([_evaluate_together(predict, env_id, seeds[i : i + batch]) for i in range(0, episodes, batch)])


def _evaluate_together(predict: Predict, env_id: str, seeds: list[int]) -> np.ndarray:
    """
    Returns of one episode per seed, stepped together. The batch keeps its size (finished envs' actions
    are discarded), so each env keeps its row of the planner's warm start from its first step to its last.
    """
    envs = [gym.make(env_id) for _ in seeds]
    observations = np.stack([env.reset(seed=seed)[0] for env, seed in zip(envs, seeds)]).astype(np.float32)
    returns = np.zeros(len(seeds))
    running = np.ones(len(seeds), dtype=bool)
    starts = np.ones(len(seeds), dtype=bool)
    while running.any():
        actions = predict(observations, starts)
        starts[:] = False
        for k in np.flatnonzero(running):
            observation, reward, terminated, truncated, _ = envs[k].step(actions[k])
            returns[k] += reward
            observations[k] = observation
            running[k] = not (terminated or truncated)
    return returns


def model_predict(model: Any) -> Predict:
    def predict(observations: np.ndarray, starts: np.ndarray) -> np.ndarray:
        return model.predict(observations, episode_start=starts, deterministic=True)[0]

    return predict


def ms_per_action(model: Any, observations: np.ndarray) -> float:
    """Milliseconds of one deterministic ``predict`` of one observation (after two warm-up calls)."""
    for observation in observations[:2]:
        model.predict(observation[None], deterministic=True)
    start = time.perf_counter()
    for observation in observations:
        model.predict(observation[None], deterministic=True)
    return 1e3 * (time.perf_counter() - start) / len(observations)


# ------------------------------------------------------------------------------ OfflineLOOP
def variants(dataset_name: str, beta_dataset: str, noise_sweep: Sequence[float] = (), tuned: bool = False) -> list[str]:
    """
    The prior, OfflineLOOP with beta_pessimism 1, with ``tuned`` OfflineLOOP with the noise tuned on
    validation start states, and on ``beta_dataset`` the beta and noise sweeps.
    """
    basic = ["prior", "offline_loop_beta1", *([TUNED] if tuned else [])]
    if dataset_name != beta_dataset:
        return basic
    sweep = [f"offline_loop_beta{beta:g}" for beta in BETA_SWEEP if beta != 1.0]
    return [*basic, *sweep, *(f"offline_loop_beta1_noise{noise:g}" for noise in noise_sweep)]


def variant_settings(variant: str, default_noise: float) -> dict[str, float]:
    """``configure_planner`` arguments of a planner variant, e.g. ``offline_loop_beta1_noise0.2``."""
    beta, _, noise = variant.removeprefix("offline_loop_beta").partition("_noise")
    return {"beta_pessimism": float(beta), "noise_std": float(noise) if noise else default_noise}


def noise_variant(noise: float, default_noise: float) -> str:
    """The name of the ``beta_pessimism`` 1 variant planning with ``noise``."""
    return "offline_loop_beta1" if noise == default_noise else f"offline_loop_beta1_noise{noise:g}"


def tune_noise(model: OfflineLOOP, dataset_name: str, env_id: str, seed: int, episodes: int, path: Path) -> dict[str, Any]:
    """
    The ``noise_std`` tuned on this seed's model: the value of :data:`TUNE_NOISES` (the paper swept 0.01-0.8)
    with the best mean return over ``episodes`` validation episodes (env k reset with seed 20000 + k, start
    states the test evaluation never uses), ``beta_pessimism`` 1; kept in ``path`` (one file per dataset and
    seed) and reused when the command is repeated.
    """
    stored = json.loads(path.read_text()) if path.is_file() else None
    if stored is not None and stored.get("tuned_on_seed") == seed:
        return stored
    validation = {}
    for noise in TUNE_NOISES:
        model.configure_planner(beta_pessimism=1.0, noise_std=noise)
        returns = evaluate(model_predict(model), env_id, episodes, batch=1, first_seed=TUNE_SEED)
        validation[f"{noise:g}"] = float(normalized_score(env_id, returns).mean())
        print(f"[{dataset_name} seed{seed} tuning] noise {noise:g}: validation score {validation[f'{noise:g}']:.1f}")
    chosen = max(TUNE_NOISES, key=lambda noise: validation[f"{noise:g}"])
    tuning = {"noise_std": chosen, "validation_scores": validation, "tuned_on_seed": seed,
              "validation_episodes": episodes, "validation_first_seed": TUNE_SEED}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tuning, indent=1) + "\n")
    return tuning


def train(
    dataset: OfflineDataset,
    dataset_name: str,
    seed: int,
    steps: int,
    models_dir: Path,
    settings: dict[str, Any],
    prior_models: Path | None = None,
    share_ensemble: bool = True,
) -> tuple[OfflineLOOP, dict]:
    """
    The trained model of a run: loaded when saved before, else trained and saved (with its record).

    When ``prior_models`` holds the CRR that ``benchmarks/offline_priors.py`` trained on this dataset with
    this seed and ``steps`` gradient steps, that CRR is the prior (and critic). With ``share_ensemble``
    the ensemble is fitted once per dataset (by its first run) and the other seeds plan with that fit, as
    the paper's code does (one saved dynamics model per dataset).
    """
    env_id = _env_id(dataset_name)
    path = model_path(models_dir, dataset_name, seed)
    info_path = path.with_suffix(".json")
    if path.is_file() and info_path.is_file():
        info = json.loads(info_path.read_text())
        if info["steps"] != steps or info["settings"] != _as_json(settings):
            raise SystemExit(f"{path} was trained with other --steps or settings: delete it or keep them")
        return OfflineLOOP.load(path, device="cpu"), info
    model = OfflineLOOP("MlpPolicy", env_id, dataset, seed=seed, device="cpu", verbose=1, **settings)
    ensemble_path = models_dir / dataset_name / "ensemble.pt"
    start = time.perf_counter()
    ensemble_info = load_shared_ensemble(model, ensemble_path, settings) if share_ensemble else None
    prior_path = None if prior_models is None else prior_models / dataset_name / f"ours-crr_seed{seed}.zip"
    if prior_path is not None and prior_path.is_file():
        use_trained_prior(model, prior_path, steps)
    else:
        prior_path = None
        model.learn(steps, log_interval=None)  # fits the ensemble first unless it was loaded
    if not model.policy.dynamics.is_trained:
        model.train_dynamics()
    if ensemble_info is None:
        ensemble_info = {"fitted_by_seed": seed, "settings": settings, "fit": model.dynamics_log[0]}
        if share_ensemble:
            ensemble_path.parent.mkdir(parents=True, exist_ok=True)
            th.save(model.policy.dynamics.state_dict(), ensemble_path)
            ensemble_path.with_suffix(".json").write_text(json.dumps(ensemble_info, indent=1) + "\n")
    info = {"steps": steps, "settings": settings, "train_seconds": time.perf_counter() - start,
            "prior_from": None if prior_path is None else str(prior_path.relative_to(prior_models)),
            "ensemble": ensemble_info, "dataset_checksum": dataset.checksum(),
            "dataset_transitions": len(dataset)}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    info_path.write_text(json.dumps(info, indent=1) + "\n")
    print(f"[{dataset_name} seed{seed}] trained in {info['train_seconds']:.0f} s; ensemble {ensemble_info}")
    return model, info


def model_path(models_dir: Path, dataset_name: str, seed: int) -> Path:
    """Where ``train`` saves the OfflineLOOP of one dataset and seed."""
    return models_dir / dataset_name / f"seed{seed}.zip"


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparisons with stored settings."""
    return json.loads(json.dumps(value))


def load_shared_ensemble(model: OfflineLOOP, ensemble_path: Path, settings: dict[str, Any]) -> dict | None:
    """Load the dataset's shared ensemble fit into ``model``; its record, or ``None`` when there is none yet."""
    info_path = ensemble_path.with_suffix(".json")
    if not (ensemble_path.is_file() and info_path.is_file()):
        return None
    info = json.loads(info_path.read_text())
    if info["settings"] != _as_json(settings):
        raise SystemExit(f"{ensemble_path} was fitted with other settings: delete it or keep them")
    model.policy.dynamics.load_state_dict(th.load(ensemble_path, map_location="cpu"))
    return info


def use_trained_prior(model: OfflineLOOP, prior_path: Path, steps: int) -> None:
    """Give ``model`` the actor, critics and optimiser states of a saved CRR trained for ``steps`` gradient steps."""
    from sb3_loop.offline import CRR

    prior = CRR.load(prior_path, device="cpu")
    if prior.num_timesteps != steps:
        raise SystemExit(f"{prior_path} has {prior.num_timesteps} gradient steps, not --steps {steps}")
    model.set_parameters(prior.get_parameters(), exact_match=False, device="cpu")
    model.num_timesteps, model._n_updates = prior.num_timesteps, prior._n_updates


def evaluate_variant(
    model: OfflineLOOP, variant: str, env_id: str, episodes: int, timing: np.ndarray, default_noise: float
) -> dict[str, Any]:
    if variant == "prior":
        with model.actor_only():
            returns = evaluate(model_predict(model), env_id, episodes)
            ms = ms_per_action(model, timing)
    else:
        model.configure_planner(**variant_settings(variant, default_noise))
        returns = evaluate(model_predict(model), env_id, episodes, batch=1)
        ms = ms_per_action(model, timing)
    scores = normalized_score(env_id, returns)
    return {"returns": returns.tolist(), "score_mean": float(scores.mean()), "score_std": float(scores.std()),
            "ms_per_action": ms, "fallbacks": model.policy.num_fallbacks}  # fmt: skip


def run_offline_loop(args: argparse.Namespace) -> None:
    settings = {"dynamics_max_epochs": args.dynamics_max_epochs or None}
    for dataset_name in args.datasets:
        env_id = _env_id(dataset_name)
        for seed in args.seeds:
            todo = [
                v
                for v in variants(dataset_name, args.beta_dataset, args.noise_sweep, args.tune_episodes > 0)
                if not _is_current(_record(args, dataset_name, seed, v))
            ]
            if not todo:
                continue
            check_same_prior(args, dataset_name, seed)
            th.set_num_threads(1)
            dataset = load_dataset(dataset_name, env=env_id)
            model, info = train(dataset, dataset_name, seed, args.steps, args.models_dir, settings, args.prior_models,
                                not args.ensemble_per_seed)  # fmt: skip
            timing = dataset.observations[::997][:TIMING_OBSERVATIONS].astype(np.float32)
            default_noise = float(model.arc_kwargs["noise_std"])
            for variant in todo:
                if variant == TUNED:
                    result = evaluate_tuned(model, args, dataset_name, env_id, seed, timing, default_noise)
                else:
                    result = evaluate_variant(model, variant, env_id, args.eval_episodes, timing, default_noise)
                record = {"dataset": dataset_name, "env_id": env_id, "seed": seed, "variant": variant,
                          "eval_episodes": args.eval_episodes, **info, **result}  # fmt: skip
                path = _record(args, dataset_name, seed, variant)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(record, indent=1) + "\n")
                print(f"[{dataset_name} seed{seed} {variant}] score {result['score_mean']:.1f}, "
                      f"{result['ms_per_action']:.1f} ms/action")  # fmt: skip


def check_same_prior(args: argparse.Namespace, dataset_name: str, seed: int) -> None:
    """
    Stop when this run's records planned around a prior of ``offline_priors.py`` that is no longer on disk.

    Without it ``train`` would train a prior of its own, and the new variants would be compared with records
    of another prior (the saved models are not kept in git, so a fresh machine lacks them).
    """
    if model_path(args.models_dir, dataset_name, seed).is_file():
        return
    run_records = sorted(_record(args, dataset_name, seed, "*").parent.glob(f"seed{seed}_*.json"))
    for record in run_records:
        prior_from = json.loads(record.read_text()).get("prior_from")
        if prior_from is not None and not (args.prior_models / prior_from).is_file():
            raise SystemExit(
                f"{record} planned around the prior {args.prior_models / prior_from}, which is missing: rebuild it "
                f"(deterministic) with `python benchmarks/offline_priors.py --datasets {dataset_name} --seeds {seed} "
                f"--algos ours-crr --results-dir <an empty folder>` and repeat this command"
            )


def evaluate_tuned(
    model: OfflineLOOP,
    args: argparse.Namespace,
    dataset_name: str,
    env_id: str,
    seed: int,
    timing: np.ndarray,
    default_noise: float,
) -> dict[str, Any]:
    """The test result of the tuned noise: the matching variant's record when it exists (same model), else evaluated."""
    tuning_path = args.results_dir / "offline_loop" / "tuning" / f"{dataset_name}_seed{seed}.json"
    tuning = tune_noise(model, dataset_name, env_id, seed, args.tune_episodes, tuning_path)
    variant = noise_variant(tuning["noise_std"], default_noise)
    same = _record(args, dataset_name, seed, variant)
    if same.is_file():
        stored = json.loads(same.read_text())
        result = {k: stored[k] for k in ("returns", "score_mean", "score_std", "ms_per_action", "fallbacks")}
    else:
        result = evaluate_variant(model, variant, env_id, args.eval_episodes, timing, default_noise)
    return {**result, "tuning": tuning, "same_as": variant}


def _is_current(path: Path) -> bool:
    """Whether a record exists and, for the tuned variant, was tuned on its own seed's model (:func:`tune_noise`)."""
    if not path.is_file():
        return False
    return _tuned_on_own_model(json.loads(path.read_text()))


def _tuned_on_own_model(record: dict) -> bool:
    return record["variant"] != TUNED or record["tuning"].get("tuned_on_seed") == record["seed"]


def _record(args: argparse.Namespace, dataset_name: str, seed: int, variant: str) -> Path:
    return args.results_dir / "offline_loop" / "runs" / dataset_name / f"seed{seed}_{variant}.json"


def _env_id(dataset_name: str) -> str:
    parsed = parse_dataset_name(dataset_name)
    if parsed is None:
        raise SystemExit(f"{dataset_name!r} is not a dataset name made here (e.g. Hopper-v5-medium)")
    return parsed[0]


# -------------------------------------------------------------------------------- lookahead
def run_lookahead(args: argparse.Namespace) -> None:
    from stable_baselines3 import SAC, TD3

    for name, cls, paths in (("sac", SAC, args.sac), ("td3", TD3, args.td3)):
        if not paths:
            continue
        digest = hashlib.sha256(Path(paths[0]).read_bytes()).hexdigest()
        path = args.results_dir / "offline_loop" / "lookahead" / f"{args.env}_{name}_{digest[:12]}.json"
        if path.is_file():
            continue
        th.set_num_threads(1)
        model = cls.load(paths[0], device="cpu")
        model.load_replay_buffer(paths[1])
        start = time.perf_counter()
        policy = lookahead(
            model, model.replay_buffer, planner=args.lookahead_planner, seed=0, termination_fn=args.env, verbose=1
        )
        fit_seconds = time.perf_counter() - start
        timing = model.replay_buffer.observations[: model.replay_buffer.size() : 997, 0][:TIMING_OBSERVATIONS]
        timing = timing.astype(np.float32)
        alone = evaluate(model_predict(model), args.env, args.eval_episodes)
        planned = evaluate(model_predict(policy), args.env, args.eval_episodes)
        record = {"env_id": args.env, "algo": name, "model": portable_path(paths[0]), "model_sha256": digest,
                  "replay_buffer": portable_path(paths[1]), "seed": _model_seed(model),
                  "planner": args.lookahead_planner, "transitions": int(model.replay_buffer.size()),
                  "fit_seconds": fit_seconds, "returns_alone": alone.tolist(), "returns_lookahead": planned.tolist(),
                  "ms_per_action_alone": ms_per_action(model, timing),
                  "ms_per_action_lookahead": ms_per_action(policy, timing), "eval_episodes": args.eval_episodes}  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1) + "\n")
        print(f"[lookahead {args.env} {name}] alone {alone.mean():.1f}, with lookahead {planned.mean():.1f}")


def _model_seed(model: Any) -> int | None:
    return None if model.seed is None else int(model.seed)


# ----------------------------------------------------------------------------------- report
def write_report(results_dir: Path, beta_dataset: str) -> None:
    stored = [json.loads(p.read_text()) for p in sorted((results_dir / "offline_loop" / "runs").glob("*/*.json"))]
    records = [r for r in stored if _tuned_on_own_model(r)]
    retune = sorted(f"{r['dataset']} seed {r['seed']}" for r in stored if not _tuned_on_own_model(r))
    lookaheads = [json.loads(p.read_text()) for p in sorted((results_dir / "offline_loop" / "lookahead").glob("*.json"))]
    if not records and not lookaheads:
        print("no records yet")
        return
    table: dict[tuple[str, str], dict[int, float]] = {}
    for record in records:
        table.setdefault((record["dataset"], record["variant"]), {})[record["seed"]] = record["score_mean"]
    datasets = sorted({r["dataset"] for r in records})
    lines = ["# OfflineLOOP: the prior alone vs planning around it", ""]
    lines += _offline_loop_lines(records, table, datasets, beta_dataset) if records else ["No OfflineLOOP runs yet."]
    if retune:
        lines += ["", "Tuned noise still to re-tune on its own model (their records used seed 0's noise, the protocol "
                  "before 2026-12-07; not counted above): " + "; ".join(retune) + "."]  # fmt: skip
    if lookaheads:
        lines += ["", *_lookahead_lines(lookaheads)]
    (results_dir / "offline_loop.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if records:
        plot(table, datasets, beta_dataset, results_dir / "offline_loop.png")


def _offline_loop_lines(records: list[dict], table: dict, datasets: list[str], beta_dataset: str) -> list[str]:
    steps = sorted({r["steps"] for r in records})
    episodes = sorted({r["eval_episodes"] for r in records})
    caps = sorted({r["settings"].get("dynamics_max_epochs", 0) or 0 for r in records})
    fit = "to early stopping" + ("" if caps == [0] else f" (epoch caps {caps}; 0 = none)")
    lines = [
        f"D4RL-normalised score (mean ± std over seeds, n = seeds), CRR prior trained {steps} gradient steps, "
        f"ensemble fitted {fit}, {episodes} evaluation episodes from the same start states for both; "
        "the same trained prior, critic and ensemble per seed. Planner: OfflineLOOP's defaults (H 5, 100 noisy "
        "prior rollouts, noise 0.01, kappa 0.3, 4 particles on every elite), `beta_pessimism` 1. "
        "Command and settings: `benchmarks/offline_loop.py`.",
        "",
        "| dataset | prior | OfflineLOOP | OfflineLOOP - prior (paired over seeds) | OfflineLOOP, tuned noise | "
        "tuned - prior (paired) | ms per action (prior / planner) |",
        "|---|---|---|---|---|---|---|",
    ]
    tuned_noise: dict[str, list[str]] = {}
    for r in sorted(records, key=lambda r: r["seed"]):
        if r["variant"] == TUNED:
            tuned_noise.setdefault(r["dataset"], []).append(f"{r['tuning']['noise_std']:g}")
    means: dict[str, list[tuple[float, float]]] = {"OfflineLOOP": [], "OfflineLOOP with tuned noise": []}
    paired_runs = dict.fromkeys(means, 0)
    for dataset in datasets:
        prior = table.get((dataset, "prior"), {})
        cells = []
        for label, variant in (("OfflineLOOP", "offline_loop_beta1"), ("OfflineLOOP with tuned noise", TUNED)):
            planned = table.get((dataset, variant), {})
            common = sorted(set(prior) & set(planned))
            if common:
                means[label].append((np.mean([prior[s] for s in common]), np.mean([planned[s] for s in common])))
                paired_runs[label] += len(common)
            scores = _cell(list(planned.values()))
            if variant == TUNED and dataset in tuned_noise:
                scores += ", noise " + "/".join(tuned_noise[dataset])
            cells += [scores, _cell([planned[s] - prior[s] for s in common], "+")]
        lines.append(f"| {dataset} | {_cell(list(prior.values()))} | {' | '.join(cells)} | "
                     f"{_ms(records, dataset, 'prior')} / {_ms(records, dataset, 'offline_loop_beta1')} |")  # fmt: skip
    for label, pairs in means.items():
        if pairs:
            prior_mean, loop_mean = np.mean(pairs, axis=0)
            lines += ["", f"Mean over the {len(pairs)} dataset(s) with both ({paired_runs[label]} paired runs; each "
                      f"dataset the mean over its seeds with both): prior {prior_mean:.1f}, {label} "
                      f"{loop_mean:.1f} ({100 * (loop_mean / prior_mean - 1):+.1f}%; target +15%)."]  # fmt: skip
    if tuned_noise:
        lines += ["", f"Tuned noise: `noise_std` in {list(TUNE_NOISES)} with the best mean score over validation "
                  "episodes (env k reset with seed 20000 + k, start states the test episodes never use; "
                  "`--tune-episodes`), on each seed's own model (the noises listed by seed)."]  # fmt: skip
    sweep = [(beta, table.get((beta_dataset, f"offline_loop_beta{beta:g}"), {})) for beta in BETA_SWEEP]
    if any(scores for _, scores in sweep):
        lines += ["", f"Pessimism on {beta_dataset} (same models):", "", "| beta_pessimism | score |", "|---|---|"]
        lines += [f"| {beta:g} | {_cell(list(scores.values()))} |" for beta, scores in sweep]
    noise_variants = sorted(
        (variant_settings(v, 0.0)["noise_std"], v) for d, v in table if d == beta_dataset and "_noise" in v
    )
    if noise_variants:
        lines += ["", f"Action noise `noise_std` on {beta_dataset} (same models, `beta_pessimism` 1; default 0.01):",
                  "", "| noise_std | score |", "|---|---|"]  # fmt: skip
        lines += [f"| {noise:g} | {_cell(list(table[(beta_dataset, v)].values()))} |" for noise, v in noise_variants]
    return lines


def _lookahead_lines(lookaheads: list[dict]) -> list[str]:
    lines = [
        "`sb3_loop.lookahead` on saved models and their replay buffers: returns of the model alone and with the "
        "lookahead (ensemble fitted on the model's own replay buffer, the model's actor as proposal and its critic "
        "as terminal value), deterministic, on the same start states (episode k reset with seed 10000 + k).",
        "",
        "| env | model (seed) | planner | transitions | alone | with lookahead | paired difference | "
        "ms per action (alone / lookahead) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in lookaheads:
        paired = list(np.subtract(r["returns_lookahead"], r["returns_alone"]))
        lines.append(f"| {r['env_id']} | {r['algo']} ({r.get('seed')}) | {r['planner']} | {r['transitions']} | "
                     f"{_cell(r['returns_alone'])} | {_cell(r['returns_lookahead'])} | {_cell(paired, '+')} | "
                     f"{r['ms_per_action_alone']:.1f} / {r['ms_per_action_lookahead']:.1f} |")  # fmt: skip
    lines += ["", "Models: " + ", ".join(f"`{r['model']}`" for r in lookaheads) + "."]
    return lines


def _cell(values: list[float], sign: str = "") -> str:
    return "n/a" if not values else f"{np.mean(values):{sign}.1f} ± {np.std(values):.1f} (n={len(values)})"


def _ms(records: list[dict[str, Any]], dataset: str, variant: str) -> str:
    values = [r["ms_per_action"] for r in records if r["dataset"] == dataset and r["variant"] == variant]
    return "n/a" if not values else f"{np.mean(values):.1f}"


def plot(table: dict, datasets: list[str], beta_dataset: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 1]})
    x = np.arange(len(datasets))
    for offset, variant, label in ((-0.2, "prior", "prior (CRR)"), (0.2, "offline_loop_beta1", "OfflineLOOP")):
        scores = [list(table.get((d, variant), {}).values()) for d in datasets]
        means = [np.mean(s) if s else np.nan for s in scores]
        left.bar(x + offset, means, width=0.4, label=label)
        for i, s in enumerate(scores):
            left.scatter([x[i] + offset] * len(s), s, color="black", s=8, zorder=3)
    left.set_xticks(x, datasets, rotation=20, fontsize=8)
    left.set_ylabel("D4RL-normalised score")
    left.legend()
    sweep = [list(table.get((beta_dataset, f"offline_loop_beta{b:g}"), {}).values()) for b in BETA_SWEEP]
    right.bar([f"{b:g}" for b in BETA_SWEEP], [np.mean(s) if s else np.nan for s in sweep])
    right.set_title(f"beta_pessimism, {beta_dataset}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    print(f"saved {path}")


# ------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=DEFAULT_DATASETS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=30_000, help="gradient steps of the prior per run")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--beta-dataset", default="HalfCheetah-v5-medium", help="dataset of the beta_pessimism sweep")
    parser.add_argument(
        "--noise-sweep", nargs="*", type=float, default=[], help="noise_std values also evaluated on --beta-dataset"
    )
    parser.add_argument("--dynamics-max-epochs", type=int, default=10, help="cap the ensemble fit (0: none)")
    parser.add_argument(
        "--tune-episodes", type=int, default=3, help="validation episodes per noise_std candidate (0: no tuned variant)"
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument(
        "--prior-models", type=Path, default=PRIOR_MODELS_DIR, help="CRR priors of offline_priors.py, reused when they match"
    )
    parser.add_argument("--ensemble-per-seed", action="store_true", help="fit an ensemble per seed, not per dataset")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--lookahead", action="store_true", help="measure sb3_loop.lookahead on saved SAC / TD3 models")
    parser.add_argument("--env", help="env id of the --lookahead models")
    parser.add_argument("--sac", nargs=2, metavar=("MODEL", "BUFFER"), help="saved SAC model and its replay buffer")
    parser.add_argument("--td3", nargs=2, metavar=("MODEL", "BUFFER"), help="saved TD3 model and its replay buffer")
    parser.add_argument("--lookahead-planner", default="online", choices=("online", "offline"))
    args = parser.parse_args()
    if args.lookahead:
        if args.env is None or not (args.sac or args.td3):
            parser.error("--lookahead needs --env and --sac and/or --td3")
        run_lookahead(args)
    elif not args.report_only:
        run_offline_loop(args)
    write_report(args.results_dir, args.beta_dataset)


if __name__ == "__main__":
    main()
