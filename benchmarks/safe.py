"""
Safe RL on the safety tasks: LOOP (unconstrained), SafeLOOP and SAC-Lagrangian at the same env-step
budget, plus a deploy-time constraint on each trained LOOP model.

Every run trains one algorithm on one task for ``--steps`` env steps (one torch thread) and, every
``--eval-every`` steps, evaluates the deterministic policy on ``--eval-episodes`` episodes from the same
start states (env seeds 10000, 10001, ...) for every algorithm, recording each episode's return and
summed ``info["cost"]``. Env steps are steps of the registered env, i.e. agent decisions: on
SafetyPointGoal1AR5-v0 one env step holds the action for 5 simulator steps and reports their summed
reward and cost, so 200000 env steps are the paper's 1M simulator steps. Hyperparameters: SafeLOOP's and
SAC-Lagrangian's packaged ``safe_loop.yml`` / ``sac_lag.yml`` entries; LOOP gets SafeLOOP's entry
without the constraint (horizon 8, same population, particles, ensemble and SAC settings), so the two
differ only by the constraint. When a LOOP run ends, its final model is evaluated again from the same
start states under a constraint given at deployment (:func:`sb3_loop.safe.constrain` with SafeLOOP's
``cost_threshold`` and other constraint settings): the PointGoal hazard cost read from the predicted
lidar, or for the velocity tasks the speed read from the predicted observation (``qvel[0]``).

Runs are resumable: after every evaluation a run writes a checkpoint (model with its optimisers and
ensemble, the replay buffer's filled rows, the evaluations so far) to ``--runs-dir/<task>/<algo>_seed<k>/``
and repeating the command continues from it (random generators and the episode in progress start afresh,
so a resumed run is not bitwise the uninterrupted one). A checkpoint written with other settings (``--steps``,
``--eval-*``, ``--smoke``, ``--learning-starts`` or the packaged hyperparameters) stops the script: delete that
run's folder to start it over. A finished run leaves a small JSON record in
``--results-dir/runs_safe/<task>/`` (commit it): finished runs are skipped, and ``--report-only`` rebuilds
``--results-dir/safe_<task>.md`` and ``.png`` from the records.

    python benchmarks/safe.py                        # both tasks, 3 algorithms, seeds 0 1 2, 30k steps
    python benchmarks/safe.py --only SafetyPointGoal1AR5-v0 safe_loop 1   # one run
    python benchmarks/safe.py --tasks SafetyHalfCheetahVelocity-v1 --steps 200000   # another task or budget
    python benchmarks/safe.py --report-only
    # a variant of the packaged hyperparameters, kept apart from their records
    python benchmarks/safe.py --only SafetyHopperVelocity-v1 safe_loop 2 --params critic_cost_penalty=2 \\
        --results-dir benchmarks/results/safe_critic_penalty --runs-dir benchmarks/runs_safe_critic_penalty
    # its report, beside the packaged LOOP and SAC-Lagrangian runs (targets checked on the seeds both have)
    python benchmarks/safe.py --report-only --tasks SafetyHopperVelocity-v1 \\
        --results-dir benchmarks/results/safe_critic_penalty --baseline-dir benchmarks/results
    # smoke test of the script itself (tiny networks and populations: meaningless numbers)
    python benchmarks/safe.py --smoke --steps 300 --eval-every 150 --eval-episodes 1 --eval-max-steps 30 \\
        --results-dir /tmp/safe_results --runs-dir /tmp/safe_runs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
import yaml

import sb3_loop
from sb3_loop import LOOP, SACLagrangian, SafeLOOP
from sb3_loop.resume import load_replay_buffer_rows, save_replay_buffer_rows
from sb3_loop.safe import constrain, hazard_cost
from sb3_loop.zoo import hyperparams_path

BENCHMARKS_DIR = Path(__file__).resolve().parent
DEFAULT_RESULTS_DIR = BENCHMARKS_DIR / "results"
DEFAULT_RUNS_DIR = BENCHMARKS_DIR / "runs_safe"
RECORDS_DIR = "runs_safe"
#: PointGoal1 with the paper's action repeat, and the velocity task whose threshold binds at small budgets:
#: unconstrained LOOP at 20k steps runs Hopper-v5 at ~1.9 m/s against the 0.7402 threshold, HalfCheetah-v5
#: at ~1.2 m/s against 3.2096 (``benchmarks/results/velocity_binding.md``).
TASKS = ("SafetyPointGoal1AR5-v0", "SafetyHopperVelocity-v1")
ALGOS = ("loop", "safe_loop", "sac_lag")
CLASSES: dict[str, type] = {"loop": LOOP, "safe_loop": SafeLOOP, "sac_lag": SACLagrangian}
LABELS = {"loop": "LOOP", "safe_loop": "SafeLOOP", "sac_lag": "SAC-Lagrangian"}
#: SafeLOOP arguments LOOP does not take.
CONSTRAINT_ARGUMENTS = (
    "cost_threshold",
    "cost_pessimism",
    "min_feasible",
    "max_planning_iterations",
    "widen_factor",
    "cost_fn",
)
#: Where the x velocity sits in the velocity tasks' observations: the root's slide joint velocity qvel[0], the
#: instantaneous velocity at the end of a step, close to the env's average over the frame skip (correlation 0.93
#: on random HalfCheetah steps, 0.99 on Hopper).
VELOCITY_OBS_INDEX = {"HalfCheetah": 8, "Hopper": 5, "Walker2d": 8}
EVAL_SEED = 10_000
#: ``predicted_cost(obs [1, obs_dim], action [1, act_dim]) -> the model's cost of that step``.
PredictedCost = Callable[[np.ndarray, np.ndarray], float]
#: Smoke settings; learning starts within a smoke run's few hundred steps (the packaged 1000 or 10000 would leave
#: LOOP's ensemble untrained, and the deploy-time constraint needs a trained one).
SMOKE = {
    "loop": dict(population_size=16, num_particles=2, ensemble_size=3, num_elites=2, dynamics_hidden_sizes=(32, 32),
                 dynamics_train_freq=100, batch_size=64, learning_starts=100, policy_kwargs=dict(net_arch=[32, 32])),
    "sac_lag": dict(batch_size=64, learning_starts=100, policy_kwargs=dict(net_arch=[32, 32])),
}  # fmt: skip
SMOKE["safe_loop"] = {**SMOKE["loop"], "max_planning_iterations": 6}


# --------------------------------------------------------------------------------- settings
def algorithm_kwargs(
    algo: str,
    task: str,
    smoke: bool = False,
    learning_starts: int | None = None,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """
    Constructor arguments of ``algo`` on ``task`` from the packaged YAML files (see the module docstring),
    then ``params`` (``--params``) on top.
    """
    source = "sac_lag" if algo == "sac_lag" else "safe_loop"
    entries = yaml.safe_load(hyperparams_path(source).read_text())
    if task not in entries:
        raise SystemExit(f"{hyperparams_path(source)} has no entry for {task}")
    kwargs = {key: value for key, value in entries[task].items() if key not in ("policy", "n_timesteps")}
    if algo == "loop":
        kwargs = {key: value for key, value in kwargs.items() if key not in CONSTRAINT_ARGUMENTS}
        kwargs["horizon"] = 8  # SafeLOOP's horizon
    if smoke:
        kwargs.update(SMOKE[algo])
    if learning_starts is not None:
        kwargs["learning_starts"] = learning_starts
    return {**kwargs, **(params or {})}


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` (values read as YAML) -> a dict; a pair without ``=`` stops the script."""
    params = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise SystemExit(f"--params: {pair!r} is not KEY=VALUE")
        params[key] = yaml.safe_load(value)
    return params


