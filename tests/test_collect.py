"""Making datasets here: rollouts, behaviour policies, medium-replay, the ``collect`` command."""

from __future__ import annotations

import json
import shutil

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import SAC

from sb3_loop.datasets import OfflineDataset, load_dataset, read_d4rl_hdf5, read_minari
from sb3_loop.datasets.behaviour import replay_actions, train_behaviour
from sb3_loop.datasets.cli import main_collect
from sb3_loop.datasets.collect import collect_rollouts, load_behaviour_model, policy_from_model, rollout_dataset
from sb3_loop.zoo import main as launcher


@pytest.fixture
def folders(tmp_path, monkeypatch):
    monkeypatch.setenv("SB3_LOOP_DATASETS", str(tmp_path / "cache"))
    monkeypatch.setenv("SB3_LOOP_BEHAVIOUR", str(tmp_path / "behaviour"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path


@pytest.fixture(scope="module")
def pendulum_policy(tmp_path_factory):
    """An untrained SAC policy (random weights) saved as a behaviour policy."""
    path = tmp_path_factory.mktemp("policy") / "policy.zip"
    SAC("MlpPolicy", "Pendulum-v1", buffer_size=1, policy_kwargs={"net_arch": [16]}, seed=0).save(path)
    return path


def assert_chained(dataset) -> None:
    """Within an episode each row starts where the previous one ended; no row crosses an episode end."""
    for episode in dataset.episodes():
        rows = np.arange(episode.start, episode.stop)
        np.testing.assert_array_equal(dataset.next_observations[rows[:-1]], dataset.observations[rows[1:]])
        assert not (dataset.terminals | dataset.timeouts)[rows[:-1]].any()


def test_rollouts_respect_episode_ends_and_seeds(pendulum_policy):
    policy = policy_from_model(load_behaviour_model(pendulum_policy))
    dataset = rollout_dataset("Pendulum-v1", policy, 1000, seed=3, n_envs=3)
    assert len(dataset) == 1000
    assert_chained(dataset)
    # Pendulum-v1 never terminates: every episode is 200 steps, ended by its time limit
    assert not dataset.terminals.any()
    np.testing.assert_array_equal(dataset.episode_lengths(), [200] * 5)
    assert dataset.timeouts.sum() == 5
    again = rollout_dataset("Pendulum-v1", policy, 1000, seed=3, n_envs=3)
    other_seed = rollout_dataset("Pendulum-v1", policy, 1000, seed=4, n_envs=3)
    assert again.checksum() == dataset.checksum()
    assert other_seed.checksum() != dataset.checksum()


def test_terminal_rows_keep_the_terminal_observation():
    dataset = rollout_dataset("InvertedPendulum-v5", None, 300, seed=0, n_envs=4)
    assert dataset.terminals.any()
    assert_chained(dataset)
    # a terminal next observation is where the pole fell (|angle| > 0.2), not the next reset state
    fallen = np.abs(dataset.next_observations[dataset.terminals, 1]) > 0.2
    assert fallen.all()
    # the rows cut off at 300 end with a timeout, not a terminal (unless the pole fell exactly there)
    assert dataset.timeouts[-1] or dataset.terminals[-1]
    # random actions lie inside the action bounds
    assert np.abs(dataset.actions).max() <= 3.0


def test_collect_round_trip_hdf5_and_minari(folders, pendulum_policy):
    argv = ["Pendulum-v1", "--kind", "medium", "-n", "450", "--n-envs", "2", "--n-workers", "1",
            "--policy", str(pendulum_policy), "--format", "hdf5", "minari", "--no-progress"]  # fmt: skip
    made = main_collect(argv)
    from_hdf5 = load_dataset("Pendulum-v1-medium", env="Pendulum-v1")
    from_minari = read_minari("sb3_loop/Pendulum-v1/medium-v0")
    for loaded in (from_hdf5, from_minari):
        for key in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
            np.testing.assert_array_equal(getattr(loaded, key), getattr(made, key), err_msg=key)
        assert loaded.checksum() == made.checksum()
    metadata = json.loads((folders / "cache" / "Pendulum-v1" / "medium.json").read_text())
    assert metadata["checksum_sha256"] == made.checksum()
    assert metadata["num_transitions"] == 450 and metadata["num_episodes"] == 3
    assert metadata["behaviour_algo"] == "sac" and len(metadata["behaviour_sha256"]) == 64
    assert read_d4rl_hdf5(folders / "cache" / "Pendulum-v1" / "medium.hdf5").metadata["kind"] == "medium"


def test_collect_random_through_the_launcher(folders):
    output = folders / "random.hdf5"
    launcher(
        [
            "collect",
            "Pendulum-v1",
            "--kind",
            "random",
            "-n",
            "250",
            "--n-workers",
            "1",
            "--output",
            str(output),
            "--no-progress",
        ]
    )
    dataset = read_d4rl_hdf5(output)
    assert len(dataset) == 250 and dataset.metadata["behaviour_policy"] == "uniform random actions"
    assert dataset.actions.min() >= -2.0 and dataset.actions.max() <= 2.0
    assert dataset.actions.std() > 1.0  # uniform on [-2, 2]: std 1.15


def test_workers_split_the_rows_with_their_own_seeds(pendulum_policy):
    """Two worker processes give the two single-process shares (seeds s and s + 1000), one after the other."""
    both = collect_rollouts("Pendulum-v1", pendulum_policy, 500, seed=5, n_envs=2, n_workers=2)
    policy = policy_from_model(load_behaviour_model(pendulum_policy))
    shares = [rollout_dataset("Pendulum-v1", policy, 250, seed=seed, n_envs=2) for seed in (5, 1005)]
    assert len(both) == 500
    assert both.checksum() == OfflineDataset.concatenate(shares).checksum()
    assert both.timeouts[249] and not both.terminals.any()


def test_missing_behaviour_policy_names_the_command(folders):
    with pytest.raises(SystemExit, match="python -m sb3_loop behaviour Hopper-v5 --level medium"):
        main_collect(["Hopper-v5", "--kind", "medium", "-n", "10"])
    with pytest.raises(SystemExit, match="python -m sb3_loop behaviour Hopper-v5 --level medium"):
        main_collect(["Hopper-v5", "--kind", "medium-replay"])
    with pytest.raises(SystemExit):
        main_collect(["Hopper-v5", "--kind", "bogus"])


def test_behaviour_training_early_stop_and_medium_replay(folders):
    record = train_behaviour("Pendulum-v1", "medium", seed=1, max_steps=900, eval_freq=300, eval_episodes=1,
                             target_return=-5000.0, work_dir=folders / "zoo")  # fmt: skip
    # any policy scores above -5000 on Pendulum: the first evaluation stops the run
    assert record["timesteps"] == 300 and len(record["evaluations"]) == 1
    behaviour = folders / "behaviour" / "Pendulum-v1"
    assert (behaviour / "medium.zip").is_file() and json.loads((behaviour / "medium.json").read_text())["seed"] == 1
    # the run's replay buffer, rebuilt by replaying its actions from its seed
    replay = main_collect(["Pendulum-v1", "--kind", "medium-replay", "--no-progress"])
    buffer_size = record["medium_replay"]["num_transitions"]
    assert len(replay) == buffer_size == 299  # the step that stopped the run is not stored
    assert replay.checksum() == record["medium_replay"]["checksum_sha256"]
    assert_chained(replay)
    # medium-expert = medium + expert, one after the other
    shutil.copy(behaviour / "medium.zip", behaviour / "expert.zip")
    both = main_collect(
        ["Pendulum-v1", "--kind", "medium-expert", "-n", "200", "--n-envs", "1", "--n-workers", "1", "--no-progress"]
    )
    assert len(both) == 400 and both.timeouts[199] and both.metadata["parts"] == ["medium", "expert"]


def test_replay_actions_reproduces_a_run():
    env = gym.make("InvertedPendulum-v5")
    rng = np.random.default_rng(0)
    actions = rng.uniform(-3, 3, (120, 1)).astype(np.float32)
    observation, _ = env.reset(seed=7)
    observations = []
    for action in actions:
        observations.append(observation)
        observation, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            observation, _ = env.reset()
    replayed = replay_actions("InvertedPendulum-v5", actions, seed=7)
    np.testing.assert_array_equal(replayed.observations, np.array(observations, dtype=np.float32))
    assert replayed.terminals.sum() >= 2
    assert_chained(replayed)


def test_killed_behaviour_training_resumes_and_replays_exactly(folders):
    """A behaviour run killed after a checkpoint continues from it; medium-replay still rebuilds its buffer."""
    import os
    import signal
    import subprocess
    import sys
    import time

    work = folders / "zoo"
    command = [sys.executable, "-m", "sb3_loop", "behaviour", "Pendulum-v1", "--level", "medium", "--max-steps", "700",
               "--eval-freq", "200", "--eval-episodes", "1", "--target-return", "1", "--work-dir", str(work)]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = work / "checkpoint" / "steps_400"
    deadline = time.time() + 240
    while not (checkpoint / "state.json").is_file() and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert (checkpoint / "state.json").is_file()
    subprocess.run(command, env=environment, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=400)
    record = json.loads((folders / "behaviour" / "Pendulum-v1" / "medium.json").read_text())
    assert record["timesteps"] == 700
    # the resumed sitting restarted its env at a checkpoint: a reseed row, replayed exactly (checked when stored)
    reseeds = record["medium_replay"]["reseed_rows"]
    assert len(reseeds) == 1 and reseeds[0] >= 400 and reseeds[0] % 200 == 0
    replay = main_collect(["Pendulum-v1", "--kind", "medium-replay", "--no-progress"])
    assert replay.checksum() == record["medium_replay"]["checksum_sha256"]
    assert replay.timeouts[reseeds[0] - 1]
    assert_chained(replay)
    steps = [evaluation["timesteps"] for evaluation in record["evaluations"]]
    assert steps == sorted(set(steps)) and steps[-1] == 600
