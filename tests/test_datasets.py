"""Offline datasets: D4RL-format HDF5 and Minari readers/writers, the loader, normalized scores."""

from __future__ import annotations

import os
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer

from sb3_loop.datasets import (
    DatasetError,
    OfflineDataset,
    fill_replay_buffer,
    load_dataset,
    normalized_score,
    read_d4rl_hdf5,
    read_minari,
    reference_returns,
    registry,
    write_d4rl_hdf5,
    write_minari,
)

OBS_DIM, ACT_DIM = 3, 1  # Pendulum-v1's shapes


@pytest.fixture(autouse=True)
def _tmp_dataset_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep Minari's folder and the dataset cache inside the test's tmp folder."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv(registry.DATASETS_ENV_VAR, str(tmp_path / "cache"))


def make_dataset(episode_ends: list[tuple[int, str]], metadata: dict | None = None) -> OfflineDataset:
    """
    Episodes of the given lengths, each ending with ``"terminal"``, ``"timeout"`` or ``"open"`` (the
    data stops). Every observation is distinct and each episode's next observations follow on.
    """
    observations, next_observations, terminals, timeouts = [], [], [], []
    row = 0
    for episode, (length, end) in enumerate(episode_ends):
        states = np.array([[episode, t, 0.5 * t] for t in range(length + 1)], dtype=np.float32)
        observations.append(states[:-1])
        next_observations.append(states[1:])
        terminals += [False] * (length - 1) + [end == "terminal"]
        timeouts += [False] * (length - 1) + [end == "timeout"]
        row += length
    actions = np.linspace(-1.5, 1.5, row, dtype=np.float32).reshape(row, ACT_DIM)
    return OfflineDataset(
        observations=np.concatenate(observations),
        actions=actions,
        rewards=np.arange(row, dtype=np.float32) - 2.0,
        next_observations=np.concatenate(next_observations),
        terminals=np.array(terminals),
        timeouts=np.array(timeouts),
        metadata=dict(metadata or {}),
    )


def assert_same_arrays(loaded: OfflineDataset, expected: OfflineDataset) -> None:
    for key in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
        got, want = getattr(loaded, key), getattr(expected, key)
        assert got.dtype == want.dtype, key
        np.testing.assert_array_equal(got, want, err_msg=key)
    assert loaded.checksum() == expected.checksum()


def write_raw_hdf5(path: Path, **arrays: np.ndarray) -> Path:
    with h5py.File(path, "w") as file:
        for key, value in arrays.items():
            file.create_dataset(key, data=value)
    return path


def raw_arrays(rows: int = 6) -> dict[str, np.ndarray]:
    """Valid D4RL-format arrays without next_observations."""
    return {
        "observations": np.arange(rows * OBS_DIM, dtype=np.float32).reshape(rows, OBS_DIM),
        "actions": np.zeros((rows, ACT_DIM), dtype=np.float32),
        "rewards": np.ones(rows, dtype=np.float32),
        "terminals": np.zeros(rows, dtype=bool),
        "timeouts": np.zeros(rows, dtype=bool),
    }


# ------------------------------------------------------------------------------------ HDF5 files
def test_hdf5_round_trip_keeps_arrays_and_metadata(tmp_path: Path) -> None:
    metadata = {
        "env_id": "Pendulum-v1",
        "kind": "medium",
        "seed": 3,
        "fraction": 0.25,
        "deterministic": True,
        "policy": {"name": "SAC", "steps": [1, 2]},
        "missing": None,
    }
    dataset = make_dataset([(4, "terminal"), (3, "timeout"), (2, "open")], metadata)
    path = write_d4rl_hdf5(dataset, tmp_path / "sub" / "data.hdf5")

    loaded = read_d4rl_hdf5(path)
    assert_same_arrays(loaded, dataset)
    assert loaded.metadata == metadata
    assert loaded.source == str(path)
    with h5py.File(path, "r") as file:
        assert file["observations"].compression == "gzip"
        assert "next_observations" in file
        assert file["metadata/env_id"].asstr()[()] == "Pendulum-v1"
    assert sorted(p.name for p in path.parent.iterdir()) == ["data.hdf5"]


def test_hdf5_metadata_arrays_and_numpy_values(tmp_path: Path) -> None:
    metadata = {"weights": np.arange(4.0), "count": np.int64(7), "nested": {"mean": np.float32(1.5)}}
    path = write_d4rl_hdf5(make_dataset([(3, "terminal")], metadata), tmp_path / "data.h5")
    loaded = read_d4rl_hdf5(path).metadata
    np.testing.assert_array_equal(loaded["weights"], np.arange(4.0))
    assert loaded["count"] == 7 and isinstance(loaded["count"], int)
    assert loaded["nested"] == {"mean": 1.5}


