"""LOOP vs SAC vs TD3 through the rl-zoo3 launcher: learning curves, returns at checkpoints, steps to
reach return levels and wall-clock, for several envs and seeds.

Usage:
  python benchmarks/compare.py --envs InvertedPendulum-v5 --algos loop sac td3 \\
      --steps loop=10000 sac=10000 td3=10000 --seeds 0 1 2 --eval-freq 1000 --eval-episodes 5 \\
      --levels 500 1000
  # several runs at a time: --jobs 2; or one run only, e.g. several started in the background:
  python benchmarks/compare.py --only InvertedPendulum-v5 loop 1 --steps loop=10000 --eval-freq 1000 &
  # regenerate benchmarks/results/compare_<env>.md / .png from whatever exists:
  python benchmarks/compare.py --report-only --envs InvertedPendulum-v5 --levels 500 1000

Each run is ``python -m sb3_loop train --algo A --env E -n STEPS --seed K --eval-freq F
--eval-episodes N --num-threads 1 --log-folder benchmarks/runs/E/A/seedK`` (hyperparameters: our
packaged loop.yml / sac.yml / td3.yml; ``--extra "loop=-params horizon:5"`` adds zoo arguments).
The zoo's EvalCallback rewrites ``evaluations.npz`` at every evaluation, so partial results survive an
interruption. A finished run gets ``done.json`` (with its wall-clock) and is skipped when the command
is repeated. ``--report-only`` labels incomplete runs. Wall-clock is per run, process start-up and
evaluations included.

Resuming: every run is launched with the launcher's ``--checkpoint-dir benchmarks/runs/E/A/seedK/checkpoint
--checkpoint-freq C`` (``--checkpoint-freq``, default ``--eval-freq``; 0 turns checkpoints off). Every C
steps the launcher replaces the run's checkpoint, ``checkpoint/steps_<N>/`` (model.zip with the optimisers
and LOOP's ensemble, the replay buffer's filled rows, state.json with the evaluations so far and the
wall-clock), atomically: written under a temporary name, then renamed. When the command is repeated, an
unfinished run (killed, or its machine gone; ``running.json`` naming a live process means it is still
running and is skipped) continues from that checkpoint if its ``run.json`` holds the same command
(checkpoint options aside) and the checkpoint is complete; otherwise the folder is deleted and the run
starts over. The launcher itself (``sb3_loop.zoo``, ``sb3_loop.resume``) loads the model and replay
buffer, trains the steps left with ``num_timesteps`` counting on, gives the EvalCallback the evaluations
so far, and refuses a checkpoint written with other arguments or hyperparameters (the run then fails:
delete the folder). As for ``-i``, the zoo makes a new ``<env>_<id>`` folder per launch; the readers here
take the latest launch's files: its ``evaluations.npz`` starts with every evaluation of the checkpoint,
its final model holds the whole run. ``train.log`` is appended to, ``run.json`` lists the resumes and
``done.json``'s wall-clock is the earlier sittings' time up to the checkpoint continued from plus the
last sitting. A resumed run is not bitwise the run it would have been (random generators and the
episode in progress start afresh). A finished run's checkpoint is deleted.

``benchmarks/runs/`` is not committed (models, logs). What a report needs is: every run's evaluations,
status and wall-clock go to a small record, ``benchmarks/results/runs/<env>/<algo>_seed<k>.json``, when
the run ends and at every report; a finished LOOP run's record also holds its final model's
``dynamics_log`` (one entry per ensemble refit) and its ``planner_log`` (the ``planner/*`` values of
each log dump in ``train.log``, with ``total_timesteps``), a resumed run's the steps it was resumed at
(``resumed_at_steps``). Commit the records: on a fresh checkout, finished runs are skipped and reports
are rebuilt from them, so a comparison can be completed over several sittings.
A hand-written ``benchmarks/results/notes/compare_<env>.md`` (commands, caveats) is appended to the report.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BENCHMARKS_DIR = Path(__file__).resolve().parent
REPOSITORY = BENCHMARKS_DIR.parent
DEFAULT_RUNS_DIR = BENCHMARKS_DIR / "runs"
DEFAULT_RESULTS_DIR = BENCHMARKS_DIR / "results"
DONE_FILE = "done.json"
RUN_FILE = "run.json"
RUNNING_FILE = "running.json"
RECORDS_DIR = "runs"  # under the results folder: one committed JSON record per run
NOTES_DIR = "notes"  # under the results folder: compare_<env>.md appended to the generated report
LOG_FILE = "train.log"
CHECKPOINT_DIR = "checkpoint"  # in a run folder: the launcher's --checkpoint-dir
CHECKPOINT_OPTIONS = ("--checkpoint-dir", "--checkpoint-freq")
DEFAULT_ALGOS = ("loop", "sac", "td3")


# ------------------------------------------------------------------------------ run management
@dataclass(frozen=True)
class RunSpec:
    env: str
    algo: str
    seed: int
    steps: int
    eval_freq: int
    eval_episodes: int
    extra: tuple[str, ...] = ()
    checkpoint_freq: int = 0  # env steps between the launcher's checkpoints; 0: none (not resumable)

    def directory(self, runs_dir: Path) -> Path:
        return run_directory(runs_dir, self.env, self.algo, self.seed)

    def command(self, runs_dir: Path) -> list[str]:
        checkpoints = []
        if self.checkpoint_freq > 0:
            checkpoints = ["--checkpoint-dir", str(self.directory(runs_dir) / CHECKPOINT_DIR),
                           "--checkpoint-freq", str(self.checkpoint_freq)]  # fmt: skip
        return [
            sys.executable, "-m", "sb3_loop", "train",
            "--algo", self.algo, "--env", self.env,
            "-n", str(self.steps), "--seed", str(self.seed),
            "--eval-freq", str(self.eval_freq), "--eval-episodes", str(self.eval_episodes),
            "--num-threads", "1",
            "--log-folder", str(self.directory(runs_dir)),
            *checkpoints,
            *self.extra,
        ]  # fmt: skip


def run_directory(runs_dir: Path, env: str, algo: str, seed: int) -> Path:
    return runs_dir / env / algo / f"seed{seed}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_one(spec: RunSpec, runs_dir: Path, results_dir: Path | None = None) -> str:
    """Run one (env, algo, seed) unless it is finished or running elsewhere; returns its status.

    With ``results_dir``, a run finished in an earlier sitting (its record under ``results_dir/runs``) is
    skipped too, and the run's record is written there when it ends.
    """
    directory = spec.directory(runs_dir)
    label = f"{spec.env} {spec.algo} seed{spec.seed}"
    recorded = read_record(results_dir, spec.env, spec.algo, spec.seed) if results_dir is not None else None
    if recorded is not None and recorded.done and recorded.steps == spec.steps and not (directory / DONE_FILE).exists():
        print(f"[skip] {label}: finished in an earlier sitting ({record_path(results_dir, spec.env, spec.algo, spec.seed)})",
              flush=True)  # fmt: skip
        return "skipped"
    done = _read_json(directory / DONE_FILE)
    if done is not None:
        if int(done.get("steps", -1)) != spec.steps:
            print(f"[skip] {label}: finished with {done.get('steps')} steps (asked {spec.steps}); "
                  f"delete {directory} to rerun", flush=True)  # fmt: skip
        else:
            print(f"[skip] {label}: finished ({done['wall_clock_s']:.0f} s)", flush=True)
        return "skipped"
    running = _read_json(directory / RUNNING_FILE)
    if running is not None and running.get("host") == os.uname().nodename and _pid_alive(int(running["pid"])):
        print(f"[skip] {label}: running in process {running['pid']}", flush=True)
        return "running"
    command = spec.command(runs_dir)
    checkpoint = resumable_checkpoint(directory, command) if directory.exists() else None
    if checkpoint is not None:
        print(f"[resume] {label}: unfinished run found, continuing from its checkpoint at "
              f"{checkpoint['num_timesteps']} steps", flush=True)  # fmt: skip
    elif directory.exists():
        print(f"[restart] {label}: unfinished run found, starting again", flush=True)
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _write_json(directory / RUNNING_FILE, {"pid": os.getpid(), "host": os.uname().nodename})
    info = {"env": spec.env, "algo": spec.algo, "seed": spec.seed, "steps": spec.steps, "eval_freq": spec.eval_freq,
            "eval_episodes": spec.eval_episodes, "command": command, "started": _now()}  # fmt: skip
    if checkpoint is not None:
        previous = _read_json(directory / RUN_FILE) or {}
        info["started"] = previous.get("started", info["started"])
        info["resumed"] = [*previous.get("resumed", []), {"at_steps": checkpoint["num_timesteps"], "time": _now()}]
    _write_json(directory / RUN_FILE, info)
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    env.setdefault("MUJOCO_GL", "egl")
    print(f"[run] {label}: {shlex.join(command)}", flush=True)
    start = time.perf_counter()
    with open(directory / LOG_FILE, "a" if checkpoint is not None else "w") as log:
        if checkpoint is not None:
            log.write(f"\n===== compare.py {_now()}: resuming from the checkpoint at {checkpoint['num_timesteps']} steps\n")
            log.flush()
        returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, check=False).returncode
    # earlier sittings count up to the checkpoint this one continued from (the work redone after it, once)
    wall_clock = time.perf_counter() - start + (float(checkpoint.get("wall_clock_s") or 0.0) if checkpoint else 0.0)
    (directory / RUNNING_FILE).unlink(missing_ok=True)
    try:
        return _finish_run(spec, directory, label, returncode, wall_clock, command)
    finally:
        run = read_run_directory(directory, spec.env, spec.algo) if results_dir is not None else None
        if run is not None:
            export_record(results_dir, spec.env, run)


def _finish_run(spec: RunSpec, directory: Path, label: str, returncode: int, wall_clock: float, command: list[str]) -> str:
    if returncode != 0:
        tail = (directory / LOG_FILE).read_text().splitlines()[-15:]
        print(f"[failed] {label}: exit code {returncode} after {wall_clock:.0f} s; log {directory / LOG_FILE}:\n  "
              + "\n  ".join(tail), flush=True)  # fmt: skip
        return "failed"
    trained = saved_num_timesteps(directory, spec.algo, spec.env)
    if trained is None or trained < spec.steps:
        # the zoo saves the model and exits normally on Ctrl-C: that run is not finished
        print(f"[interrupted] {label}: the saved model has {trained} of {spec.steps} steps", flush=True)
        return "interrupted"
    resumed = [int(entry["at_steps"]) for entry in (_read_json(directory / RUN_FILE) or {}).get("resumed", [])]
    done = {"env": spec.env, "algo": spec.algo, "seed": spec.seed, "steps": spec.steps, "eval_freq": spec.eval_freq,
            "eval_episodes": spec.eval_episodes, "wall_clock_s": wall_clock, "finished": _now(),
            "command": command}  # fmt: skip
    if resumed:
        done["resumed_at_steps"] = resumed
    _write_json(directory / DONE_FILE, done)
    shutil.rmtree(directory / CHECKPOINT_DIR, ignore_errors=True)  # a finished run is never continued
    print(f"[done] {label}: {wall_clock:.0f} s" + (f" (resumed at {resumed} steps)" if resumed else ""), flush=True)
    return "done"


def resumable_checkpoint(directory: Path, command: list[str]) -> dict | None:
    """The ``state.json`` of the latest checkpoint in an unfinished run folder if ``command`` continues that
    run: the folder was started with the same command (checkpoint options aside) and holds a complete
    checkpoint. ``None`` otherwise: the run starts over. (The launcher checks the arguments again, and the
    hyperparameters, before it continues.)"""
    started = _read_json(directory / RUN_FILE)
    if started is None or _without_checkpoint_options(started.get("command")) != _without_checkpoint_options(command):
        return None
    found = []
    for checkpoint in (directory / CHECKPOINT_DIR).glob("steps_*"):
        state = _read_json(checkpoint / "state.json")  # written last: a complete checkpoint has it
        if state is not None and isinstance(state.get("num_timesteps"), int) and (checkpoint / "model.zip").is_file():
            found.append(state)
    return max(found, key=lambda state: state["num_timesteps"], default=None)


def _without_checkpoint_options(command: list[str] | None) -> list[str] | None:
    """``command`` in portable form without the launcher's checkpoint options (they may change between sittings)."""
    portable = portable_command(command)
    if portable is None:
        return None
    kept, skip = [], False
    for argument in portable:
        if skip:
            skip = False
        elif argument in CHECKPOINT_OPTIONS:
            skip = True
        elif not argument.startswith(tuple(f"{option}=" for option in CHECKPOINT_OPTIONS)):
            kept.append(argument)
    return kept


