"""
``python -m sb3_loop collect ENV_ID --kind KIND`` and ``python -m sb3_loop behaviour ENV_ID --level LEVEL``.

``collect`` builds a dataset into the cache (``$SB3_LOOP_DATASETS``, see
:mod:`sb3_loop.datasets.registry`) in D4RL's HDF5 format and, with ``--format minari``, as a Minari
dataset; it writes ``<kind>.json`` (metadata with the checksum) next to the HDF5 file. With
``--record`` the metadata also goes into the behaviour folder, to be committed: a later rebuild on
another machine is then checked against its checksum.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sb3_loop.datasets import behaviour
from sb3_loop.datasets.collect import (
    collect_rollouts,
    describe_dataset,
    file_sha256,
    load_behaviour_model,
    write_metadata,
)
from sb3_loop.datasets.dataset import OfflineDataset
from sb3_loop.datasets.registry import DATASET_KINDS, build_command, dataset_path, minari_dataset_id

D4RL_NUM_TRANSITIONS = 1_000_000


def collect_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sb3_loop collect", description="Make a D4RL-style dataset here.")
    parser.add_argument("env_id", help="Gymnasium env id, e.g. Hopper-v5")
    parser.add_argument("--kind", required=True, choices=DATASET_KINDS)
    parser.add_argument(
        "-n",
        "--n-transitions",
        type=int,
        default=D4RL_NUM_TRANSITIONS,
        help="rows per rollout dataset (D4RL: 1M; medium-replay is the whole training run)",
    )
    parser.add_argument("--seed", type=int, default=0, help="env i is seeded seed+i")
    parser.add_argument("--n-envs", type=int, default=16, help="envs stepped together (per worker)")
    parser.add_argument(
        "--n-workers", type=int, default=2, help="processes sharing the rollouts (the data depend on it; 1 = this process)"
    )
    parser.add_argument("--policy", default=None, help="behaviour policy .zip (default: the behaviour folder's)")
    parser.add_argument("--policy-algo", default="sac", help="algorithm of --policy (sac, td3, tqc, ...)")
    parser.add_argument("--deterministic", action="store_true", help="act with the policy's mean action")
    parser.add_argument("--format", nargs="+", default=["hdf5"], choices=["hdf5", "minari"])
    parser.add_argument("--output", default=None, help="HDF5 path (default: the cache)")
    parser.add_argument("--record", action="store_true", help="also write the metadata into the behaviour folder")
    parser.add_argument("--no-progress", action="store_true")
    return parser  # fmt: skip


def behaviour_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sb3_loop behaviour", description="Train a behaviour policy.")
    parser.add_argument("env_id")
    parser.add_argument("--level", required=True, choices=behaviour.BEHAVIOUR_LEVELS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=300_000)
    parser.add_argument("--eval-freq", type=int, default=1000, help="env steps between evaluations (and checkpoints)")
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--algo", default="sac_as_loop", choices=["sac_as_loop", "sac"])
    parser.add_argument(
        "--target-return",
        type=float,
        default=None,
        help="medium: stop at this mean return (default: a third of D4RL's random-to-expert range)",
    )
    parser.add_argument(
        "--work-dir",
        default=None,
        help="the zoo run and its checkpoints (default: <cache>/behaviour_runs/ENV/LEVEL); "
        "the same command again continues a killed run",
    )
    return parser


def main_behaviour(argv: Sequence[str]) -> None:
    args = behaviour_parser().parse_args(list(argv))
    record = behaviour.train_behaviour(
        args.env_id,
        args.level,
        args.seed,
        args.max_steps,
        args.eval_freq,
        args.eval_episodes,
        args.algo,
        args.work_dir,
        target_return=args.target_return,
    )
    print(json.dumps({key: value for key, value in record.items() if key != "evaluations"}, indent=2))


def main_collect(argv: Sequence[str]) -> OfflineDataset:
    args = collect_parser().parse_args(list(argv))
    start = time.perf_counter()
    dataset, extra = build_dataset(args)
    extra["seconds"] = round(time.perf_counter() - start, 1)
    extra["command"] = "python -m sb3_loop collect " + " ".join(argv)
    dataset.metadata = describe_dataset(dataset, args.env_id, args.kind, **extra)
    write_outputs(dataset, args)
    summary = {key: dataset.metadata[key] for key in ("num_transitions", "num_episodes", "episode_return_mean", "seconds")}
    print(f"{args.env_id} {args.kind}: {summary}")
    return dataset


def build_dataset(args: argparse.Namespace) -> tuple[OfflineDataset, dict[str, Any]]:
    """The dataset ``args`` asks for, and what to record about how it was made."""
    if args.kind == "medium-replay":
        return _medium_replay(args.env_id)
    if args.kind == "medium-expert":
        parts = [_rollouts(args, level)[0] for level in ("medium", "expert")]
        return OfflineDataset.concatenate(parts), {"parts": ["medium", "expert"], "seed": args.seed}
    if args.kind == "random":
        dataset = _collect(args, None, "sac")
        return dataset, {"behaviour_policy": "uniform random actions", "seed": args.seed, "n_workers": args.n_workers}
    return _rollouts(args, args.kind)


def _rollouts(args: argparse.Namespace, level: str) -> tuple[OfflineDataset, dict[str, Any]]:
    path, algo = (Path(args.policy), args.policy_algo) if args.policy else (behaviour.policy_path(args.env_id, level), "sac")
    if not path.is_file():
        raise SystemExit(
            f"no {level} behaviour policy for {args.env_id} at {path}: train it with "
            f"`python -m sb3_loop behaviour {args.env_id} --level {level}` or pass --policy"
        )
    load_behaviour_model(path, algo)  # fails here, in this process, on a bad file
    dataset = _collect(args, path, algo)
    extra = {"behaviour_policy": str(path.name), "behaviour_algo": algo, "behaviour_sha256": file_sha256(path),
             "deterministic_actions": args.deterministic, "seed": args.seed, "n_envs": args.n_envs,
             "n_workers": args.n_workers}  # fmt: skip
    extra.update(_policy_record(path))
    return dataset, extra


def _collect(args: argparse.Namespace, path: Path | None, algo: str) -> OfflineDataset:
    return collect_rollouts(args.env_id, path, args.n_transitions, args.seed, args.n_envs, args.n_workers, algo,
                            args.deterministic, not args.no_progress)  # fmt: skip


def _policy_record(path: Path) -> dict[str, Any]:
    record_path = path.with_suffix(".json")
    if not record_path.is_file():
        return {}
    record = json.loads(record_path.read_text())
    return {f"behaviour_{key}": record[key] for key in ("eval_mean_return", "eval_normalized", "timesteps") if key in record}


def _medium_replay(env_id: str) -> tuple[OfflineDataset, dict[str, Any]]:
    path = behaviour.replay_actions_path(env_id)
    if not path.is_file():
        raise SystemExit(
            f"no medium-replay actions for {env_id} at {path}: train the medium behaviour policy with "
            f"`python -m sb3_loop behaviour {env_id} --level medium`"
        )
    stored = np.load(path)
    seed = int(stored["seed"])
    reseed_rows = stored["reseed_rows"] if "reseed_rows" in stored else ()
    dataset = behaviour.replay_actions(env_id, stored["actions"], seed, reseed_rows)
    return dataset, {"behaviour_policy": "SAC training run up to medium (replayed actions)", "seed": seed}


def write_outputs(dataset: OfflineDataset, args: argparse.Namespace) -> None:
    from sb3_loop.datasets.hdf5 import write_d4rl_hdf5

    output = Path(args.output) if args.output else dataset_path(args.env_id, args.kind)
    recorded = _recorded_metadata(args)
    if "hdf5" in args.format:
        write_d4rl_hdf5(dataset, output)
        write_metadata(dataset.metadata, output.with_suffix(".json"))
        print(f"wrote {output} ({len(dataset)} transitions)")
    if "minari" in args.format:
        from sb3_loop.datasets.minari_io import write_minari

        dataset_id = minari_dataset_id(args.env_id, args.kind)
        write_minari(dataset, dataset_id, env_id=args.env_id)
        print(f"wrote Minari dataset {dataset_id}")
    if args.record:
        write_metadata(dataset.metadata, behaviour.behaviour_dir() / args.env_id / f"{args.kind}.dataset.json")
    elif recorded is not None and recorded.get("checksum_sha256") != dataset.metadata["checksum_sha256"]:
        same_recipe = all(recorded.get(key) == dataset.metadata.get(key) for key in ("num_transitions", "seed"))
        if same_recipe:
            print(f"warning: this rebuild differs from the recorded dataset ({build_command(args.env_id, args.kind)} "
                  "on another machine or with other MuJoCo versions can change the numbers)")  # fmt: skip


def _recorded_metadata(args: argparse.Namespace) -> dict[str, Any] | None:
    path = behaviour.behaviour_dir() / args.env_id / f"{args.kind}.dataset.json"
    return json.loads(path.read_text()) if path.is_file() else None
