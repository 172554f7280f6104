"""The rl-zoo3 launcher (``python -m sb3_loop ...``), packaged hyperparameters, the LOOP Optuna sampler
and ``benchmarks/compare.py``.

The launcher runs are subprocesses started from a temporary directory (not the repository). They are
grouped in scenarios (a scenario is a chain of dependent commands, e.g. train -> enjoy -> plots ->
continue training) which start in the background, two at a time, when the module's first test runs;
each test then checks its scenario's outputs. Only the scenarios of the selected tests are started.
"""

from __future__ import annotations

import inspect
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml
from filelock import FileLock, Timeout

from sb3_loop import LOOP, zoo

REPO = Path(__file__).resolve().parents[1]
PACKAGED = REPO / "sb3_loop" / "hyperparams"
TOP_LEVEL = REPO / "hyperparams"
COMPARE = REPO / "benchmarks" / "compare.py"
ENVS = {"Pendulum-v1", "InvertedPendulum-v5", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5"}
TIMEOUT = 600
SAMPLED = {"horizon", "population_size", "num_particles", "kappa", "mixture_coef", "dynamics_train_freq", "learning_rate"}
PYTHON = shlex.quote(sys.executable)

# Tiny networks and planner for every launcher run (appended to the zoo's -params).
TINY_NETS = "ensemble_size:2 num_elites:1 dynamics_hidden_sizes:[16] dynamics_max_epochs:2 policy_kwargs:dict(net_arch=[16])"
TINY_LOOP = f"learning_starts:50 population_size:8 num_particles:2 planning_iterations:1 dynamics_train_freq:50 {TINY_NETS}"
TINY_SAC = "learning_starts:50 policy_kwargs:dict(net_arch=[16])"
# -optimize: the sampler chooses the planner's size, so keep episodes and budgets short instead.
TINY_OPTIMIZE = (
    "-n 60 --num-threads 1 -optimize --n-evaluations 1 --eval-episodes 1 --sampler random --pruner none "
    f"--no-optim-plots --env-kwargs max_episode_steps:20 -params learning_starts:40 planning_iterations:1 {TINY_NETS}"
)


# ------------------------------------------------------------------------------------ helpers
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(CI="1", MUJOCO_GL="egl", MPLBACKEND="Agg", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _output(result: subprocess.CompletedProcess) -> str:
    command = " ".join(map(str, result.args))
    return f"$ {command}\n--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}"


class StepFailed(Exception):
    pass


class Scenario:
    """A chain of commands run in ``cwd``; a failed command stops the chain."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.results: dict[str, subprocess.CompletedProcess] = {}
        self.seconds: dict[str, float] = {}

    def run(self, name: str, args: list[str], ok: bool = True) -> subprocess.CompletedProcess:
        start = time.perf_counter()
        result = subprocess.run(args, cwd=self.cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
        self.seconds[name] = time.perf_counter() - start
        self.results[name] = result
        if ok and result.returncode != 0:
            raise StepFailed(name)
        return result

    def launcher(self, name: str, command: str, ok: bool = True) -> subprocess.CompletedProcess:
        """Run ``python -m sb3_loop <command>`` (split like a shell would)."""
        return self.run(name, [sys.executable, "-m", "sb3_loop", *shlex.split(command)], ok=ok)

    def step(self, name: str) -> subprocess.CompletedProcess:
        """The successful result of step ``name`` (fails the test otherwise)."""
        if name not in self.results:
            failed = [n for n, r in self.results.items() if r.returncode != 0]
            detail = _output(self.results[failed[-1]]) if failed else "(no step failed?)"
            pytest.fail(f"step {name!r} did not run because {failed} failed:\n{detail}")
        result = self.results[name]
        assert result.returncode == 0, _output(result)
        return result

    def to_json(self) -> dict:
        return {
            "cwd": str(self.cwd),
            "seconds": self.seconds,
            "results": {n: [r.args, r.returncode, r.stdout, r.stderr] for n, r in self.results.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> Scenario:
        run = cls(Path(data["cwd"]))
        run.seconds = data["seconds"]
        run.results = {n: subprocess.CompletedProcess(*values) for n, values in data["results"].items()}
        return run


SCENARIOS: dict[str, Callable[[Scenario], None]] = {}


def scenario(function: Callable[[Scenario], None]) -> Callable[[Scenario], None]:
    SCENARIOS[function.__name__] = function
    return function


def uses(*names: str) -> Callable:
    """Mark a test as needing these scenarios (so only the selected tests' scenarios start)."""

    def mark(function: Callable) -> Callable:
        function.zoo_scenarios = names
        return function

    return mark


class ScenarioStore:
    """
    Runs each scenario once per pytest session, also under pytest-xdist: the first process to take a
    scenario's file lock runs it and records the outputs; every other caller reads the record.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def get(self, name: str, wait: bool = True) -> Scenario | None:
        directory = self.root / name
        record = self.root / f"{name}.json"
        lock = FileLock(self.root / f"{name}.lock")
        try:
            lock.acquire(timeout=-1 if wait else 0)
        except Timeout:
            return None
        try:
            if not record.exists():
                (directory / "work").mkdir(parents=True, exist_ok=True)
                run = Scenario(directory / "work")
                try:
                    SCENARIOS[name](run)
                except StepFailed:
                    pass
                except Exception as error:  # reported by the tests that need it
                    run.results["error"] = subprocess.CompletedProcess([name], 1, "", repr(error))
                record.write_text(json.dumps(run.to_json()))
            return Scenario.from_json(json.loads(record.read_text()))
        finally:
            lock.release()


@pytest.fixture(scope="module", autouse=True)
def zoo_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Start the scenarios of the selected tests in the background (two at a time, one per xdist worker)."""
    xdist_worker = os.environ.get("PYTEST_XDIST_WORKER")
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if xdist_worker else base) / "zoo_scenarios"
    root.mkdir(parents=True, exist_ok=True)
    store = ScenarioStore(root)
    needed = {name for item in request.session.items for name in getattr(item.function, "zoo_scenarios", ())}
    pool = ThreadPoolExecutor(max_workers=1 if xdist_worker else 2, thread_name_prefix="zoo-scenario")
    for name in SCENARIOS:  # in definition order: the longest first
        if name in needed:
            pool.submit(store.get, name, False)
    yield store
    pool.shutdown(wait=True, cancel_futures=True)


def _scenario(zoo_runs: ScenarioStore, name: str) -> Scenario:
    run = zoo_runs.get(name)
    assert run is not None
    return run


# ---------------------------------------------------------------------------------- scenarios
@scenario
def compare(run: Scenario) -> None:
    command = (
        f"{PYTHON} {shlex.quote(str(COMPARE))} --envs Pendulum-v1 --algos loop sac --steps loop=300 sac=300 --seeds 0 "
        "--eval-freq 100 --eval-episodes 1 --levels -1500 0 --runs-dir runs --results-dir results --jobs 2"
    )
    extra = ["--extra", f"loop=-params {TINY_LOOP}", f"sac=-params {TINY_SAC}"]
    run.run("first", [*shlex.split(command), *extra])
    shutil.copy(run.cwd / "results" / "compare_Pendulum-v1.md", run.cwd / "first.md")
    run.run("again", [*shlex.split(command), *extra])
    shutil.copytree(run.cwd / "results" / "runs", run.cwd / "first_records")
    # an unfinished sac run: no done.json, no finished record
    (run.cwd / "runs" / "Pendulum-v1" / "sac" / "seed0" / "done.json").unlink()
    (run.cwd / "results" / "runs" / "Pendulum-v1" / "sac_seed0.json").unlink()
    report = f"{PYTHON} {shlex.quote(str(COMPARE))} --report-only --runs-dir runs --results-dir results --levels -1500"
    (run.cwd / "results" / "notes").mkdir()
    (run.cwd / "results" / "notes" / "compare_Pendulum-v1.md").write_text("## How these runs were made\n\nBy a test.\n")
    run.run("report", shlex.split(report))
    shutil.copy(run.cwd / "results" / "compare_Pendulum-v1.md", run.cwd / "report.md")
    # a later sitting on a fresh checkout: only the committed records are left
    shutil.move(run.cwd / "runs", run.cwd / "old_runs")
    run.run("fresh_report", shlex.split(report))
    shutil.copy(run.cwd / "results" / "compare_Pendulum-v1.md", run.cwd / "fresh.md")
    run.run("fresh_again", [*shlex.split(command.replace("--algos loop sac", "--algos loop")), *extra])


@scenario
def loop_pendulum(run: Scenario) -> None:
    common = "--algo loop --env Pendulum-v1 --num-threads 1"
    run.launcher(
        "train",
        f"train {common} -n 200 --seed 0 --eval-freq 100 --eval-episodes 2 --save-freq 100 --save-replay-buffer "
        f"--log-folder logs -params {TINY_LOOP}",
    )
    run.launcher("enjoy", f"enjoy {common} -f logs --no-render -n 210")
    run.launcher(
        "plots", "plots all_plots -a loop -e Pendulum-v1 -f logs --no-display --no-million -o results --figure-dir plots"
    )
    run.launcher(
        "continue",
        f"train {common} -n 100 --seed 1 -i logs/loop/Pendulum-v1_1/Pendulum-v1.zip --eval-freq -1 --save-replay-buffer "
        f"--log-folder logs -params {TINY_LOOP}",
    )


@scenario
def shared_storage(run: Scenario) -> None:
    """Two workers started at the same time on one Optuna journal file."""
    processes = []
    for worker in (0, 1):
        command = (
            f"{PYTHON} -m sb3_loop train --algo loop --env Pendulum-v1 --seed {worker} --log-folder worker{worker} "
            f"--n-trials 1 --storage optuna/loop.log --study-name loop-shared {TINY_OPTIMIZE}"
        )
        processes.append(
            subprocess.Popen(
                shlex.split(command), cwd=run.cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    for worker, process in enumerate(processes):
        stdout, stderr = process.communicate(timeout=TIMEOUT)
        run.results[f"worker{worker}"] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@scenario
def yaml_entries(run: Scenario) -> None:
    (run.cwd / "zoo_test_helpers.py").write_text(HELPERS)
    checkpoint = {"save_freq": 50, "save_path": "checkpoints", "name_prefix": "yaml"}
    conf = {
        "InvertedPendulum-v5": {
            "n_timesteps": 150,
            "policy": "MlpPolicy",
            **{key: yaml.safe_load(value) for key, value in (item.split(":", 1) for item in TINY_LOOP.split())},
            "policy_kwargs": "dict(net_arch=[16])",
            "env_wrapper": [{"zoo_test_helpers.MarkerWrapper": {"tag": "from-yaml"}}],
            "callback": [
                {"stable_baselines3.common.callbacks.CheckpointCallback": checkpoint},
                {"zoo_test_helpers.RecordCallback": {"path": "callback.json"}},
            ],
        }
    }
    (run.cwd / "conf.yml").write_text(yaml.safe_dump(conf))
    common = "--algo loop --env InvertedPendulum-v5"
    run.launcher("train", f"train {common} --conf-file conf.yml --seed 0 --eval-freq -1 --num-threads 1 --log-folder logs")
    run.launcher("record_video", f"record_video {common} -f logs -n 40 -o videos", ok=False)


@scenario
def optimize(run: Scenario) -> None:
    run.launcher("optimize", f"train --algo loop --env Pendulum-v1 --seed 0 --log-folder logs --n-trials 2 {TINY_OPTIMIZE}")


@scenario
def sac_pendulum(run: Scenario) -> None:
    common = "--algo sac --env Pendulum-v1 --num-threads 1"
    run.launcher("train", f"train {common} -n 200 --seed 0 --eval-freq -1 --log-folder logs -params {TINY_SAC}")
    run.launcher("enjoy", f"enjoy {common} -f logs --no-render -n 210")


HELPERS = """
import json

import gymnasium as gym
from stable_baselines3.common.callbacks import BaseCallback


class MarkerWrapper(gym.Wrapper):
    def __init__(self, env, tag="none"):
        super().__init__(env)
        self.tag = tag


class RecordCallback(BaseCallback):
    def __init__(self, path):
        super().__init__()
        self.path = path

    def _on_step(self):
        return True

    def _on_training_end(self):
        env = self.training_env
        record = {
            "algorithm": type(self.model).__name__,
            "calls": self.n_calls,
            "num_timesteps": self.num_timesteps,
            "wrapped": [bool(w) for w in env.env_is_wrapped(MarkerWrapper)],
            "tags": env.env_method("get_wrapper_attr", "tag"),
        }
        with open(self.path, "w") as file:
            json.dump(record, file)
"""


# ------------------------------------------------------------------ no subprocess: quick checks
def test_top_level_hyperparams_are_copies_of_packaged_ones():
    packaged = sorted(p.name for p in PACKAGED.glob("*.yml"))
    assert packaged == sorted(p.name for p in TOP_LEVEL.glob("*.yml")) == [
        "crr.yml", "loop.yml", "offline_loop.yml", "sac.yml", "sac_as_loop.yml", "sac_lag.yml", "safe_loop.yml",
        "td3.yml", "td3bc.yml",
    ]  # fmt: skip
    for name in packaged:
        assert (PACKAGED / name).read_bytes() == (TOP_LEVEL / name).read_bytes(), (
            f"hyperparams/{name} differs from sb3_loop/hyperparams/{name}: copy the package's file over it"
        )


def test_hyperparams_files_cover_the_envs_and_name_real_arguments():
    loop_arguments = set(inspect.signature(LOOP.__init__).parameters)
    for algo in ("loop", "sac", "td3"):
        entries = yaml.safe_load((PACKAGED / f"{algo}.yml").read_text())
        assert set(entries) == ENVS, algo
        for env_id, entry in entries.items():
            assert entry["policy"] == "MlpPolicy" and entry["n_timesteps"] > 0, (algo, env_id)
    for env_id, entry in yaml.safe_load((PACKAGED / "loop.yml").read_text()).items():
        assert set(entry) - {"n_timesteps"} <= loop_arguments, env_id
        assert entry["learning_starts"] <= 1000


def test_default_conf_file_rules():
    loop_yml, sac_yml = str(zoo.hyperparams_path("loop")), str(zoo.hyperparams_path("sac"))
    add = zoo.with_default_conf_file
    assert add(["--algo", "loop", "--env", "Hopper-v5"]) == ["--algo", "loop", "--env", "Hopper-v5", "--conf-file", loop_yml]
    # our algorithm, env not in our file: still our file (the zoo then names it in its error)
    assert add(["--algo", "loop", "--env", "Swimmer-v5"])[-1] == loop_yml
    # stock algorithm: ours only for the envs we list
    assert add(["--algo=sac", "--env=HalfCheetah-v5"])[-2:] == ["--conf-file", sac_yml]
    assert add(["--algo", "sac", "--env", "HalfCheetah-v4"]) == ["--algo", "sac", "--env", "HalfCheetah-v4"]
    assert add(["--algo", "ppo", "--env", "CartPole-v1"]) == ["--algo", "ppo", "--env", "CartPole-v1"]
    assert add(["--env", "Pendulum-v1"]) == ["--env", "Pendulum-v1"]  # the zoo's default algo is ppo
    # an explicit conf file always wins, in every spelling argparse accepts
    for conf in (["--conf-file", "my.yml"], ["-conf", "my.yml"], ["--conf-file=my.yml"], ["--conf", "my.yml"]):
        argv = ["--algo", "loop", "--env", "Hopper-v5", *conf]
        assert add(argv) == argv
    assert add(["--algo", "loop", "-h"]) == ["--algo", "loop", "-h"]


def test_register_algorithms_fills_the_zoo_tables():
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER
    from rl_zoo3.utils import ALGOS

    zoo.register_algorithms()
    assert ALGOS["loop"] is LOOP
    assert HYPERPARAMS_SAMPLER["loop"] is zoo.sample_loop_params
    assert HYPERPARAMS_CONVERTER["loop"]({"horizon": 4}) == {"horizon": 4}
    assert ALGOS["sac"].__name__ == "SAC"  # stock entries untouched
    zoo.register_algorithms(for_inference=True)
    try:
        assert issubclass(ALGOS["loop"], LOOP) and ALGOS["loop"] is not LOOP
    finally:
        zoo.register_algorithms()


def test_inference_class_loads_with_a_tiny_buffer(tmp_path):
    model = LOOP(
        "MlpPolicy",
        "Pendulum-v1",
        learning_starts=10,
        population_size=8,
        num_particles=1,
        planning_iterations=1,
        ensemble_size=2,
        num_elites=1,
        dynamics_hidden_sizes=[8],
        dynamics_max_epochs=1,
        policy_kwargs=dict(net_arch=[8]),
        seed=0,
    )
    model.learn(20)
    model.save(tmp_path / "model")
    loaded = zoo._inference_class(LOOP).load(tmp_path / "model.zip", seed=0)
    assert isinstance(loaded, LOOP) and loaded.replay_buffer.buffer_size == 1
    assert loaded.policy.dynamics.is_trained
    action, _ = loaded.predict(np.zeros(3, dtype=np.float32), deterministic=True)
    assert action.shape == (1,) and np.all(np.abs(action) <= 2.0)


def test_loop_sampler_gives_valid_loop_arguments():
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    arguments = set(inspect.signature(LOOP.__init__).parameters)
    for _ in range(8):
        trial = study.ask()
        params = zoo.sample_loop_params(trial, n_actions=1, n_envs=1, additional_args={})
        assert set(params) == SAMPLED and SAMPLED <= arguments
        assert zoo.convert_sampled_params(trial.params) == params
        LOOP("MlpPolicy", "Pendulum-v1", **params, _init_setup_model=False)  # the constructor validates them
        study.tell(trial, 0.0)


def test_launcher_usage_and_unknown_command(capsys):
    zoo.main([])
    assert "python -m sb3_loop" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown command"):
        zoo.main(["fly"])


def test_wheel_ships_the_hyperparameters(tmp_path):
    """A regular (non-editable) install finds the YAML files next to ``sb3_loop/zoo.py``."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.py", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "sb3_loop", source / "sb3_loop", ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", "dist", "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, _output(result)
    (wheel,) = (source / "dist").glob("sb3_loop-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"sb3_loop/zoo.py", "sb3_loop/__main__.py"} <= names
    assert {f"sb3_loop/hyperparams/{algo}.yml" for algo in ("loop", "sac", "td3")} <= names


# --------------------------------------------------------------------- launcher: LOOP scenario
@uses("loop_pendulum")
def test_loop_train_uses_packaged_hyperparams_from_any_cwd(zoo_runs):
    run = _scenario(zoo_runs, "loop_pendulum")
    result = run.step("train")
    assert run.cwd != REPO and not (run.cwd / "hyperparams").exists()
    assert f"Loading hyperparameters from: {zoo.hyperparams_path('loop')}" in result.stdout
    log = run.cwd / "logs" / "loop" / "Pendulum-v1_1"
    config = yaml.unsafe_load((log / "Pendulum-v1" / "config.yml").read_text())
    assert dict(config)["n_timesteps"] == 20000  # from loop.yml; -n overrode the budget only
    assert dict(config)["population_size"] == 8  # from -params
    # --eval-freq: the zoo's EvalCallback evaluated the planner every 100 steps
    with np.load(log / "evaluations.npz") as evaluations:
        assert evaluations["timesteps"].tolist() == [100, 200]
        assert evaluations["results"].shape == (2, 2)
    assert (log / "best_model.zip").is_file() and (log / "rl_model_100_steps.zip").is_file()
    model = LOOP.load(log / "Pendulum-v1.zip", device="cpu")
    assert model.num_timesteps == 200
    assert model.policy.arc_config.population_size == 8 and model.policy.arc_config.iterations == 1
    assert model.policy.dynamics.is_trained


@uses("loop_pendulum")
def test_loop_enjoy_no_render(zoo_runs):
    result = _scenario(zoo_runs, "loop_pendulum").step("enjoy")
    assert "Loading logs/loop/Pendulum-v1_1/Pendulum-v1.zip" in result.stdout
    assert "1 Episodes" in result.stdout and "Mean reward:" in result.stdout


@uses("loop_pendulum")
def test_zoo_plots_of_loop_results(zoo_runs):
    run = _scenario(zoo_runs, "loop_pendulum")
    result = run.step("plots")
    table = [line for line in result.stdout.splitlines() if line.startswith("|") and "Pendulum-v1" in line]
    assert "LOOP" in result.stdout and len(table) == 1 and "+/-" in table[0]  # the zoo's markdown results table
    assert (run.cwd / "results.pkl").is_file()
    figure = run.cwd / "plots" / "all_plots_Results_Pendulum-v1.png"
    assert figure.is_file() and figure.stat().st_size > 1000


@uses("loop_pendulum")
def test_loop_continue_training_with_i(zoo_runs):
    run = _scenario(zoo_runs, "loop_pendulum")
    result = run.step("continue")
    assert "Loading pretrained agent" in result.stdout and "Loading replay buffer" in result.stdout
    log = run.cwd / "logs" / "loop" / "Pendulum-v1_2"
    model = LOOP.load(log / "Pendulum-v1.zip", device="cpu")
    model.load_replay_buffer(log / "replay_buffer.pkl")
    assert model.replay_buffer.size() == 300  # 200 transitions of the first run + 100 new ones
    assert model.policy.arc_config.population_size == 8


# ------------------------------------------------------------------------ launcher: stock SAC
@uses("sac_pendulum")
def test_stock_sac_train_and_enjoy_through_launcher(zoo_runs):
    run = _scenario(zoo_runs, "sac_pendulum")
    train = run.step("train")
    assert f"Loading hyperparameters from: {zoo.hyperparams_path('sac')}" in train.stdout
    from stable_baselines3 import SAC

    model = SAC.load(run.cwd / "logs" / "sac" / "Pendulum-v1_1" / "Pendulum-v1.zip", device="cpu")
    assert type(model) is SAC and model.num_timesteps == 200
    enjoy = run.step("enjoy")
    assert "Mean reward:" in enjoy.stdout


# ------------------------------------------------------------ YAML callback / env_wrapper, video
@uses("yaml_entries")
def test_yaml_callback_and_env_wrapper_with_loop(zoo_runs):
    run = _scenario(zoo_runs, "yaml_entries")
    result = run.step("train")
    assert "Loading hyperparameters from: conf.yml" in result.stdout
    record = json.loads((run.cwd / "callback.json").read_text())
    assert record == {"algorithm": "LOOP", "calls": 150, "num_timesteps": 150, "wrapped": [True], "tags": ["from-yaml"]}
    assert sorted(p.name for p in (run.cwd / "checkpoints").iterdir()) == [
        "yaml_100_steps.zip",
        "yaml_150_steps.zip",
        "yaml_50_steps.zip",
    ]


@uses("yaml_entries")
def test_record_video_with_egl(zoo_runs):
    run = _scenario(zoo_runs, "yaml_entries")
    run.step("train")
    result = run.results["record_video"]
    if result.returncode != 0 and "EGL" in result.stdout + result.stderr:
        pytest.skip(f"EGL rendering is not available here:\n{result.stderr[-2000:]}")
    assert result.returncode == 0, _output(result)
    videos = list((run.cwd / "videos").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000, videos


# ------------------------------------------------------------------------------- optimisation
@uses("optimize")
def test_optimize_two_trials_with_loop_sampler(zoo_runs):
    run = _scenario(zoo_runs, "optimize")
    result = run.step("optimize")
    assert "Number of finished trials:  2" in result.stdout
    reports = list((run.cwd / "logs" / "loop").glob("report_Pendulum-v1_2-trials-60-random-none_*.csv"))
    assert len(reports) == 1
    import pandas as pd

    trials = pd.read_csv(reports[0])
    assert (trials["state"] == "COMPLETE").sum() == 2
    sampled = {c[len("params_") :] for c in trials.columns if c.startswith("params_")}
    assert sampled == SAMPLED


@uses("shared_storage")
def test_two_workers_share_one_journal_storage(zoo_runs):
    import optuna

    run = _scenario(zoo_runs, "shared_storage")
    for worker in (0, 1):
        assert run.step(f"worker{worker}").returncode == 0
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(run.cwd / "optuna/loop.log")))
    study = optuna.load_study(study_name="loop-shared", storage=storage)
    complete = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert len(complete) == 2
    assert sorted(t.number for t in complete) == [0, 1]
    assert complete[0].params != complete[1].params  # the workers were seeded differently
    # each worker ran one trial in the shared study: the second saw the first's trial too
    outputs = [run.results[f"worker{w}"].stdout for w in (0, 1)]
    assert sorted(int(o.split("Number of finished trials:")[1].split()[0]) for o in outputs)[-1] == 2


# -------------------------------------------------------------------------- compare benchmark
@uses("compare")
def test_compare_writes_report_and_skips_finished_runs(zoo_runs):
    run = _scenario(zoo_runs, "compare")
    first = run.step("first")
    assert "[done] Pendulum-v1 loop seed0" in first.stdout and "[done] Pendulum-v1 sac seed0" in first.stdout
    markdown = (run.cwd / "first.md").read_text()
    png = run.cwd / "results" / "compare_Pendulum-v1.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 100 steps | 200 steps | 300 steps |" in markdown
    assert "| loop | 0 | done | 300 |" in markdown and "| sac | 0 | done | 300 |" in markdown
    assert "return ≥ -1500" in markdown and "not reached (0/1 seeds)" in markdown  # level 0: never on Pendulum
    for algo in ("loop", "sac"):
        directory = run.cwd / "old_runs" / "Pendulum-v1" / algo / "seed0"  # moved away by the scenario's end
        assert (directory / algo / "Pendulum-v1_1" / "evaluations.npz").is_file()
        assert (directory / "train.log").is_file() and (directory / "run.json").is_file()
    done = json.loads((run.cwd / "old_runs" / "Pendulum-v1" / "loop" / "seed0" / "done.json").read_text())
    assert done["wall_clock_s"] > 0 and done["steps"] == 300

    again = run.step("again")
    assert "[skip] Pendulum-v1 loop seed0: finished" in again.stdout
    assert "[skip] Pendulum-v1 sac seed0: finished" in again.stdout
    assert "[run]" not in again.stdout and run.seconds["again"] < run.seconds["first"] / 2

    report = run.step("report")
    assert "[run]" not in report.stdout

    # committed records: one small JSON per run, with portable commands
    for algo in ("loop", "sac"):
        text = (run.cwd / "first_records" / "Pendulum-v1" / f"{algo}_seed0.json").read_text()
        record = json.loads(text)
        assert record["status"] == "done" and record["steps"] == 300 and record["wall_clock_s"] > 0
        assert record["timesteps"] == [100, 200, 300] and np.shape(record["episode_returns"]) == (3, 1)
        assert record["command"][:4] == ["python", "-m", "sb3_loop", "train"]
        assert str(run.cwd) not in text and sys.executable not in text
    unfinished = json.loads((run.cwd / "results" / "runs" / "Pendulum-v1" / "sac_seed0.json").read_text())
    assert unfinished["status"] == "incomplete" and unfinished["timesteps"] == [100, 200, 300]

    # the report from the run folders and the one from the records alone agree
    markdown = (run.cwd / "fresh.md").read_text()
    assert "| sac | 0 | incomplete | 300 |" in markdown and "(1*)" in markdown
    assert "| loop | 0 | done | 300 |" in markdown
    from_folders = (run.cwd / "report.md").read_text()
    assert from_folders.endswith("![learning curves](compare_Pendulum-v1.png)\n\n## How these runs were made\n\nBy a test.\n")
    assert from_folders[from_folders.index("## Runs") :] == markdown[markdown.index("## Runs") :]
    fresh_again = run.step("fresh_again")
    assert "[skip] Pendulum-v1 loop seed0: finished in an earlier sitting" in fresh_again.stdout
    assert "[run]" not in fresh_again.stdout and not (run.cwd / "runs" / "Pendulum-v1" / "loop").exists()
    # reports rewrote no unchanged record (not even its timestamp), so committed records do not churn
    loop_record = Path("Pendulum-v1") / "loop_seed0.json"
    assert (run.cwd / "results" / "runs" / loop_record).read_text() == (run.cwd / "first_records" / loop_record).read_text()