def _zoo_run_folders(directory: Path, algo: str, env: str) -> list[Path]:
    """The zoo's ``<env>_<id>`` folders of a run, oldest launch first (a resumed run has one per sitting)."""
    pattern = re.compile(rf"{re.escape(env)}_(\d+)(_.*)?")

    def launch_order(path: Path) -> tuple[int, float]:
        match = pattern.fullmatch(path.name)
        try:
            modified = path.stat().st_mtime
        except OSError:  # deleted meanwhile
            modified = 0.0
        return (int(match.group(1)) if match else -1, modified)

    return sorted((p for p in directory.glob(f"{algo}/{env}_*") if p.is_dir()), key=launch_order)


def saved_model_path(directory: Path, algo: str, env: str) -> Path | None:
    """The final model the zoo saved for a run, from its latest launch that saved one."""
    for folder in reversed(_zoo_run_folders(directory, algo, env)):
        model = folder / f"{env}.zip"
        if model.is_file():
            return model
    return None


def saved_model_data(directory: Path, algo: str, env: str) -> dict | None:
    """The ``data`` JSON of the final model the zoo saved for a run (:func:`saved_model_path`)."""
    model = saved_model_path(directory, algo, env)
    return None if model is None else read_saved_data(model)


def read_saved_data(model_path: Path) -> dict | None:
    """The ``data`` JSON of a saved SB3 model (read from the zip, no torch); ``None`` if unreadable."""
    try:
        with zipfile.ZipFile(model_path) as archive:
            data = json.loads(archive.read("data"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return data if isinstance(data, dict) else None


def saved_num_timesteps(directory: Path, algo: str, env: str) -> int | None:
    """``num_timesteps`` of the final model the zoo saved for a run (read from the zip, no torch)."""
    data = saved_model_data(directory, algo, env)
    try:
        return None if data is None else int(data["num_timesteps"])
    except (KeyError, TypeError, ValueError):
        return None


def saved_dynamics_log(data: dict | None) -> list[dict] | None:
    """LOOP's ``dynamics_log`` (one dict per ensemble refit) from a saved model's ``data``, if it has one
    stored as plain JSON (SB3 stores what JSON cannot hold as an opaque pickle)."""
    log = None if data is None else data.get("dynamics_log")
    return log if isinstance(log, list) and all(isinstance(entry, dict) for entry in log) else None


_LOG_ROW = re.compile(r"^\|\s*(\S+?)\s*\|\s*(\S*)\s*\|$")


def logged_planner_values(log_file: Path) -> list[dict] | None:
    """
    The ``planner/*`` values (e.g. ``actor_divergence``) of every log dump SB3 printed to a run's
    ``train.log``, each with its ``total_timesteps``; ``None`` without a log or planner values.
    """
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return None
    dumps, section, values = [], "", {}
    for line in text.splitlines():
        if line.startswith("---"):
            if "total_timesteps" in values and len(values) > 1:
                dumps.append(values)
            section, values = "", {}
            continue
        match = _LOG_ROW.match(line.strip())
        if match is None:
            continue
        key, value = match.groups()
        if key.endswith("/"):
            section = key
        elif (section == "planner/" or key == "total_timesteps") and (number := _to_float(value)) is not None:
            values[key] = number
    return [{**d, "total_timesteps": int(d["total_timesteps"])} for d in dumps] or None


def _to_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------ results
@dataclass
class RunResult:
    algo: str
    seed: int
    done: bool
    steps: int | None
    eval_freq: int | None = None
    eval_episodes: int | None = None
    command: list[str] | None = None
    timesteps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    episode_returns: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # [evaluations, episodes]
    wall_clock_s: float | None = None
    dynamics_log: list[dict] | None = None  # LOOP's per-refit ensemble statistics (final model)
    planner_log: list[dict] | None = None  # LOOP's planner/* values per log dump (train.log)
    resumed_at_steps: list[int] = field(default_factory=list)  # steps of the checkpoints later sittings continued

    @property
    def returns(self) -> np.ndarray:
        """Return at each evaluation: the mean over its episodes."""
        return self.episode_returns.mean(axis=1) if len(self.episode_returns) else np.zeros(0)

    @property
    def last_step(self) -> int:
        return int(self.timesteps[-1]) if len(self.timesteps) else 0

    @property
    def status(self) -> str:
        return "done" if self.done else "incomplete"


def read_run_directory(seed_dir: Path, env: str, algo: str) -> RunResult | None:
    """The run in ``runs_dir/env/algo/seedK`` (finished or not), or None if it is not a run folder."""
    if not seed_dir.name[4:].isdigit():
        return None
    done = _read_json(seed_dir / DONE_FILE)
    info = {**(_read_json(seed_dir / RUN_FILE) or {}), **(done or {})}
    run = RunResult(
        algo=algo,
        seed=int(seed_dir.name[4:]),
        done=done is not None,
        steps=info.get("steps"),
        eval_freq=info.get("eval_freq"),
        eval_episodes=info.get("eval_episodes"),
        command=info.get("command"),
        resumed_at_steps=[int(entry["at_steps"]) for entry in info.get("resumed", [])],
    )
    if done is not None:
        run.wall_clock_s = float(done["wall_clock_s"])
        run.dynamics_log = saved_dynamics_log(saved_model_data(seed_dir, algo, env))
        run.planner_log = logged_planner_values(seed_dir / LOG_FILE)
    # a resumed launch starts its evaluations.npz with those of the checkpoint it continued from
    evaluations = [p / "evaluations.npz" for p in _zoo_run_folders(seed_dir, algo, env) if (p / "evaluations.npz").is_file()]
    if evaluations:
        try:
            with np.load(evaluations[-1]) as data:
                run.timesteps = np.asarray(data["timesteps"], dtype=np.int64)
                run.episode_returns = np.asarray(data["results"], dtype=np.float64)
        except (OSError, ValueError, KeyError, EOFError):  # being rewritten right now
            pass
    return run


def _algo_order(found: set[str]) -> list[str]:
    return [a for a in DEFAULT_ALGOS if a in found] + sorted(found - set(DEFAULT_ALGOS))


def load_runs(
    runs_dir: Path, env: str, algos: list[str] | None = None, results_dir: Path | None = None
) -> dict[str, list[RunResult]]:
    """Every run of ``env`` (finished or not), by algorithm: the run folders under ``runs_dir`` and, with
    ``results_dir``, the committed records of earlier sittings. Where both hold a run, the more complete
    one wins (finished over unfinished, then more evaluations)."""
    found: dict[tuple[str, int], RunResult] = {}
    env_dir = runs_dir / env
    if env_dir.is_dir():
        for algo_dir in (p for p in env_dir.iterdir() if p.is_dir()):
            for seed_dir in algo_dir.glob("seed*"):
                run = read_run_directory(seed_dir, env, algo_dir.name)
                if run is not None:
                    found[(run.algo, run.seed)] = run
    if results_dir is not None:
        for record in read_records(results_dir, env):
            current = found.get((record.algo, record.seed))
            if current is None or _completeness(record) > _completeness(current):
                found[(record.algo, record.seed)] = record
    selected = _algo_order({algo for algo, _ in found}) if algos is None else algos
    results: dict[str, list[RunResult]] = {}
    for (algo, _seed), run in sorted(found.items(), key=lambda item: item[0][1]):
        if algo in selected:
            results.setdefault(algo, []).append(run)
    return {algo: results[algo] for algo in selected if algo in results}


def _completeness(run: RunResult) -> tuple[bool, int]:
    return run.done, len(run.timesteps)


# --------------------------------------------------------------------- records (committed)
def record_path(results_dir: Path, env: str, algo: str, seed: int) -> Path:
    return results_dir / RECORDS_DIR / env / f"{algo}_seed{seed}.json"


def write_record(results_dir: Path, env: str, run: RunResult, stored: dict | None = None) -> Path:
    """Store a run's evaluations in a small JSON file under ``results_dir/runs`` (meant to be committed),
    so a comparison can be completed and reported over several sittings on fresh checkouts.

    :param stored: The record already in that file, if any; when only its ``recorded`` time would change,
        the file is left alone, so committed records do not churn.
    """
    path = record_path(results_dir, env, run.algo, run.seed)
    record = {
        "env": env, "algo": run.algo, "seed": run.seed, "status": run.status, "steps": run.steps,
        "eval_freq": run.eval_freq, "eval_episodes": run.eval_episodes, "wall_clock_s": run.wall_clock_s,
        "command": portable_command(run.command), "recorded": _now(), "timesteps": run.timesteps.tolist(),
        "episode_returns": run.episode_returns.tolist(),
    }  # fmt: skip
    if run.resumed_at_steps:  # optional fields only when set, so older records do not change
        record["resumed_at_steps"] = run.resumed_at_steps
    if run.dynamics_log is not None:
        record["dynamics_log"] = run.dynamics_log
    if run.planner_log:
        record["planner_log"] = run.planner_log
    if stored is not None and _content(stored) == _content(record):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(path, record)
    return path


def _content(record: dict) -> dict:
    """A record without its ``recorded`` time, through JSON so a new record compares as it would be stored."""
    return json.loads(json.dumps({key: value for key, value in record.items() if key != "recorded"}))


def portable_path(path: str | Path) -> str:
    """``path`` relative to the repository when it lies inside it, else as given (records name no machine path)."""
    absolute = Path(path).absolute()
    return str(absolute.relative_to(REPOSITORY)) if absolute.is_relative_to(REPOSITORY) else str(path)


def portable_command(command: list[str] | None) -> list[str] | None:
    """``command`` as it would be typed in the repository: ``python`` and repository-relative paths, so
    committed records name no machine-specific path."""
    if command is None:
        return None
    portable = []
    for argument in command:
        if argument == sys.executable or (Path(argument).name.startswith("python") and os.path.isabs(argument)):
            portable.append("python")
        elif os.path.isabs(argument):
            portable.append(portable_path(argument))
        else:
            portable.append(argument)
    return portable


def read_record(results_dir: Path, env: str, algo: str, seed: int) -> RunResult | None:
    data = _read_json(record_path(results_dir, env, algo, seed))
    return None if data is None else _record_to_run(data)


def read_records(results_dir: Path, env: str) -> list[RunResult]:
    directory = results_dir / RECORDS_DIR / env
    records = (_read_json(path) for path in sorted(directory.glob("*_seed*.json"))) if directory.is_dir() else ()
    return [_record_to_run(data) for data in records if data is not None]


def _record_to_run(data: dict) -> RunResult:
    returns = np.asarray(data.get("episode_returns") or [], dtype=np.float64)
    return RunResult(
        algo=data["algo"],
        seed=int(data["seed"]),
        done=data.get("status") == "done",
        steps=data.get("steps"),
        eval_freq=data.get("eval_freq"),
        eval_episodes=data.get("eval_episodes"),
        command=data.get("command"),
        timesteps=np.asarray(data.get("timesteps") or [], dtype=np.int64),
        episode_returns=returns.reshape(len(returns), -1),
        wall_clock_s=data.get("wall_clock_s"),
        dynamics_log=data.get("dynamics_log"),
        planner_log=data.get("planner_log"),
        resumed_at_steps=list(data.get("resumed_at_steps") or []),
    )


def export_record(results_dir: Path, env: str, run: RunResult) -> Path | None:
    """Write ``run``'s record if it has evaluations, unless the existing record is more complete (e.g. a
    finished run from an earlier sitting and a restarted folder); returns the path written, if any."""
    stored = _read_json(record_path(results_dir, env, run.algo, run.seed))
    if len(run.timesteps) and (stored is None or _completeness(run) >= _completeness(_record_to_run(stored))):
        return write_record(results_dir, env, run, stored)
    return None


def export_records(runs_dir: Path, results_dir: Path, env: str) -> list[Path]:
    """:func:`export_record` for each run folder of ``env``."""
    runs = (run for algo_runs in load_runs(runs_dir, env).values() for run in algo_runs)
    return [path for path in (export_record(results_dir, env, run) for run in runs) if path is not None]


def value_at(run: RunResult, step: int) -> float | None:
    """Evaluation return at ``step``: the last evaluation at or before it, if the run got there."""
    if len(run.timesteps) == 0 or run.last_step < step:
        return None
    index = np.searchsorted(run.timesteps, step, side="right") - 1
    return None if index < 0 else float(run.returns[index])


def steps_to_reach(run: RunResult, level: float) -> int | None:
    reached = np.nonzero(run.returns >= level)[0]
    return int(run.timesteps[reached[0]]) if len(reached) else None


def _mean_std(values: list[float], digits: int = 1) -> str:
    array = np.asarray(values, dtype=np.float64)
    return f"{array.mean():.{digits}f} ± {array.std():.{digits}f}"


def default_checkpoints(runs: dict[str, list[RunResult]], n: int = 4) -> list[int]:
    """``n`` evenly spaced steps up to the largest budget, on the evaluation grid."""
    all_runs = [r for rs in runs.values() for r in rs]
    budget = max((r.steps or r.last_step for r in all_runs), default=0)
    grid = min((r.eval_freq for r in all_runs if r.eval_freq), default=1)
    points = {int(budget * (i + 1) / n) // grid * grid for i in range(n)}
    return sorted(p for p in points if p > 0)


def write_report(
    env: str,
    runs: dict[str, list[RunResult]],
    results_dir: Path,
    levels: list[float],
    checkpoints: list[int] | None = None,
    command: str | None = None,
) -> tuple[Path, Path]:
    """Write ``compare_<env>.md`` and ``compare_<env>.png``; returns their paths."""
    results_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = checkpoints or default_checkpoints(runs)
    md_path = results_dir / f"compare_{env}.md"
    png_path = results_dir / f"compare_{env}.png"
    algos = list(runs)

    lines = [f"# {env}: {' vs '.join(a.upper() for a in algos) or 'no runs yet'}", ""]
    lines.append(f"Generated by `benchmarks/compare.py` on {_now()}.")
    if command:
        lines.append(f"Command: `{command}`")
    lines += [
        "",
        "Evaluation: the zoo's EvalCallback (deterministic actions; LOOP acts with its planner) on a separate env;",
        "a run's return at an evaluation is the mean over its evaluation episodes. Tables give mean ± std across",
        "seeds (population std) and, in parentheses, how many seeds contribute. Each run is one process with one",
        f"torch thread ({os.cpu_count()} CPUs on this machine); its wall-clock includes start-up and evaluations.",
        "",
        "## Runs",
        "",
        "| algo | seeds finished | incomplete | steps | wall-clock per run [s] | wall-clock per 1k steps [s] |",
        "|---|---|---|---|---|---|",
    ]
    for algo in algos:
        finished = [r for r in runs[algo] if r.done]
        incomplete = [r for r in runs[algo] if not r.done]
        steps = sorted({r.steps for r in runs[algo] if r.steps})
        clocks = [r.wall_clock_s for r in finished if r.wall_clock_s is not None]
        per_k = [r.wall_clock_s / r.steps * 1000 for r in finished if r.wall_clock_s is not None and r.steps]
        lines.append(
            f"| {algo} | {', '.join(str(r.seed) for r in finished) or '-'} "
            f"| {', '.join(f'{r.seed} (at {r.last_step} steps)' for r in incomplete) or '-'} "
            f"| {', '.join(map(str, steps)) or '?'} | {_mean_std(clocks, 0) if clocks else '-'} "
            f"| {_mean_std(per_k, 2) if per_k else '-'} |"
        )

    lines += ["", "## Evaluation return at checkpoints", ""]
    if checkpoints:
        lines.append("| algo | " + " | ".join(f"{c} steps" for c in checkpoints) + " |")
        lines.append("|---|" + "---|" * len(checkpoints))
        for algo in algos:
            cells = []
            for checkpoint in checkpoints:
                values = [v for v in (value_at(r, checkpoint) for r in runs[algo]) if v is not None]
                partial = any(not r.done and value_at(r, checkpoint) is not None for r in runs[algo])
                cells.append(f"{_mean_std(values)} ({len(values)}{'*' if partial else ''})" if values else "-")
            lines.append(f"| {algo} | " + " | ".join(cells) + " |")
        lines += ["", "`*`: includes incomplete runs. `-`: no run reached that step."]
    else:
        lines.append("No evaluations yet.")

    if levels:
        lines += [
            "",
            "## Env steps to reach a return level",
            "",
            "First evaluation whose return is at least the level; mean ± std over the seeds that reached it.",
            "",
        ]
        lines.append("| algo | " + " | ".join(f"return ≥ {level:g}" for level in levels) + " |")
        lines.append("|---|" + "---|" * len(levels))
        for algo in algos:
            cells = []
            for level in levels:
                reached = [s for s in (steps_to_reach(r, level) for r in runs[algo]) if s is not None]
                total = len(runs[algo])
                if reached:
                    cells.append(f"{_mean_std(reached, 0)} ({len(reached)}/{total} seeds)")
                else:
                    cells.append(f"not reached (0/{total} seeds)")
            lines.append(f"| {algo} | " + " | ".join(cells) + " |")

    lines += ["", "## Per run", "",
              "| algo | seed | status | last evaluation [steps] | final return | best return | wall-clock [s] |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for algo in algos:
        for r in runs[algo]:
            final = f"{r.returns[-1]:.1f}" if len(r.returns) else "-"
            best = f"{r.returns.max():.1f}" if len(r.returns) else "-"
            clock = f"{r.wall_clock_s:.0f}" if r.wall_clock_s is not None else "-"
            lines.append(f"| {algo} | {r.seed} | {r.status} | {r.last_step} | {final} | {best} | {clock} |")
    lines += ["", f"![learning curves]({png_path.name})", ""]
    notes = results_dir / NOTES_DIR / md_path.name
    if notes.is_file():  # hand-written: how the runs were made, what the figures mean
        lines += [notes.read_text().rstrip(), ""]

    tmp = md_path.with_name(md_path.name + f".tmp{os.getpid()}")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, md_path)
    _plot(env, runs, levels, png_path)
    return md_path, png_path


def _plot(env: str, runs: dict[str, list[RunResult]], levels: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for algo, algo_runs in runs.items():
        with_data = [r for r in algo_runs if len(r.timesteps)]
        if not with_data:
            continue
        steps = np.unique(np.concatenate([r.timesteps for r in with_data]))
        means, stds = [], []
        for step in steps:
            values = [r.returns[r.timesteps == step][0] for r in with_data if step in r.timesteps]
            means.append(np.mean(values))
            stds.append(np.std(values))
        means_array, stds_array = np.asarray(means), np.asarray(stds)
        n_incomplete = sum(not r.done for r in with_data)
        label = f"{algo} ({len(with_data)} seeds" + (f", {n_incomplete} incomplete)" if n_incomplete else ")")
        (line,) = axis.plot(steps, means_array, label=label, linewidth=2, marker="o", markersize=3)
        axis.fill_between(steps, means_array - stds_array, means_array + stds_array, alpha=0.2, color=line.get_color())
    for level in levels:
        axis.axhline(level, color="gray", linestyle=":", linewidth=1)
    axis.set_title(f"{env}: evaluation return (mean ± std over seeds)")
    axis.set_xlabel("env steps")
    axis.set_ylabel("evaluation return")
    axis.grid(alpha=0.3)
    if axis.lines:
        axis.legend()
    figure.tight_layout()
    tmp = path.with_name(path.stem + f".tmp{os.getpid()}.png")
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------- CLI
def _parse_per_algo(values: list[str], algos: list[str], cast=int) -> dict[str, object]:
    """``["loop=10000", "sac=20000"]`` or ``["10000"]`` (all algos) -> {algo: value}.

    Entries for algorithms that are not selected (e.g. ``sac=...`` with ``--only ENV loop SEED``) are
    ignored, so one command line can serve every run of a comparison.
    """
    result: dict[str, object] = {}
    for value in values:
        name, separator, raw = value.partition("=")
        if separator and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            if name in algos:
                result[name] = cast(raw)
        else:
            for algo in algos:
                result[algo] = cast(value)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=None, help="env ids (report-only: default all under --runs-dir)")
    parser.add_argument("--algos", nargs="+", default=None, help="default: loop sac td3 (report-only: all found)")
    parser.add_argument("--steps", nargs="+", default=[], help="ALGO=STEPS ... or one STEPS for all algos")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--eval-freq", type=int, default=1000)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--levels", nargs="+", type=float, default=[], help="return levels for steps-to-reach")
    parser.add_argument("--checkpoints", nargs="+", type=int, default=None, help="steps (default: 4 even points)")
    parser.add_argument("--extra", nargs="+", default=[], help='extra zoo arguments per algo: "loop=-params horizon:5"')
    parser.add_argument("--checkpoint-freq", type=int, default=None,
                        help="steps between a run's checkpoints (default: --eval-freq; 0: none, runs restart)")  # fmt: skip
    parser.add_argument("--only", nargs=3, metavar=("ENV", "ALGO", "SEED"), help="run this one (env, algo, seed)")
    parser.add_argument("--jobs", type=int, default=1, help="runs executed at the same time")
    parser.add_argument("--report-only", action="store_true", help="only regenerate markdown and PNG")
    parser.add_argument("--no-report", action="store_true", help="do not write markdown and PNG")
    parser.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR)
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    return parser.parse_args(argv)


def _env_folders(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.is_dir()} if directory.is_dir() else set()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python benchmarks/compare.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    report_algos = args.algos  # None: every algorithm found
    if args.only:
        env, algo, seed = args.only
        args.envs, args.algos, args.seeds = [env], [algo], [int(seed)]
        report_algos, command = None, None  # the report covers every run of the env
    args.algos = args.algos or list(DEFAULT_ALGOS)
    steps = _parse_per_algo(args.steps, args.algos)
    extra = _parse_per_algo(args.extra, args.algos, cast=shlex.split)
    status: list[str] = []

    if not args.report_only:
        if not args.envs:
            raise SystemExit("--envs is required (or use --only ENV ALGO SEED)")
        missing = [a for a in args.algos if a not in steps]
        if missing:
            raise SystemExit(f"--steps has no budget for {missing}: pass e.g. --steps {missing[0]}=10000")
        checkpoint_freq = args.eval_freq if args.checkpoint_freq is None else max(args.checkpoint_freq, 0)
        extras = {algo: tuple(extra.get(algo, ())) for algo in args.algos}
        specs = [
            RunSpec(env, algo, seed, int(steps[algo]), args.eval_freq, args.eval_episodes, extras[algo], checkpoint_freq)
            for env in args.envs
            for seed in args.seeds
            for algo in args.algos
        ]
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            status = list(pool.map(lambda spec: run_one(spec, args.runs_dir, args.results_dir), specs))

    if not args.no_report:
        envs = args.envs
        if not envs:
            envs = sorted(_env_folders(args.runs_dir) | _env_folders(args.results_dir / RECORDS_DIR))
        for env in envs:
            export_records(args.runs_dir, args.results_dir, env)
            runs = load_runs(args.runs_dir, env, report_algos, args.results_dir)
            md_path, png_path = write_report(env, runs, args.results_dir, args.levels, args.checkpoints, command)
            print(f"[report] {md_path} {png_path}", flush=True)
    return 1 if {"failed", "interrupted"} & set(status) else 0


if __name__ == "__main__":
    sys.exit(main())