def deploy_constraint(task: str, smoke: bool = False) -> dict[str, Any]:
    """SafeLOOP's constraint settings on ``task`` (threshold, pessimism, iterations, ...) without its ``cost_fn``."""
    kwargs = algorithm_kwargs("safe_loop", task, smoke)
    return {key: kwargs[key] for key in CONSTRAINT_ARGUMENTS if key in kwargs and key != "cost_fn"}


def deploy_cost_fn(task: str) -> Callable[[th.Tensor, th.Tensor, th.Tensor], th.Tensor]:
    """The cost a deployment can compute from the predicted observation: hazard lidar, or the x velocity."""
    if "PointGoal" in task:
        return hazard_cost
    robot = task.removeprefix("Safety").split("Velocity")[0]
    if robot not in VELOCITY_OBS_INDEX:
        raise SystemExit(f"no deploy-time cost for {task}: its velocity is not known to be in the observation")
    index = VELOCITY_OBS_INDEX[robot]
    threshold = gym.make(task).unwrapped.velocity_threshold

    def velocity_cost(obs: th.Tensor, action: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
        return (next_obs[..., index] > threshold).to(next_obs.dtype)

    return velocity_cost


# -------------------------------------------------------------------------------- evaluation
def evaluate(
    policy: Any, task: str, episodes: int, max_steps: int | None = None, predicted_cost: PredictedCost | None = None
) -> dict[str, list[float]]:
    """
    Returns, summed costs and lengths of deterministic episodes from the start states of env seeds
    EVAL_SEED + i; with ``predicted_cost`` also each episode's cost as the model predicted it, step by
    step, for the actions taken (``predicted_costs``).
    """
    env = gym.make(task)
    returns, costs, lengths, predicted = [], [], [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED + episode)
        total_return = total_cost = total_predicted = 0.0
        done, step = False, 0
        while not done and (max_steps is None or step < max_steps):
            action, _ = policy.predict(obs[None], episode_start=np.array([step == 0]), deterministic=True)
            if predicted_cost is not None:
                total_predicted += predicted_cost(obs[None], action)
            obs, reward, terminated, truncated, info = env.step(action[0])
            total_return += float(reward)
            total_cost += float(info["cost"])
            done, step = terminated or truncated, step + 1
        returns.append(total_return)
        costs.append(total_cost)
        lengths.append(step)
        predicted.append(total_predicted)
    env.close()
    result = {"returns": returns, "costs": costs, "lengths": lengths}
    return {**result, **({"predicted_costs": predicted} if predicted_cost else {})}


def safe_loop_predicted_cost(model: SafeLOOP) -> PredictedCost:
    """The model's predicted cost of one step (0 before its first fit), for :func:`evaluate`."""

    def predicted_cost(obs: np.ndarray, action: np.ndarray) -> float:
        cost = model.predicted_step_cost(obs, model.policy.scale_action(action))
        return 0.0 if cost is None else float(cost[0])

    return predicted_cost


def evaluate_safe_loop(model: SafeLOOP, task: str, episodes: int, max_steps: int | None) -> dict[str, Any]:
    """:func:`evaluate` with the predicted episode costs, the planner's feasible fraction and its fallbacks."""
    model.policy.pop_feasibility()  # the training plans' since the last log: not the evaluation's
    result = evaluate(model, task, episodes, max_steps, safe_loop_predicted_cost(model))
    feasibility = model.policy.pop_feasibility() or {}
    return {**result, **{key: feasibility.get(key) for key in ("feasible_fraction", "iterations", "plans", "fallbacks")}}


# ------------------------------------------------------------------------------- one run
class Run:
    """One (task, algorithm, seed) run: its folder, checkpoints and record."""

    def __init__(self, task: str, algo: str, seed: int, args: argparse.Namespace) -> None:
        self.task, self.algo, self.seed, self.args = task, algo, seed, args
        self.directory = Path(args.runs_dir) / task / f"{algo}_seed{seed}"
        self.record_path = Path(args.results_dir) / RECORDS_DIR / task / f"{algo}_seed{seed}.json"
        self.settings = {
            "steps": args.steps,
            "eval_every": args.eval_every,
            "eval_episodes": args.eval_episodes,
            "eval_max_steps": args.eval_max_steps,
            "smoke": args.smoke,
            "kwargs": _jsonable(algorithm_kwargs(algo, task, args.smoke, args.learning_starts, args.params)),
        }

    @property
    def label(self) -> str:
        return f"{self.task} {self.algo} seed {self.seed}"

    def finished(self) -> bool:
        record = _read_json(self.record_path)
        return bool(record and record.get("status") == "finished" and record.get("settings") == self.settings)

    def latest_checkpoint(self) -> Path | None:
        """
        The newest complete checkpoint (``None``: start over). One written with other settings stops the
        script rather than being deleted: it may hold days of training.
        """
        candidates, others = [], []
        for folder in self.directory.glob("checkpoint_*"):
            state = _read_json(folder / "state.json")  # written last
            if state is None:
                continue
            if state.get("settings") == self.settings:
                candidates.append((state["num_timesteps"], folder))
            else:
                others.append((folder, state.get("settings") or {}))
        if candidates:
            return max(candidates)[1]
        if others:
            folder, settings = others[0]
            changed = sorted(key for key in {*settings, *self.settings} if settings.get(key) != self.settings.get(key))
            raise SystemExit(
                f"{folder} was written with other settings ({', '.join(changed)} differ): rerun with the same "
                f"ones, or delete {self.directory} to start {self.label} over"
            )
        return None

    def execute(self) -> dict[str, Any]:
        th.set_num_threads(1)
        checkpoint = self.latest_checkpoint()
        cls = CLASSES[self.algo]
        env = gym.make(self.task)
        if checkpoint is None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory.mkdir(parents=True)
            model = cls("MlpPolicy", env, seed=self.seed, device="cpu", **algorithm_kwargs(
                self.algo, self.task, self.args.smoke, self.args.learning_starts, self.args.params))  # fmt: skip
            evaluations: list[dict[str, Any]] = []
            wall_clock, resumed = 0.0, []
        else:
            state = _read_json(checkpoint / "state.json") or {}
            model = cls.load(checkpoint / "model.zip", env=env, device="cpu")
            load_replay_buffer_rows(model, checkpoint / "replay_buffer_rows.pkl")
            evaluations, wall_clock = state["evaluations"], state["wall_clock"]
            resumed = [*state.get("resumed", []), model.num_timesteps]
            print(f"[resume] {self.label}: from the checkpoint at {model.num_timesteps} steps", flush=True)
        start = time.perf_counter() - wall_clock
        while model.num_timesteps < self.args.steps:
            chunk = min(self.args.eval_every, self.args.steps - model.num_timesteps)
            model.learn(chunk, reset_num_timesteps=model.num_timesteps == 0)
            evaluate_run = evaluate_safe_loop if self.algo == "safe_loop" else evaluate
            result = evaluate_run(model, self.task, self.args.eval_episodes, self.args.eval_max_steps)
            evaluations.append({"steps": model.num_timesteps, **result})
            print(f"[eval] {self.label} at {model.num_timesteps}: return {np.mean(result['returns']):.1f}, "
                  f"cost {np.mean(result['costs']):.1f}", flush=True)  # fmt: skip
            self.write_checkpoint(model, evaluations, time.perf_counter() - start, resumed)
        record = {
            "task": self.task,
            "algo": self.algo,
            "seed": self.seed,
            "status": "finished",
            "settings": self.settings,
            "evaluations": evaluations,
            "wall_clock_s": time.perf_counter() - start,
            "resumed_at_steps": resumed,
            "sb3_loop_version": sb3_loop.__version__,
        }
        if self.algo == "loop":
            record["deploy"] = self.deploy_time_constraint(model, evaluations[-1])
        model.save(self.directory / "final_model.zip")
        _write_json(self.record_path, record)  # before the checkpoints go: a kill in between loses nothing
        for folder in self.directory.glob("checkpoint_*"):
            shutil.rmtree(folder)
        return record

    def write_checkpoint(self, model: Any, evaluations: list[dict[str, Any]], wall_clock: float, resumed: list[int]) -> None:
        """A new checkpoint folder, its state.json last; then the older ones go."""
        folder = self.directory / f"checkpoint_{model.num_timesteps}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        model.save(folder / "model.zip")
        save_replay_buffer_rows(model.replay_buffer, folder / "replay_buffer_rows.pkl")
        state = {
            "num_timesteps": model.num_timesteps,
            "settings": self.settings,
            "evaluations": evaluations,
            "wall_clock": wall_clock,
            "resumed": resumed,
        }
        _write_json(folder / "state.json", state)
        for old in self.directory.glob("checkpoint_*"):
            if old != folder:
                shutil.rmtree(old)

    def deploy_time_constraint(self, model: LOOP, final_evaluation: dict[str, Any]) -> dict[str, Any]:
        """
        The final LOOP model from the same start states under a constraint given now (without it: its final
        evaluation, deterministic, so the same episodes).
        """
        constraint = deploy_constraint(self.task, self.args.smoke)
        threshold = float(constraint.pop("cost_threshold", 0.2))
        policy = constrain(model, deploy_cost_fn(self.task), threshold, **constraint)
        model.policy.pop_planning_time()
        constrained = evaluate(policy, self.task, self.args.eval_episodes, self.args.eval_max_steps)
        feasibility = policy.pop_feasibility() or {}
        return {
            "cost_threshold": threshold,
            "constraint": constraint,
            "without": {key: final_evaluation[key] for key in ("returns", "costs")},
            "with": constrained,
            "feasible_fraction": feasibility.get("feasible_fraction"),
            "fallback_fraction": feasibility.get("fallbacks", 0.0) / max(feasibility.get("plans", 1.0), 1.0),
            "ms_per_action": model.policy.pop_planning_time(),
        }


# ----------------------------------------------------------------------------------- report
def load_records(results_dir: Path, task: str) -> list[dict[str, Any]]:
    folder = results_dir / RECORDS_DIR / task
    return [record for path in sorted(folder.glob("*.json")) if (record := _read_json(path))]


def final(record: dict[str, Any], key: str) -> float:
    return float(np.mean(record["evaluations"][-1][key]))


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{np.mean(values):.1f} ± {np.std(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def write_report(results_dir: Path, task: str, baseline_dir: Path | None = None) -> Path | None:
    """Rebuild ``safe_<task>.md`` and ``.png`` from the records in ``results_dir``.

    :param baseline_dir: for a variant's ``results_dir``: the packaged configuration's results folder, whose
        records stand in for the algorithms the variant did not run (marked "packaged") and whose SafeLOOP
        runs on the variant's seeds are shown beside the variant's.
    """
    records = load_records(results_dir, task)
    if not records:
        return None
    by_algo = {algo: [r for r in records if r["algo"] == algo] for algo in ALGOS}
    labels = dict(LABELS)
    packaged_safe: list[dict[str, Any]] = []
    if baseline_dir is not None and Path(baseline_dir).resolve() != Path(results_dir).resolve():
        baseline = {algo: [r for r in load_records(baseline_dir, task) if r["algo"] == algo] for algo in ALGOS}
        variant_safe = by_algo["safe_loop"]
        for algo in ALGOS:
            if not by_algo[algo] and baseline[algo]:
                by_algo[algo], labels[algo] = baseline[algo], f"{LABELS[algo]} (packaged)"
        if variant_safe:
            variant_seeds = {r["seed"] for r in variant_safe}
            packaged_safe = [r for r in baseline["safe_loop"] if r["seed"] in variant_seeds]
            labels["safe_loop"] = f"SafeLOOP ({variant_label(by_algo['safe_loop'])})"
    steps = sorted({r["evaluations"][-1]["steps"] for r in records})
    lines = [
        f"# Safe RL on {task}: LOOP vs SafeLOOP vs SAC-Lagrangian",
        "",
        "Generated by `benchmarks/safe.py` (see its docstring for the protocol). Final evaluation of each run "
        f"(deterministic, the same {records[0]['settings']['eval_episodes']} start states for every algorithm), "
        "mean ± std over seeds of the per-seed mean episode return and summed cost.",
        "",
        "| algorithm | seeds | env steps | return | cost | wall-clock (h) |",
        "|---|---|---|---|---|---|",
    ]
    rows = [(labels[algo], runs) for algo, runs in by_algo.items() if runs]
    if packaged_safe:
        rows.append(("SafeLOOP (packaged, same seeds)", packaged_safe))
    lines += [summary_row(label, runs) for label, runs in rows]
    lines += ["", *per_seed_table(rows), "", *targets(by_algo), "", *planner_lines(by_algo["safe_loop"])]
    lines += deploy_table(by_algo["loop"])
    if any(r["settings"]["smoke"] for r in records):
        lines += ["", "**Smoke settings** (tiny networks and populations): these numbers say nothing about the methods."]
    if len(steps) > 1:
        lines += ["", f"Runs end at different step counts: {steps}."]
    path = results_dir / f"safe_{task}.md"
    plot(by_algo, task, path.with_suffix(".png"), labels)
    lines += ["", f"![curves](safe_{task}.png)", ""]
    path.write_text("\n".join(lines))
    return path


def variant_label(runs: list[dict[str, Any]]) -> str:
    """The arguments a variant's runs set over the packaged entry, e.g. ``critic_cost_penalty=2``."""
    packaged = _jsonable(algorithm_kwargs(runs[0]["algo"], runs[0]["task"], runs[0]["settings"]["smoke"]))
    changed = {k: v for k, v in runs[0]["settings"]["kwargs"].items() if packaged.get(k) != v and k != "learning_starts"}
    return ", ".join(f"{k}={v}" for k, v in changed.items()) or "variant"


def summary_row(label: str, runs: list[dict[str, Any]]) -> str:
    hours = np.mean([r["wall_clock_s"] for r in runs]) / 3600
    run_steps = ", ".join(str(s) for s in sorted({r["evaluations"][-1]["steps"] for r in runs}))
    returns, costs = _cell([final(r, "returns") for r in runs]), _cell([final(r, "costs") for r in runs])
    return f"| {label} | {len(runs)} | {run_steps} | {returns} | {costs} | {hours:.2f} |"


def per_seed_table(rows: list[tuple[str, list[dict[str, Any]]]]) -> list[str]:
    """Final return / cost of every run, a row per seed, so that seeds can be compared in pairs."""
    seeds = sorted({r["seed"] for _, runs in rows for r in runs})
    lines = ["Per seed, final return / cost:", "", "| seed | " + " | ".join(label for label, _ in rows) + " |",
             "|---" * (len(rows) + 1) + "|"]  # fmt: skip
    for seed in seeds:
        cells = []
        for _, runs in rows:
            run = next((r for r in runs if r["seed"] == seed), None)
            cells.append("-" if run is None else f"{final(run, 'returns'):.1f} / {final(run, 'costs'):.1f}")
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    return lines


def targets(by_algo: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The targets of the issue, checked on the means over the seeds both compared algorithms have."""
    lines = ["Targets: SafeLOOP's cost at most 10% of LOOP's with at least 80% of its return; lower cost than "
             "SAC-Lagrangian at equal steps.", ""]  # fmt: skip
    safe_runs = by_algo["safe_loop"]
    if not safe_runs:
        return [*lines, "- no SafeLOOP run yet"]
    if by_algo["loop"]:
        seeds, (safe_return, safe_cost), (loop_return, loop_cost) = matched_means(safe_runs, by_algo["loop"])
        ratio = safe_return / loop_return if loop_return > 0 else float("nan")
        lines.append(f"- {seeds}: cost {safe_cost:.1f} vs LOOP's {loop_cost:.1f} (target <= {0.1 * loop_cost:.1f}): "
                     f"{'met' if safe_cost <= 0.1 * loop_cost else 'not met'}")  # fmt: skip
        lines.append(f"- {seeds}: return {safe_return:.1f} vs LOOP's {loop_return:.1f} (ratio {ratio:.3f}, "
                     f"target >= 0.80): {'met' if ratio >= 0.8 else 'not met'}")  # fmt: skip
    if by_algo["sac_lag"]:
        seeds, (_, safe_cost), (_, lag_cost) = matched_means(safe_runs, by_algo["sac_lag"])
        lines.append(f"- {seeds}: cost {safe_cost:.1f} vs SAC-Lagrangian's {lag_cost:.1f}: "
                     f"{'met' if safe_cost < lag_cost else 'not met'}")  # fmt: skip
    return lines


def matched_means(
    runs: list[dict[str, Any]], others: list[dict[str, Any]]
) -> tuple[str, tuple[float, float], tuple[float, float]]:
    """Mean final (return, cost) of two sets of runs over the seeds both have (all of each if they share none)."""
    common = {r["seed"] for r in runs} & {r["seed"] for r in others}
    if common:
        runs, others = [r for r in runs if r["seed"] in common], [r for r in others if r["seed"] in common]
    named = ", ".join(str(seed) for seed in sorted(common))
    seeds = ("seeds " if len(common) > 1 else "seed ") + named if common else "unmatched seeds"

    def means(group: list[dict[str, Any]]) -> tuple[float, float]:
        return float(np.mean([final(r, "returns") for r in group])), float(np.mean([final(r, "costs") for r in group]))

    return seeds, means(runs), means(others)


def planner_lines(safe_runs: list[dict[str, Any]]) -> list[str]:
    """SafeLOOP's planner at its final evaluation: predicted vs actual episode cost, feasibility, fallbacks."""
    finals = [r["evaluations"][-1] for r in safe_runs if "predicted_costs" in r["evaluations"][-1]]
    if not finals:
        return []
    predicted, actual = _cell([np.mean(e["predicted_costs"]) for e in finals]), _cell([np.mean(e["costs"]) for e in finals])
    feasible = _cell([100 * e["feasible_fraction"] for e in finals if e["feasible_fraction"] is not None])
    fallbacks = _cell([(e["fallbacks"] or 0.0) / max(e["plans"] or 1, 1) * 100 for e in finals])
    return [
        f"SafeLOOP's planner at the final evaluation ({len(finals)} of {len(safe_runs)} runs recorded it): "
        f"episode cost predicted by its model {predicted} vs actual {actual}; feasible sequences {feasible}% "
        f"of the population; plans that fell back to the least-cost weighting {fallbacks}%.",
        "",
    ]


def deploy_table(loop_runs: list[dict[str, Any]]) -> list[str]:
    runs = [r for r in loop_runs if "deploy" in r]
    if not runs:
        return ["Deploy-time constraint: no finished LOOP run yet."]
    threshold = runs[0]["deploy"]["cost_threshold"]
    lines = [
        f"Deploy-time constraint on the final LOOP models (`sb3_loop.safe.constrain`, cost_threshold {threshold} "
        "per horizon, the cost computed from the predicted observation), same start states:",
        "",
        "| seed | return without | return with | cost without | cost with | feasible fraction | least-cost fallbacks "
        "| ms/action |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in sorted(runs, key=lambda r: r["seed"]):
        deploy = run["deploy"]
        fraction = "-" if deploy["feasible_fraction"] is None else f"{deploy['feasible_fraction']:.2f}"
        lines.append(
            f"| {run['seed']} | {np.mean(deploy['without']['returns']):.1f} | {np.mean(deploy['with']['returns']):.1f} "
            f"| {np.mean(deploy['without']['costs']):.1f} | {np.mean(deploy['with']['costs']):.1f} "
            f"| {fraction} | {deploy['fallback_fraction']:.0%} | {deploy['ms_per_action'] or 0:.0f} |"
        )
    return lines


def plot(by_algo: dict[str, list[dict[str, Any]]], task: str, path: Path, labels: dict[str, str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for algo, runs in by_algo.items():
        if not runs:
            continue
        for axis, key in zip(axes, ("returns", "costs"), strict=True):
            length = min(len(r["evaluations"]) for r in runs)
            steps = [e["steps"] for e in runs[0]["evaluations"][:length]]
            values = np.array([[np.mean(e[key]) for e in r["evaluations"][:length]] for r in runs])
            axis.plot(steps, values.mean(0), label=f"{labels[algo]} ({len(runs)} seeds)")
            axis.fill_between(steps, values.min(0), values.max(0), alpha=0.2)
    cost_limit = algorithm_kwargs("sac_lag", task).get("cost_limit")
    if cost_limit is not None:
        axes[1].axhline(cost_limit, color="grey", linestyle="--", label=f"episode cost limit {cost_limit:g}")
        axes[1].legend()
    for axis, title in zip(axes, ("episode return", "episode cost"), strict=True):
        axis.set_xlabel("env steps")
        axis.set_title(f"{task}: {title}")
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# ------------------------------------------------------------------------------------ helpers
def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=1))
    os.replace(temporary, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--steps",
        type=int,
        default=30_000,
        help="env steps per run, the same for every algorithm (AR5: agent steps, 5 simulator steps each); "
        "the default is about what a planning run does in one sitting here",
    )
    parser.add_argument("--eval-every", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--eval-max-steps", type=int, default=None, help="cut evaluation episodes (smoke tests)")
    parser.add_argument("--learning-starts", type=int, default=None, help="override every algorithm's")
    parser.add_argument("--smoke", action="store_true", help="tiny networks and populations, to test this script")
    parser.add_argument("--only", nargs=3, metavar=("TASK", "ALGO", "SEED"), help="run just this one")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--results-dir", default=str(DEFAULT_RESULTS_DIR))
    parser.add_argument("--runs-dir", default=str(DEFAULT_RUNS_DIR))
    parser.add_argument(
        "--baseline-dir",
        default=None,
        help="a variant's report: the packaged results folder, for the algorithms the variant did not run",
    )
    parser.add_argument(
        "--params",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="constructor arguments over the packaged ones (a variant: needs its own --results-dir and --runs-dir)",
    )
    args = parser.parse_args()
    args.params = parse_params(args.params)
    if args.params and (Path(args.results_dir) == DEFAULT_RESULTS_DIR or Path(args.runs_dir) == DEFAULT_RUNS_DIR):
        parser.error("--params makes a variant: give it a --results-dir and a --runs-dir of its own, so the "
                     "packaged configuration's records and checkpoints stay as they are")  # fmt: skip
    if args.only:
        task, algo, seed = args.only
        if algo not in ALGOS:
            parser.error(f"--only: algorithm {algo!r} is not one of {', '.join(ALGOS)}")
        runs = [(task, algo, int(seed))]
        args.tasks = [task]
    else:
        runs = [(task, algo, seed) for task in args.tasks for seed in args.seeds for algo in args.algos]
    if not args.report_only:
        for task, algo, seed in runs:
            run = Run(task, algo, seed, args)
            if run.finished():
                print(f"[skip] {run.label}: finished", flush=True)
                continue
            run.execute()
    baseline = Path(args.baseline_dir) if args.baseline_dir else None
    for task in args.tasks:
        path = write_report(Path(args.results_dir), task, baseline)
        print(f"[report] {path}" if path else f"[report] {task}: no records", flush=True)


if __name__ == "__main__":
    main()