def test_hdf5_failed_write_leaves_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "data.hdf5"
    original = make_dataset([(3, "terminal")])
    write_d4rl_hdf5(original, path)
    broken = make_dataset([(5, "timeout")], {"unstorable": object()})
    with pytest.raises(DatasetError, match="unstorable"):
        write_d4rl_hdf5(broken, path)
    assert_same_arrays(read_d4rl_hdf5(path), original)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.hdf5"]
    with pytest.raises(DatasetError):
        write_d4rl_hdf5(broken, tmp_path / "new.hdf5")
    assert not (tmp_path / "new.hdf5").exists()


def test_boundaries_without_next_observations(tmp_path: Path) -> None:
    # rows: 0 1 2 3T | 4 5 6timeout | 7T | 8 9(end of data)
    rows = 10
    observations = np.stack([np.arange(rows), 10 * np.arange(rows), -np.arange(rows)], axis=1).astype(np.float32)
    terminals = np.zeros(rows, dtype=bool)
    terminals[[3, 7]] = True
    timeouts = np.zeros(rows, dtype=bool)
    timeouts[6] = True
    path = write_raw_hdf5(
        tmp_path / "d4rl.hdf5",
        observations=observations,
        actions=np.full((rows, ACT_DIM), 0.5, dtype=np.float32),
        rewards=np.arange(rows, dtype=np.float32),
        terminals=terminals,
        timeouts=timeouts,
    )
    with h5py.File(path, "a") as file:
        file.create_dataset("metadata/algorithm", data="SAC")
        file.create_dataset("metadata/policy/fc0/weight", data=np.eye(2))

    dataset = read_d4rl_hdf5(path)

    kept = np.array([0, 1, 2, 4, 5, 8])
    np.testing.assert_array_equal(dataset.rewards, kept.astype(np.float32))  # reward i identifies row i
    np.testing.assert_array_equal(dataset.observations, observations[kept])
    np.testing.assert_array_equal(dataset.next_observations, observations[kept + 1])
    assert not dataset.terminals.any()  # the terminal rows' successors are unknown, so they are dropped
    np.testing.assert_array_equal(dataset.timeouts, [False, False, True, False, True, True])
    assert dataset.metadata["dropped_boundary_rows"] == 4
    assert [(s.start, s.stop) for s in dataset.episodes()] == [(0, 3), (3, 5), (5, 6)]
    for episode in dataset.episodes():  # no transition crosses an episode end
        np.testing.assert_array_equal(dataset.next_observations[episode][:-1], dataset.observations[episode][1:])
    assert dataset.metadata["algorithm"] == "SAC"
    np.testing.assert_array_equal(dataset.metadata["policy/fc0/weight"], np.eye(2))


def test_boundaries_every_row_ends_an_episode(tmp_path: Path) -> None:
    arrays = raw_arrays(3)
    arrays["terminals"][:] = True
    path = write_raw_hdf5(tmp_path / "ends.hdf5", **arrays)
    with pytest.raises(DatasetError, match="every row ends an episode"):
        read_d4rl_hdf5(path)


def test_with_next_observations_every_row_is_kept(tmp_path: Path) -> None:
    arrays = raw_arrays(6)
    arrays["next_observations"] = arrays["observations"] + 100.0
    arrays["terminals"][2] = True
    arrays["timeouts"][4] = True
    path = write_raw_hdf5(tmp_path / "full.hdf5", **arrays)
    dataset = read_d4rl_hdf5(path)
    assert len(dataset) == 6
    np.testing.assert_array_equal(dataset.next_observations, arrays["next_observations"])
    np.testing.assert_array_equal(dataset.terminals, [False, False, True, False, False, False])
    np.testing.assert_array_equal(dataset.timeouts, [False, False, False, False, True, False])  # timeouts stay non-terminal
    assert "dropped_boundary_rows" not in dataset.metadata


def _drop(key: str):
    return lambda a: {k: v for k, v in a.items() if k != key}


def _set(key: str, make):
    return lambda a: {**a, key: make(a)}


