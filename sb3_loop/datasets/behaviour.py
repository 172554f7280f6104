"""
Behaviour policies for the datasets made here, trained with SB3 SAC through our zoo launcher.

``python -m sb3_loop behaviour ENV_ID --level medium`` trains SAC (LOOP's SAC settings,
``hyperparams/sac_as_loop.yml``) and stops it early, as D4RL stopped its medium policy, the first time
the mean return of ``eval_episodes`` stochastic episodes reaches a third of the way from D4RL's random
to its expert reference return. ``--level expert`` trains to ``--max-steps`` and keeps the last policy.

It writes, into the behaviour folder (``behaviour/<ENV_ID>/`` of the repository, or
``$SB3_LOOP_BEHAVIOUR/<ENV_ID>/``):

- ``<level>.zip``: the policy (SB3 SAC, no replay buffer);
- ``<level>.json``: how it was made (command, seed, steps, evaluation returns raw and normalised);
- ``medium-replay.npz`` (medium only): the actions of the whole training run and its env seed, from
  which ``collect --kind medium-replay`` rebuilds the run's replay buffer exactly by replaying them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_loop.datasets.dataset import DatasetError, OfflineDataset

#: Environment variable that overrides the behaviour-policy folder.
BEHAVIOUR_ENV_VAR = "SB3_LOOP_BEHAVIOUR"
BEHAVIOUR_LEVELS = ("medium", "expert")
#: Fraction of the way from D4RL's random to its expert reference return at which ``medium`` stops.
MEDIUM_FRACTION = 1.0 / 3.0


def behaviour_dir() -> Path:
    """``$SB3_LOOP_BEHAVIOUR``, or the repository's ``behaviour/`` folder next to the package."""
    configured = os.environ.get(BEHAVIOUR_ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    return Path(__file__).resolve().parents[2] / "behaviour"


def policy_path(env_id: str, level: str) -> Path:
    return behaviour_dir() / env_id / f"{check_level(level)}.zip"


def replay_actions_path(env_id: str) -> Path:
    return behaviour_dir() / env_id / "medium-replay.npz"


def check_level(level: str) -> str:
    if level not in BEHAVIOUR_LEVELS:
        raise ValueError(f"unknown behaviour level {level!r}: choose one of {', '.join(BEHAVIOUR_LEVELS)}")
    return level


def medium_target_return(env_id: str) -> float:
    """A third of the way from D4RL's random to its expert reference return for ``env_id``."""
    from sb3_loop.datasets.scores import reference_returns

    low, high = reference_returns(env_id)
    return low + MEDIUM_FRACTION * (high - low)


class StopAtReturn(BaseCallback):
    """
    Every ``eval_freq`` steps, evaluate ``n_eval_episodes`` stochastic episodes on a fresh env; stop
    training the first time their mean return reaches ``target_return`` (``None``: never stop). Each
    evaluation is appended to ``log_path`` (JSON lines) when given.

    :param env_id: Env to evaluate on.
    :param target_return: Mean return that stops training.
    :param eval_freq: Env steps between evaluations.
    :param n_eval_episodes: Episodes per evaluation.
    :param seed: Seed of the evaluation env (evaluation ``k`` resets it with ``seed + k``).
    :param log_path: JSON-lines file of the evaluations.
    """

    def __init__(
        self,
        env_id: str,
        target_return: float | None,
        eval_freq: int = 5000,
        n_eval_episodes: int = 5,
        seed: int = 10_000,
        log_path: str | None = None,
        verbose: int = 1,
    ) -> None:
        super().__init__(verbose)
        if eval_freq < 1 or n_eval_episodes < 1:
            raise ValueError(f"eval_freq and n_eval_episodes must be >= 1, not {eval_freq} / {n_eval_episodes}")
        self.env_id = env_id
        self.target_return = target_return
        self.eval_freq = eval_freq
        self.n_eval_episodes = n_eval_episodes
        self.seed = seed
        self.log_path = log_path
        self.evaluations: list[dict[str, float]] = []

    def _on_step(self) -> bool:
        if self.num_timesteps % self.eval_freq != 0:
            return True
        env = gym.make(self.env_id)
        env.reset(seed=self.seed + len(self.evaluations))
        returns, _ = evaluate_policy(self.model, env, self.n_eval_episodes, deterministic=False, return_episode_rewards=True)
        env.close()
        record = {
            "timesteps": self.num_timesteps,
            "mean_return": float(np.mean(returns)),
            "std_return": float(np.std(returns)),
        }
        self.evaluations.append(record)
        self.logger.record("behaviour/mean_return", record["mean_return"])
        if self.log_path is not None:
            with open(self.log_path, "a") as file:
                file.write(json.dumps(record) + "\n")
        if self.verbose:
            print(f"behaviour eval at {self.num_timesteps} steps: {record['mean_return']:.1f} (target {self.target_return})")
        return self.target_return is None or record["mean_return"] < self.target_return


def train_behaviour(
    env_id: str,
    level: str = "medium",
    seed: int = 0,
    max_steps: int = 300_000,
    eval_freq: int = 1000,
    eval_episodes: int = 5,
    algo: str = "sac_as_loop",
    work_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
    target_return: float | None = None,
) -> dict[str, Any]:
    """
    Train a behaviour policy through the zoo launcher and store it (see the module docstring).

    :param env_id: Gymnasium env id with an entry in ``hyperparams/<algo>.yml``.
    :param level: ``"medium"`` (early-stopped at :func:`medium_target_return`) or ``"expert"``.
    :param seed: Training seed (the env seed that ``medium-replay`` replays from).
    :param max_steps: Env-step budget.
    :param eval_freq: Env steps between evaluations (and checkpoints); a coarse one lets the medium policy
        overshoot its target between two evaluations.
    :param eval_episodes: Stochastic episodes per evaluation.
    :param algo: Zoo algorithm (SAC-based: ``sac_as_loop`` or ``sac``).
    :param work_dir: Zoo log folder, with the run's checkpoints (default: ``<dataset cache>/behaviour_runs/
        <env_id>/<level>``). A killed run continues from its latest checkpoint when the same call is
        made again (the launcher's ``--checkpoint-dir``).
    :param output_dir: Where the policy goes (default: ``behaviour_dir() / env_id``).
    :param target_return: Stop at this mean return instead (medium; needed for envs D4RL has no
        reference returns for).
    :return: The policy's record (also written to ``<level>.json``).
    """
    check_level(level)
    if level == "medium" and target_return is None:
        target_return = medium_target_return(env_id)
    target = target_return if level == "medium" else None
    output = Path(output_dir) if output_dir is not None else behaviour_dir() / env_id
    output.mkdir(parents=True, exist_ok=True)
    log_folder = Path(work_dir) if work_dir is not None else default_work_dir(env_id, level)
    arguments = _zoo_train_arguments(env_id, algo, seed, max_steps, log_folder, target, eval_freq, eval_episodes)
    from sb3_loop import zoo

    zoo.main(arguments)
    run_dir = _latest_run_dir(log_folder / algo, env_id)
    evaluations = _read_evaluations(log_folder / "behaviour_evaluations.jsonl")
    record = _store_policy(run_dir, env_id, level, output, algo, seed, evaluations, target, arguments)
    if level == "medium":
        record["medium_replay"] = _store_replay_actions(run_dir, env_id, seed, output / "medium-replay.npz")
    (output / f"{level}.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def default_work_dir(env_id: str, level: str) -> Path:
    from sb3_loop.datasets.registry import cache_dir

    return cache_dir() / "behaviour_runs" / env_id / level


def _read_evaluations(path: Path) -> list[dict[str, float]]:
    """The evaluations in step order; a step evaluated again after a resume keeps its latest record."""
    by_step = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        by_step[record["timesteps"]] = record
    return [by_step[step] for step in sorted(by_step)]


def _zoo_train_arguments(env_id, algo, seed, max_steps, log_folder, target, eval_freq, eval_episodes) -> list[str]:
    import yaml

    from sb3_loop.zoo import hyperparams_path

    entries = yaml.safe_load(hyperparams_path(algo).read_text())
    if env_id not in entries:
        raise ValueError(f"{hyperparams_path(algo)} has no entry for {env_id!r}: add one to train its behaviour policy")
    entry = dict(entries[env_id])
    entry["n_timesteps"] = int(max_steps)
    callback_kwargs = {
        "env_id": env_id, "target_return": target, "eval_freq": eval_freq, "n_eval_episodes": eval_episodes,
        "log_path": str(log_folder / "behaviour_evaluations.jsonl"),
    }  # fmt: skip
    entry["callback"] = [{f"{__name__}.StopAtReturn": callback_kwargs}]
    log_folder.mkdir(parents=True, exist_ok=True)
    conf = log_folder / f"{algo}_behaviour.yml"
    conf.write_text(yaml.safe_dump({env_id: entry}))
    return [
        "train", "--algo", algo, "--env", env_id, "--seed", str(seed), "--conf-file", str(conf),
        "--log-folder", str(log_folder), "--eval-freq", "-1", "--save-replay-buffer", "--num-threads", "1",
        "--checkpoint-dir", str(log_folder / "checkpoint"), "--checkpoint-freq", str(eval_freq),
    ]  # fmt: skip


def _latest_run_dir(algo_dir: Path, env_id: str) -> Path:
    runs = sorted(algo_dir.glob(f"{env_id}_*"), key=lambda path: int(path.name.rsplit("_", 1)[1]))
    if not runs:
        raise FileNotFoundError(f"the zoo wrote no run for {env_id} under {algo_dir}")
    return runs[-1]


def _store_policy(run_dir, env_id, level, output, algo, seed, evaluations, target, arguments) -> dict[str, Any]:
    from stable_baselines3 import SAC

    from sb3_loop.datasets.collect import file_sha256, normalized_or_none

    model = SAC.load(run_dir / f"{env_id}.zip", device="cpu", buffer_size=1)
    destination = output / f"{level}.zip"
    model.save(destination, exclude=["replay_buffer"])
    last = evaluations[-1]
    return {
        "env_id": env_id,
        "level": level,
        "algo": algo,
        "seed": seed,
        "timesteps": int(model.num_timesteps),
        "target_return": target,
        "eval_mean_return": last["mean_return"],
        "eval_normalized": normalized_or_none(env_id, last["mean_return"]),
        "evaluations": evaluations,
        "command": "python -m sb3_loop " + " ".join(arguments),
        "policy_sha256": file_sha256(destination),
    }


def _store_replay_actions(run_dir: Path, env_id: str, seed: int, destination: Path) -> dict[str, Any]:
    """
    Keep the training run's actions (env units), seed and restart rows, found by replaying the actions
    against the buffer: a run continued from a checkpoint restarted its env there with ``seed``.
    """
    from stable_baselines3.common.save_util import load_from_pkl

    buffer = load_from_pkl(run_dir / "replay_buffer.pkl")
    if buffer.full:
        raise DatasetError(f"{run_dir}: the replay buffer wrapped around; medium-replay needs the whole run")
    size = buffer.pos
    low, high = buffer.action_space.low, buffer.action_space.high
    actions = (low + 0.5 * (buffer.actions[:size, 0] + 1.0) * (high - low)).astype(np.float32)
    observations = buffer.observations[:size, 0].astype(np.float32)
    rebuilt, reseed_rows = _replay(env_id, actions, seed, expected_observations=observations)
    np.savez_compressed(destination, actions=actions, seed=np.int64(seed), reseed_rows=reseed_rows, env_id=np.array(env_id))
    mismatch = np.abs(rebuilt.observations - observations).max()
    if mismatch > 1e-5:
        raise DatasetError(f"replaying {destination} does not rebuild the training buffer (max obs error {mismatch})")
    return {"num_transitions": int(size), "checksum_sha256": rebuilt.checksum(), "reseed_rows": reseed_rows.tolist()}


def replay_actions(env_id: str, actions: np.ndarray, seed: int, reseed_rows: Sequence[int] = ()) -> OfflineDataset:
    """
    Step one ``env_id`` through ``actions`` as SB3's ``DummyVecEnv`` stepped the training run: reset
    with ``seed`` first and at each row of ``reseed_rows`` (where a resumed run restarted; the row
    before is then cut as a timeout), unseeded after each episode end; the transitions it goes through.
    """
    return _replay(env_id, actions, seed, reseed_rows=reseed_rows)[0]


def _replay(
    env_id: str,
    actions: np.ndarray,
    seed: int,
    reseed_rows: Sequence[int] = (),
    expected_observations: np.ndarray | None = None,
) -> tuple[OfflineDataset, np.ndarray]:
    """:func:`replay_actions`; given the run's observations, it also finds the rows where the run restarted."""
    env = gym.make(env_id)
    observation, _ = env.reset(seed=seed)
    restarts = {int(row) for row in reseed_rows}
    columns: dict[str, list] = {key: [] for key in ("observations", "next_observations", "rewards", "terminals", "timeouts")}
    for row, action in enumerate(actions):
        if row in restarts or (row > 0 and _restarted_here(env, observation, expected_observations, row, seed)):
            restarts.add(row)
            columns["timeouts"][-1] = not columns["terminals"][-1]
            observation, _ = env.reset(seed=seed)
        next_observation, reward, terminated, truncated, _ = env.step(action)
        columns["observations"].append(observation)
        columns["next_observations"].append(next_observation)
        columns["rewards"].append(reward)
        columns["terminals"].append(terminated)
        columns["timeouts"].append(truncated and not terminated)
        observation = env.reset()[0] if terminated or truncated else next_observation
    env.close()
    timeouts = np.array(columns["timeouts"])
    terminals = np.array(columns["terminals"])
    timeouts[-1] |= not terminals[-1]
    dataset = OfflineDataset(
        np.array(columns["observations"]), actions, np.array(columns["rewards"]),
        np.array(columns["next_observations"]), terminals, timeouts, source=f"{env_id} replayed actions",
    )  # fmt: skip
    return dataset, np.array(sorted(restarts), dtype=np.int64)


def _restarted_here(env: gym.Env, observation: np.ndarray, expected: np.ndarray | None, row: int, seed: int) -> bool:
    """Whether the run's row ``row`` starts from a reset with ``seed`` rather than from ``observation``."""
    if expected is None or np.array_equal(np.asarray(observation, dtype=np.float32), expected[row]):
        return False
    probe = gym.make(env_id_of(env))
    restarted = np.array_equal(np.asarray(probe.reset(seed=seed)[0], dtype=np.float32), expected[row])
    probe.close()
    return restarted


def env_id_of(env: gym.Env) -> str:
    return env.spec.id if env.spec is not None else str(env)
