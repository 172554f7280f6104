"""
Making datasets here, as D4RL made them, from Gymnasium envs and saved SB3 policies.

- ``random``: uniform random actions.
- ``medium``: rollouts of the medium behaviour policy (SAC early-stopped at about a third of the D4RL
  expert reference return, see :mod:`sb3_loop.datasets.behaviour`), sampling its stochastic actions.
- ``medium-replay``: the replay buffer of the training run that produced the medium policy, rebuilt
  by replaying its recorded actions from the recorded env seed.
- ``expert``: rollouts of the expert behaviour policy.
- ``medium-expert``: ``medium`` followed by ``expert``.

Rollouts run ``n_envs`` copies of the env in one ``DummyVecEnv`` and query the policy once per step
for all of them. Episodes are stored whole, in the order they end; the last one is cut to give exactly
``n_transitions`` rows (its last row is then a timeout).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th

from sb3_loop.datasets.dataset import OfflineDataset

#: ``actions = policy(observations)`` for a batch of observations.
BatchPolicy = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass
class _EpisodeRecorder:
    """Per-env rows of the running episodes, flushed into whole episodes when they end."""

    n_envs: int
    rows: list[list[tuple]] = dataclasses.field(default_factory=list)
    episodes: list[list[tuple]] = dataclasses.field(default_factory=list)
    num_rows: int = 0

    def __post_init__(self) -> None:
        self.rows = [[] for _ in range(self.n_envs)]

    def add(self, env_index: int, row: tuple, episode_ended: bool) -> None:
        self.rows[env_index].append(row)
        if episode_ended:
            self.episodes.append(self.rows[env_index])
            self.num_rows += len(self.rows[env_index])
            self.rows[env_index] = []

    def dataset(self, n_transitions: int, source: str) -> OfflineDataset:
        rows = [row for episode in self.episodes for row in episode][:n_transitions]
        columns = [np.stack(column) for column in zip(*rows)]
        observations, actions, rewards, next_observations, terminals, timeouts = columns
        timeouts[-1] = not terminals[-1]
        return OfflineDataset(observations, actions, rewards, next_observations, terminals, timeouts, source=source)


def make_envs(env_id: str, n_envs: int) -> list[gym.Env]:
    """``n_envs`` copies of ``env_id`` (Gymnasium's env checker off: it costs time on every step)."""
    if n_envs < 1:
        raise ValueError(f"n_envs must be >= 1, not {n_envs}")
    envs = [gym.make(env_id, disable_env_checker=True) for _ in range(n_envs)]
    for env in envs:
        if not isinstance(env.observation_space, gym.spaces.Box) or not isinstance(env.action_space, gym.spaces.Box):
            spaces = f"{env.observation_space} / {env.action_space}"
            raise ValueError(f"collect needs Box observations and actions, {env_id} has {spaces}")
    return envs


def rollout_dataset(
    env_id: str,
    policy: BatchPolicy | None,
    n_transitions: int,
    seed: int = 0,
    n_envs: int = 16,
    progress_bar: bool = False,
) -> OfflineDataset:
    """
    Roll out ``policy`` (uniform random actions when ``None``) in ``n_envs`` copies of ``env_id``,
    stepped one after the other and queried as one batch per step (a plain loop: SB3's
    ``DummyVecEnv`` deep-copies every step's infos, which costs more than the policy here).

    :param env_id: Gymnasium env id (Box observations and actions).
    :param policy: Batched policy, or ``None`` for uniform random actions.
    :param n_transitions: Rows of the dataset.
    :param seed: Env ``i`` is first reset with seed ``seed + i`` (then unseeded); random actions are
        drawn from a generator seeded ``seed``.
    :param n_envs: Envs stepped together.
    :param progress_bar: Show a tqdm progress bar.
    :return: The transitions, episodes whole and in the order they ended, the last one cut.
    """
    if n_transitions < 1:
        raise ValueError(f"n_transitions must be >= 1, not {n_transitions}")
    th.manual_seed(seed)  # the policy's stochastic actions
    envs = make_envs(env_id, n_envs)
    action_space = envs[0].action_space
    rng = np.random.default_rng(seed)
    recorder = _EpisodeRecorder(n_envs)
    observations = np.stack([env.reset(seed=seed + index)[0] for index, env in enumerate(envs)])
    bar = _progress(n_transitions, f"collect {env_id}", progress_bar)
    while recorder.num_rows < n_transitions:
        if policy is None:
            actions = rng.uniform(action_space.low, action_space.high, (n_envs, *action_space.shape))
        else:
            actions = np.clip(policy(observations), action_space.low, action_space.high)
        actions = actions.astype(action_space.dtype)
        before = recorder.num_rows
        following = np.empty_like(observations)  # a new array: the recorded rows keep views of this one
        for index, env in enumerate(envs):
            next_observation, reward, terminated, truncated, _ = env.step(actions[index])
            ended = terminated or truncated
            row = (observations[index], actions[index], reward, next_observation, terminated, truncated and not terminated)
            recorder.add(index, row, ended)
            following[index] = env.reset()[0] if ended else next_observation
        observations = following
        bar.update(min(recorder.num_rows, n_transitions) - min(before, n_transitions))
    bar.close()
    for env in envs:
        env.close()
    return recorder.dataset(n_transitions, source=f"{env_id} rollouts")


def collect_rollouts(
    env_id: str,
    policy_path: str | Path | None,
    n_transitions: int,
    seed: int = 0,
    n_envs: int = 16,
    n_workers: int = 1,
    algo: str = "sac",
    deterministic: bool = False,
    progress_bar: bool = False,
) -> OfflineDataset:
    """
    :func:`rollout_dataset` of a saved policy (uniform random actions when ``policy_path`` is ``None``),
    split over ``n_workers`` processes: worker ``w`` makes its share of the rows with seed
    ``seed + 1000 * w`` and the shares are concatenated in worker order. The data depend on
    ``n_workers`` (not on how busy the machine is), so the same arguments give the same dataset.

    :param n_workers: Processes (one torch thread each); 1 runs in this process.
    :param algo: Algorithm of the saved policy (see :func:`load_behaviour_model`).
    """
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, not {n_workers}")
    shares = [n_transitions // n_workers + (worker < n_transitions % n_workers) for worker in range(n_workers)]
    jobs = [(env_id, policy_path, share, seed + 1000 * worker, n_envs, algo, deterministic, progress_bar and worker == 0)
            for worker, share in enumerate(shares) if share > 0]  # fmt: skip
    if len(jobs) == 1:
        return _rollout_job(*jobs[0])
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = list(pool.map(_rollout_job, *zip(*jobs)))
    return OfflineDataset.concatenate(parts)


def _rollout_job(env_id, policy_path, n_transitions, seed, n_envs, algo, deterministic, progress_bar) -> OfflineDataset:
    th.set_num_threads(1)
    policy = None if policy_path is None else policy_from_model(load_behaviour_model(policy_path, algo), deterministic)
    return rollout_dataset(env_id, policy, n_transitions, seed, n_envs, progress_bar)


def _progress(total: int, description: str, enabled: bool) -> Any:
    if not enabled:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="rows", mininterval=1.0)


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def policy_from_model(model: Any, deterministic: bool = False) -> BatchPolicy:
    """A batched policy from a loaded SB3 model (``predict``: actions in the env's units)."""

    def act(observations: np.ndarray) -> np.ndarray:
        actions, _ = model.predict(observations, deterministic=deterministic)
        return actions

    return act


def load_behaviour_model(path: str | Path, algo: str = "sac", device: str = "cpu") -> Any:
    """
    Load a saved SB3 policy (a zoo-trained ``sac``/``td3``/``sac_as_loop`` ``.zip``) for collection,
    without its replay buffer.

    :param path: The ``.zip`` file.
    :param algo: Its algorithm (``sac``, ``sac_as_loop``, ``td3``, ``ddpg``, ``tqc``).
    :param device: Torch device.
    """
    import stable_baselines3 as sb3

    classes = {"sac": sb3.SAC, "sac_as_loop": sb3.SAC, "td3": sb3.TD3, "ddpg": sb3.DDPG}
    if algo == "tqc":
        from sb3_contrib import TQC

        classes["tqc"] = TQC
    if algo not in classes:
        raise ValueError(f"behaviour policy algo {algo!r} is not supported: choose one of {', '.join(sorted(classes))}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"behaviour policy {path} does not exist")
    return classes[algo].load(path, device=device, buffer_size=1)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_dataset(dataset: OfflineDataset, env_id: str, kind: str, **extra: Any) -> dict[str, Any]:
    """Metadata of a dataset made here: counts, returns (raw and D4RL-normalised), checksum."""
    returns = dataset.episode_returns()
    finished = dataset.terminals | dataset.timeouts
    complete = returns if finished[-1] else returns[:-1]
    metadata: dict[str, Any] = {
        "env_id": env_id,
        "kind": kind,
        "num_transitions": len(dataset),
        "num_episodes": len(returns),
        "num_terminals": int(dataset.terminals.sum()),
        "num_timeouts": int(dataset.timeouts.sum()),
        "episode_return_mean": float(np.mean(complete)) if len(complete) else float("nan"),
        "episode_return_std": float(np.std(complete)) if len(complete) else float("nan"),
        "checksum_sha256": dataset.checksum(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    score = normalized_or_none(env_id, metadata["episode_return_mean"])
    if score is not None:
        metadata["episode_return_normalized"] = score
    metadata.update(extra)
    return metadata


def normalized_or_none(env_id: str, value: float) -> float | None:
    """D4RL-normalised ``value``, or ``None`` for an env D4RL has no reference returns for."""
    from sb3_loop.datasets.scores import normalized_score

    try:
        return float(normalized_score(env_id, value))
    except ValueError:
        return None


def write_metadata(metadata: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return path