def _nan_row(key: str, row: int, value: float = np.nan):
    def change(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        array = arrays[key].copy()
        array[row] = value
        return {**arrays, key: array}

    return change


@pytest.mark.parametrize(
    "change, expected",
    [
        (_drop("timeouts"), ["missing required key 'timeouts'"]),
        (_drop("observations"), ["missing required key 'observations'"]),
        (_set("rewards", lambda a: a["rewards"][:-1]), ["'rewards'", "5 rows", "length mismatch"]),
        (_set("next_observations", lambda a: a["observations"][:-2]), ["'next_observations'", "length mismatch"]),
        (_nan_row("observations", 4), ["'observations'", "row 4", "not finite"]),
        (_nan_row("actions", 2, np.inf), ["'actions'", "row 2", "not finite"]),
        (_nan_row("rewards", 1, -np.inf), ["'rewards'", "row 1"]),
        (_set("observations", lambda a: a["observations"][:, 0]), ["'observations'", "2-D", "(6,)"]),
        (_set("actions", lambda a: a["actions"].reshape(6, 1, 1)), ["'actions'", "2-D", "(6, 1, 1)"]),
        (_set("rewards", lambda a: np.ones((6, 2), dtype=np.float32)), ["'rewards'", "1-D", "(6, 2)"]),
        (lambda a: {k: v[:0] for k, v in a.items()}, ["empty", "0 rows"]),
        (lambda a: {}, ["empty", "no keys"]),
    ],
)
def test_bad_hdf5_data_is_named(tmp_path: Path, change, expected: list[str]) -> None:
    path = write_raw_hdf5(tmp_path / "bad.hdf5", **change(raw_arrays(6)))
    with pytest.raises(DatasetError) as error:
        read_d4rl_hdf5(path)
    message = str(error.value)
    assert str(path) in message
    for text in expected:
        assert text in message


def test_truncated_and_foreign_files(tmp_path: Path) -> None:
    path = write_d4rl_hdf5(make_dataset([(40, "timeout")]), tmp_path / "whole.hdf5")
    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DatasetError, match="truncated or not an HDF5 file") as error:
        read_d4rl_hdf5(truncated)
    assert str(truncated) in str(error.value)

    text_file = tmp_path / "notes.hdf5"
    text_file.write_text("not hdf5")
    with pytest.raises(DatasetError, match="truncated or not an HDF5 file"):
        read_d4rl_hdf5(text_file)

    with pytest.raises(DatasetError, match="no such file") as error:
        read_d4rl_hdf5(tmp_path / "absent.hdf5")
    assert "absent.hdf5" in str(error.value)


# ----------------------------------------------------------------------------------------- Minari
def test_minari_round_trip_with_registry_id() -> None:
    dataset = make_dataset([(4, "terminal"), (3, "timeout"), (2, "timeout")], {"kind": "medium", "seed": 1})
    dataset_id = registry.minari_dataset_id("Pendulum-v1", "medium")
    folder = write_minari(dataset, dataset_id, env_id="Pendulum-v1", author="tests")
    assert folder == Path(os.environ["MINARI_DATASETS_PATH"]) / dataset_id

    loaded = read_minari(dataset_id)
    assert_same_arrays(loaded, dataset)
    assert loaded.metadata == {"kind": "medium", "seed": 1}
    assert loaded.source == f"minari:{dataset_id}"
    import minari

    stored = minari.load_dataset(dataset_id)
    assert stored.total_episodes == 3
    assert stored.spec.env_spec.id == "Pendulum-v1"


def test_minari_without_env_splits_episodes_where_the_data_jumps() -> None:
    dataset = make_dataset([(3, "terminal"), (4, "open")])
    dataset.next_observations[1] += 7.0  # row 1 does not lead to row 2: a cut, not an episode end flag
    write_minari(dataset, "tests/jump-v0")

    loaded = read_minari("tests/jump-v0")
    expected_timeouts = dataset.timeouts.copy()
    expected_timeouts[[1, 6]] = True  # the cut and the data's end come back as timeouts
    np.testing.assert_array_equal(loaded.timeouts, expected_timeouts)
    np.testing.assert_array_equal(loaded.terminals, dataset.terminals)
    np.testing.assert_array_equal(loaded.next_observations, dataset.next_observations)
    np.testing.assert_array_equal(loaded.observations, dataset.observations)
    assert [(s.start, s.stop) for s in loaded.episodes()] == [(0, 2), (2, 3), (3, 7)]


def test_minari_existing_id_needs_overwrite() -> None:
    write_minari(make_dataset([(2, "terminal")]), "tests/twice-v0")
    replacement = make_dataset([(5, "timeout")])
    with pytest.raises(DatasetError, match="overwrite=True"):
        write_minari(replacement, "tests/twice-v0")
    assert len(read_minari("tests/twice-v0")) == 2
    write_minari(replacement, "tests/twice-v0", overwrite=True)
    assert_same_arrays(read_minari("tests/twice-v0"), replacement)


