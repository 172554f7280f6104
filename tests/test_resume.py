"""Runs longer than a sitting: the launcher's ``--checkpoint-dir`` (``sb3_loop.resume``) and
``benchmarks/compare.py`` continuing a killed run from its latest checkpoint."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import pickle
import shlex
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from stable_baselines3 import SAC

from sb3_loop import zoo
from sb3_loop.resume import (
    RunCheckpointCallback,
    latest_checkpoint,
    load_replay_buffer_rows,
    read_checkpoint_state,
    save_replay_buffer_rows,
)

REPO = Path(__file__).resolve().parents[1]
COMPARE = REPO / "benchmarks" / "compare.py"
TINY_NET = "policy_kwargs:dict(net_arch=[16])"
TINY = {
    "loop": "learning_starts:50 population_size:8 num_particles:2 planning_iterations:1 dynamics_train_freq:50 "
    f"ensemble_size:2 num_elites:1 dynamics_hidden_sizes:[16] dynamics_max_epochs:2 {TINY_NET}",
    "sac": f"learning_starts:50 {TINY_NET}",
    "td3": f"learning_starts:50 {TINY_NET}",
}
SHORT_EPISODES = "--env-kwargs max_episode_steps:50"  # cheap evaluations


def _load_compare():
    spec = importlib.util.spec_from_file_location("compare_under_test", COMPARE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


compare = _load_compare()


class SimulatedKill(Exception):
    pass


def _train(monkeypatch: pytest.MonkeyPatch, arguments: str) -> None:
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # the launcher rewrites it for the zoo
    zoo.main(["train", *shlex.split(arguments)])


def _evaluations(folder: Path) -> tuple[list[int], np.ndarray]:
    with np.load(folder / "evaluations.npz") as data:
        return data["timesteps"].tolist(), data["results"]


# ------------------------------------------------------------------------------ replay buffer
def test_replay_buffer_rows_round_trip(tmp_path):
    model = SAC("MlpPolicy", "Pendulum-v1", buffer_size=100, learning_starts=1000, seed=0)
    model.learn(60)
    path = tmp_path / "rows.pkl"
    save_replay_buffer_rows(model.replay_buffer, path)
    model.save_replay_buffer(tmp_path / "whole.pkl")
    assert path.stat().st_size < 0.75 * (tmp_path / "whole.pkl").stat().st_size  # 60 of 100 rows
    loaded = SAC("MlpPolicy", "Pendulum-v1", buffer_size=100, learning_starts=1000, seed=1)
    buffer = load_replay_buffer_rows(loaded, path)
    assert loaded.replay_buffer is buffer and buffer.pos == 60 and not buffer.full
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        assert np.array_equal(getattr(buffer, name), getattr(model.replay_buffer, name)), name
    loaded.learn(60, reset_num_timesteps=False)  # it wraps around: the rows are all there again
    assert buffer.full and buffer.pos == 20 and buffer.observations.shape[0] == 100

    save_replay_buffer_rows(buffer, path)  # full: every row
    again = load_replay_buffer_rows(SAC("MlpPolicy", "Pendulum-v1", buffer_size=100, seed=2), path)
    assert again.full and again.pos == 20 and np.array_equal(again.observations, buffer.observations)


def test_checkpoint_options_are_taken_out_of_the_zoo_arguments():
    argv = ["--algo", "sac", "-params", "gamma:0.9", "--checkpoint-dir", "ck", "--eval-freq", "5", "--checkpoint-freq=3"]
    options, rest = zoo.split_checkpoint_options(argv, start_time=1.0)
    assert rest == ["--algo", "sac", "-params", "gamma:0.9", "--eval-freq", "5"]
    assert (options.directory, options.freq, options.argv, options.start_time) == (Path("ck"), 3, tuple(rest), 1.0)
    assert zoo.split_checkpoint_options(["--algo", "sac"]) == (None, ["--algo", "sac"])
    with pytest.raises(SystemExit):
        zoo.split_checkpoint_options(["--checkpoint-freq", "3"])  # without --checkpoint-dir
    with pytest.raises(SystemExit):
        zoo.split_checkpoint_options(["--checkpoint-dir", "ck", "--checkpoint-freq", "0"])


# --------------------------------------------------------------------------- launcher resume
@pytest.mark.parametrize("algo", ["loop", "sac", "td3"])
def test_launcher_continues_a_killed_run_from_its_checkpoint(algo, tmp_path, monkeypatch, capsys):
    logs, checkpoints = tmp_path / "logs", tmp_path / "checkpoints"
    arguments = (
        f"--algo {algo} --env Pendulum-v1 -n 300 --seed 0 --eval-freq 100 --eval-episodes 1 --num-threads 1 "
        f"--log-folder {logs} --checkpoint-dir {checkpoints} --save-replay-buffer {SHORT_EPISODES} -params {TINY[algo]}"
    )
    save = RunCheckpointCallback._on_step

    def killed_at_250(callback: RunCheckpointCallback) -> bool:
        result = save(callback)
        if callback.num_timesteps == 250:
            raise SimulatedKill  # after the checkpoint at 200: 50 steps are lost
        return result

    monkeypatch.setattr(RunCheckpointCallback, "_on_step", killed_at_250)
    with pytest.raises(SimulatedKill):
        _train(monkeypatch, arguments)
    assert [p.name for p in checkpoints.iterdir()] == ["steps_200"]
    first_steps, first_returns = _evaluations(logs / algo / "Pendulum-v1_1")
    assert first_steps == [100, 200] and not (logs / algo / "Pendulum-v1_1" / "Pendulum-v1.zip").exists()

    monkeypatch.setattr(RunCheckpointCallback, "_on_step", save)
    capsys.readouterr()
    _train(monkeypatch, arguments)
    assert f"Resuming from checkpoint {checkpoints / 'steps_200'} at 200 steps, 100 steps left" in capsys.readouterr().out
    folder = logs / algo / "Pendulum-v1_2"
    steps, returns = _evaluations(folder)
    assert steps == [100, 200, 300] and np.array_equal(returns[:2], first_returns)
    model = zoo._import_object("rl_zoo3.utils:ALGOS")[algo].load(folder / "Pendulum-v1.zip", device="cpu")
    assert model.num_timesteps == 300
    model.load_replay_buffer(folder / "replay_buffer.pkl")
    assert model.replay_buffer.size() == 300  # 200 from the checkpoint, then the 100 steps left
    if algo == "loop":  # refits every 50 steps across the resume: _last_dynamics_train survived it
        assert [entry["num_timesteps"] for entry in model.dynamics_log] == list(range(50, 301, 50))
    assert latest_checkpoint(checkpoints).name == "steps_200"  # the next rollout would have written steps_300

    with pytest.raises(SystemExit, match=r"other arguments \('300' then, '400' now\)"):
        _train(monkeypatch, arguments.replace("-n 300", "-n 400"))


def test_launcher_refuses_a_checkpoint_of_other_hyperparameters(tmp_path, monkeypatch):
    conf = tmp_path / "sac.yml"
    conf.write_text("Pendulum-v1:\n  n_timesteps: 150\n  policy: MlpPolicy\n  learning_starts: 50\n  learning_rate: 0.001\n")
    arguments = (
        f"--algo sac --env Pendulum-v1 --conf-file {conf} --seed 0 --eval-freq -1 --num-threads 1 "
        f"--log-folder {tmp_path / 'logs'} --checkpoint-dir {tmp_path / 'checkpoints'} --checkpoint-freq 100"
    )
    _train(monkeypatch, arguments)
    assert latest_checkpoint(tmp_path / "checkpoints").name == "steps_100"
    conf.write_text(conf.read_text().replace("0.001", "0.0003"))
    with pytest.raises(SystemExit, match=r"other hyperparameters \(learning_rate: 0.001 then, 0.0003 now\)"):
        _train(monkeypatch, arguments)


# ---------------------------------------------------------------------------- compare.py
def test_compare_resumes_a_run_killed_after_a_checkpoint(tmp_path):
    """SIGKILL compare.py and its launcher after the checkpoint at 200 steps, repeat the command: the run
    continues from the checkpoint and its record is that of one run from step 0 to 400."""
    command = [
        sys.executable, str(COMPARE), "--only", "Pendulum-v1", "loop", "0", "--steps", "loop=400",
        "--eval-freq", "100", "--eval-episodes", "1", "--runs-dir", "runs", "--results-dir", "results", "--no-report",
        "--extra", f"loop=--save-replay-buffer {SHORT_EPISODES} -params {TINY['loop']}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    seed_dir = tmp_path / "runs" / "Pendulum-v1" / "loop" / "seed0"
    with open(tmp_path / "first.out", "w") as out:
        first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while first.poll() is None and time.monotonic() < deadline:
                checkpoint = latest_checkpoint(seed_dir / "checkpoint")
                if checkpoint is not None and read_checkpoint_state(checkpoint)["num_timesteps"] >= 200:
                    break
                time.sleep(0.2)
        finally:
            os.killpg(first.pid, signal.SIGKILL)  # compare.py and the launcher
            first.wait()
    assert first.returncode == -signal.SIGKILL, (tmp_path / "first.out").read_text()
    assert not (seed_dir / "done.json").exists()
    state = read_checkpoint_state(latest_checkpoint(seed_dir / "checkpoint"))
    killed_at, before = state["num_timesteps"], state["evaluations"]
    assert 200 <= killed_at < 400 and before["timesteps"] == list(range(100, killed_at + 1, 100))

    start = time.perf_counter()
    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    sitting = time.perf_counter() - start
    assert second.returncode == 0, second.stdout + second.stderr
    assert (
        f"[resume] Pendulum-v1 loop seed0: unfinished run found, continuing from its checkpoint at {killed_at} steps"
        in second.stdout
    )
    assert "[done] Pendulum-v1 loop seed0" in second.stdout
    log = (seed_dir / "train.log").read_text()
    assert "Resuming from checkpoint" in log and f"at {killed_at} steps, {400 - killed_at} steps left" in log

    record = json.loads((tmp_path / "results" / "runs" / "Pendulum-v1" / "loop_seed0.json").read_text())
    assert record["status"] == "done" and record["steps"] == 400 and record["resumed_at_steps"] == [killed_at]
    assert record["timesteps"] == [100, 200, 300, 400]  # every evaluation once, in order
    assert record["episode_returns"][: len(before["results"])] == before["results"]  # the pre-kill ones kept
    assert [entry["num_timesteps"] for entry in record["dynamics_log"]] == list(range(50, 401, 50))
    done = json.loads((seed_dir / "done.json").read_text())
    assert done["wall_clock_s"] > sitting and done["resumed_at_steps"] == [killed_at]
    assert not (seed_dir / "checkpoint").exists()  # a finished run's checkpoint is dropped
    # the resumed launch collected only the steps left: its replay buffer holds the checkpoint's too
    with open(seed_dir / "loop" / "Pendulum-v1_2" / "replay_buffer.pkl", "rb") as file:
        assert pickle.load(file).size() == 400


def _write_run(seed_dir: Path, command: list[str], checkpoint_steps: int | None) -> None:
    seed_dir.mkdir(parents=True)
    (seed_dir / "run.json").write_text(json.dumps({"command": command}))
    if checkpoint_steps is not None:
        folder = seed_dir / "checkpoint" / f"steps_{checkpoint_steps}"
        folder.mkdir(parents=True)
        (folder / "model.zip").write_bytes(b"")
        (folder / "state.json").write_text(json.dumps({"num_timesteps": checkpoint_steps, "wall_clock_s": 12.0}))


def test_compare_resumes_only_a_complete_checkpoint_of_the_same_command(tmp_path):
    spec = compare.RunSpec("Pendulum-v1", "sac", 0, 300, 100, 1, ("-params", "gamma:0.9"), checkpoint_freq=100)
    command = spec.command(tmp_path)
    assert command[command.index("--checkpoint-dir") + 1] == str(tmp_path / "Pendulum-v1" / "sac" / "seed0" / "checkpoint")
    _write_run(tmp_path / "same", command, 200)
    (tmp_path / "same" / "checkpoint" / ".writing_steps_300_1").mkdir()  # killed while writing the next one
    assert compare.resumable_checkpoint(tmp_path / "same", command)["num_timesteps"] == 200
    other_checkpoint_freq = dataclasses.replace(spec, checkpoint_freq=50).command(tmp_path)
    assert compare.resumable_checkpoint(tmp_path / "same", other_checkpoint_freq)["num_timesteps"] == 200
    other_eval_freq = dataclasses.replace(spec, eval_freq=50).command(tmp_path)
    assert compare.resumable_checkpoint(tmp_path / "same", other_eval_freq) is None
    _write_run(tmp_path / "no_checkpoint", command, None)
    assert compare.resumable_checkpoint(tmp_path / "no_checkpoint", command) is None
    _write_run(tmp_path / "other_steps", [a if a != "300" else "400" for a in command], 200)
    assert compare.resumable_checkpoint(tmp_path / "other_steps", command) is None


def test_compare_reads_the_latest_launch_and_records_the_dynamics_log(tmp_path):
    seed_dir = tmp_path / "seed0"
    for launch, steps in ((9, [100]), (10, [100, 200])):
        folder = seed_dir / "loop" / f"Pendulum-v1_{launch}"
        folder.mkdir(parents=True)
        np.savez(
            folder / "evaluations", timesteps=steps, results=np.ones((len(steps), 2)), ep_lengths=np.ones((len(steps), 2))
        )
    os.utime(seed_dir / "loop" / "Pendulum-v1_9" / "evaluations.npz")  # newer file, older launch
    log = [{"num_timesteps": 50, "holdout_mse": 0.5, "fresh_mse": None, "kept_previous": 0}]
    with zipfile.ZipFile(seed_dir / "loop" / "Pendulum-v1_10" / "Pendulum-v1.zip", "w") as archive:
        archive.writestr("data", json.dumps({"num_timesteps": 200, "dynamics_log": log}))
    (seed_dir / "run.json").write_text(json.dumps({"steps": 200, "resumed": [{"at_steps": 100, "time": "t"}]}))
    (seed_dir / "done.json").write_text(json.dumps({"steps": 200, "wall_clock_s": 3.0}))
    (seed_dir / "train.log").write_text(SB3_STDOUT_DUMPS)
    run = compare.read_run_directory(seed_dir, "Pendulum-v1", "loop")
    assert run.timesteps.tolist() == [100, 200] and run.dynamics_log == log and run.resumed_at_steps == [100]
    planner_log = [
        {"actor_divergence": 10.6, "fallbacks": 0.0, "ms_per_action": 24.3, "total_timesteps": 100},
        {"actor_divergence": 0.25, "fallbacks": 1.0, "ms_per_action": 30.0, "total_timesteps": 200},
    ]
    assert run.planner_log == planner_log  # the SAC-only dump in between has no planner values
    assert compare.saved_num_timesteps(seed_dir, "loop", "Pendulum-v1") == 200

    path = compare.write_record(tmp_path / "results", "Pendulum-v1", run)
    stored = json.loads(path.read_text())
    assert stored["dynamics_log"] == log and stored["resumed_at_steps"] == [100]
    assert stored["planner_log"] == planner_log
    again = compare.read_record(tmp_path / "results", "Pendulum-v1", "loop", 0)
    assert again.dynamics_log == log and again.resumed_at_steps == [100] and again.done
    assert again.planner_log == planner_log

    # a record written before these fields existed (and a SAC run) loads, and gets none of them
    for key in ("dynamics_log", "resumed_at_steps", "planner_log"):
        del stored[key]
    old = compare._record_to_run({**stored, "algo": "sac"})
    assert old.dynamics_log is None and old.resumed_at_steps == [] and old.timesteps.tolist() == [100, 200]
    assert old.planner_log is None
    sac_path = compare.write_record(tmp_path / "results", "Pendulum-v1", old)
    assert not {"dynamics_log", "resumed_at_steps", "planner_log"} & set(json.loads(sac_path.read_text()))
    assert compare.logged_planner_values(tmp_path / "no_such.log") is None


# SB3's stdout logger as the zoo's train.log holds it: two LOOP dumps with a SAC-only dump between them
SB3_STDOUT_DUMPS = """Using cpu device
----------------------------------
| planner/            |          |
|    actor_divergence | 10.6     |
|    fallbacks        | 0        |
|    ms_per_action    | 24.3     |
| time/               |          |
|    episodes         | 4        |
|    total_timesteps  | 100      |
----------------------------------
New best mean reward!
---------------------------------
| time/              |          |
|    total_timesteps | 150      |
| train/             |          |
|    actor_loss      | -22.7    |
---------------------------------
----------------------------------
| planner/            |          |
|    actor_divergence | 0.25     |
|    fallbacks        | 1        |
|    ms_per_action    | 30       |
| time/               |          |
|    total_timesteps  | 200      |
----------------------------------
"""