def test_minari_missing_dataset_names_id_and_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DatasetError) as error:
        read_minari("mujoco/hopper/medium-v0")
    message = str(error.value)
    assert "mujoco/hopper/medium-v0" in message
    assert f"MINARI_DATASETS_PATH={tmp_path / 'minari'}" in message

    monkeypatch.delenv("MINARI_DATASETS_PATH")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(DatasetError, match=r"MINARI_DATASETS_PATH is unset, so the default .*home/\.minari/datasets"):
        read_minari("mujoco/hopper/medium-v0")


@pytest.mark.filterwarnings("ignore:.*(is set to None|env_spec is None):UserWarning")
def test_minari_rejects_non_box_spaces() -> None:
    with pytest.raises(DatasetError, match="Box action space"):
        write_minari(make_dataset([(2, "terminal")]), "tests/cartpole-v0", env_id="CartPole-v1")
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    episode = EpisodeBuffer(
        observations=np.zeros((3, 2), dtype=np.float32),
        actions=np.array([0, 1]),
        rewards=np.ones(2),
        terminations=np.array([False, True]),
        truncations=np.zeros(2, dtype=bool),
    )
    minari.create_dataset_from_buffers(
        "tests/discrete-v0",
        [episode],
        observation_space=spaces.Box(-1.0, 1.0, (2,), np.float32),
        action_space=spaces.Discrete(2),
        algorithm_name="x",
        author="x",
        author_email="x",
        code_permalink="x",
        description="x",
    )
    with pytest.raises(DatasetError, match="Discrete"):
        read_minari("tests/discrete-v0")


def test_minari_rejects_malformed_id() -> None:
    with pytest.raises(DatasetError, match="not a valid Minari id"):
        write_minari(make_dataset([(2, "terminal")]), "bad id with spaces")


# ----------------------------------------------------------------------------------------- loader
def test_loader_reads_files_by_path(tmp_path: Path) -> None:
    dataset = make_dataset([(3, "terminal"), (2, "timeout")])
    path = write_d4rl_hdf5(dataset, tmp_path / "data.hdf5")
    assert_same_arrays(load_dataset(str(path)), dataset)
    assert_same_arrays(load_dataset(path, env="Pendulum-v1"), dataset)


def test_loader_missing_file_path_is_not_a_minari_lookup(tmp_path: Path) -> None:
    for source in (tmp_path / "absent.hdf5", "data/absent.h5", "./absent"):
        with pytest.raises(DatasetError, match="no such file") as error:
            load_dataset(source)
        assert "Minari" not in str(error.value)
    with pytest.raises(DatasetError, match="is a folder"):
        load_dataset(str(tmp_path))


def test_loader_dataset_names_use_the_cache(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as error:
        load_dataset("Pendulum-v1-medium-replay")
    message = str(error.value)
    assert "python -m sb3_loop collect Pendulum-v1 --kind medium-replay" in message
    assert str(tmp_path / "cache") in message
    assert "SB3_LOOP_DATASETS" in message

    with pytest.raises(DatasetError, match=r"python -m sb3_loop collect Hopper-v5 --kind medium$"):
        load_dataset("hopper-medium")

    dataset = make_dataset([(3, "timeout")])
    write_d4rl_hdf5(dataset, registry.dataset_path("Pendulum-v1", "medium-replay"))
    assert_same_arrays(load_dataset("Pendulum-v1-medium-replay"), dataset)


def test_loader_falls_back_to_minari(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="MINARI_DATASETS_PATH") as error:
        load_dataset("mujoco/hopper/expert-v0")
    assert "mujoco/hopper/expert-v0" in str(error.value)

    dataset = make_dataset([(3, "terminal")])
    write_minari(dataset, "tests/loader-v0")
    assert_same_arrays(load_dataset("tests/loader-v0"), dataset)


def test_loader_checks_env_spaces(tmp_path: Path) -> None:
    env = gym.make("Pendulum-v1")
    dataset = make_dataset([(5, "timeout")])
    path = write_d4rl_hdf5(dataset, tmp_path / "data.hdf5")
    assert len(load_dataset(path, env=env)) == 5

    wide = OfflineDataset(
        observations=np.zeros((2, 4)),
        actions=np.zeros((2, 1)),
        rewards=np.zeros(2),
        next_observations=np.zeros((2, 4)),
        terminals=np.zeros(2),
        timeouts=np.ones(2),
    )
    wide_path = write_d4rl_hdf5(wide, tmp_path / "wide.hdf5")
    with pytest.raises(DatasetError, match=r"'observations' has rows of shape \(4,\), Pendulum-v1 observes \(3,\)"):
        load_dataset(wide_path, env=env)

    dataset.actions[3, 0] = 2.5  # Pendulum's torque bound is 2
    far_path = write_d4rl_hdf5(dataset, tmp_path / "far.hdf5")
    with pytest.raises(DatasetError, match=r"'actions' row 3 column 0 is 2\.5.*Pendulum-v1") as error:
        load_dataset(far_path, env="Pendulum-v1")
    assert str(far_path) in str(error.value)

    with pytest.raises(DatasetError, match="Box observation and action spaces"):
        load_dataset(path, env="CartPole-v1")


# ----------------------------------------------------------------------------------------- scores
@pytest.mark.parametrize(
    "env, low, high",
    [
        ("Hopper-v5", -20.272305, 3234.3),
        ("Hopper-v4", -20.272305, 3234.3),
        ("hopper-medium-v2", -20.272305, 3234.3),
        ("HalfCheetah-v5", -280.178953, 12135.0),
        ("halfcheetah", -280.178953, 12135.0),
        ("Walker2d-v5-medium-replay", 1.629008, 4592.3),
        ("walker2d-medium-expert", 1.629008, 4592.3),
        ("Ant-v5", -325.6, 3879.7),
        ("sb3_loop/Ant-v5/expert-v0", -325.6, 3879.7),
    ],
)
def test_normalized_score_references(env: str, low: float, high: float) -> None:
    assert reference_returns(env) == (low, high)
    assert normalized_score(env, low) == pytest.approx(0.0, abs=1e-9)
    assert normalized_score(env, high) == pytest.approx(100.0)
    assert isinstance(normalized_score(env, high), float)
    scores = normalized_score(env, np.array([low, (low + high) / 2, high]))
    np.testing.assert_allclose(scores, [0.0, 50.0, 100.0], atol=1e-9)


@pytest.mark.parametrize("env", ["Pendulum-v1", "antmaze-umaze-v2", "hoppers"])
def test_normalized_score_unknown_env(env: str) -> None:
    with pytest.raises(ValueError, match=f"{env!r}.*hopper, halfcheetah, walker2d, ant"):
        normalized_score(env, 1.0)


# ----------------------------------------------------------------------------- the in-memory type
def test_concatenate_and_episodes() -> None:
    first = make_dataset([(3, "terminal"), (2, "open")])
    second = make_dataset([(4, "timeout")])
    both = OfflineDataset.concatenate([first, second], metadata={"parts": 2})

    assert len(both) == 9
    assert both.metadata == {"parts": 2}
    assert [(s.start, s.stop) for s in both.episodes()] == [(0, 3), (3, 5), (5, 9)]
    np.testing.assert_array_equal(both.episode_lengths(), [3, 2, 4])
    np.testing.assert_array_equal(both.episode_returns(), [-3.0, 3.0, -2.0])
    assert both.timeouts[4] and not both.terminals[4]  # first's open end becomes a timeout
    assert both.terminals[2] and not both.timeouts[2]
    assert not first.timeouts[4]  # the inputs are not changed
    with pytest.raises(DatasetError, match="at least one"):
        OfflineDataset.concatenate([])


def test_fill_replay_buffer_samples_dataset_rows() -> None:
    dataset = make_dataset([(3, "terminal"), (4, "timeout"), (3, "terminal")])
    buffer = ReplayBuffer(
        len(dataset),
        spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32),
        spaces.Box(-2.0, 2.0, (ACT_DIM,), np.float32),
        device="cpu",
    )
    fill_replay_buffer(buffer, dataset)
    assert buffer.full

    np.random.seed(0)
    sample = buffer.sample(512)
    rows = {dataset.observations[i].tobytes(): i for i in range(len(dataset))}
    seen = set()
    for j in range(512):
        i = rows[sample.observations[j].numpy().tobytes()]
        seen.add(i)
        # stored as SB3 stores actions: bounds [-2, 2] scaled to [-1, 1]
        np.testing.assert_allclose(sample.actions[j].numpy(), np.clip(dataset.actions[i] / 2.0, -1, 1), rtol=1e-6)
        np.testing.assert_array_equal(sample.next_observations[j].numpy(), dataset.next_observations[i])
        assert sample.rewards[j, 0].item() == dataset.rewards[i]
        assert sample.dones[j, 0].item() == float(dataset.terminals[i])
    assert seen == set(range(len(dataset)))
    assert dataset.timeouts.any()  # timeouts exist in the data but are not dones
