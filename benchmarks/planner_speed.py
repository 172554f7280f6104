"""Milliseconds per planned action of ARC (paper config, HalfCheetah sizes) vs its compute floor.

Usage: python benchmarks/planner_speed.py [--repeats 30] [--out benchmarks/results/planner_speed.md]

The compute floor runs the same batched matrix products as the planner (ensemble layers, critic and
actor MLPs, at the same batch shapes and counts) with no planner logic: it is what an ideal
implementation of the same algorithm could not go below on this machine.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from sb3_loop.dynamics.ensemble import ProbabilisticEnsemble
from sb3_loop.planning import ARCConfig, ARCPlanner

OBS_DIM, ACTION_DIM = 17, 6  # HalfCheetah-v5


def mlp(sizes: list[int], out_act: nn.Module | None = None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    if out_act is not None:
        layers.append(out_act)
    return nn.Sequential(*layers)


def make_planner(propagation: str) -> ARCPlanner:
    model = ProbabilisticEnsemble(OBS_DIM, ACTION_DIM, ensemble_size=7, num_elites=5, hidden_sizes=(200,) * 4)
    actor = mlp([OBS_DIM, 256, 256, ACTION_DIM], nn.Tanh())
    critic = mlp([OBS_DIM + ACTION_DIM, 256, 256, 1])
    value_fn = lambda obs, act: critic(torch.cat((obs, act), dim=-1))  # noqa: E731
    config = ARCConfig(propagation=propagation)  # paper defaults: H=3, N=100, P=4, 5 iterations
    return ARCPlanner(model, actor, value_fn, [-1.0] * ACTION_DIM, [1.0] * ACTION_DIM, config)


def time_planner(planner: ARCPlanner, batch: int, repeats: int) -> float:
    obs = torch.randn(batch, OBS_DIM)
    for _ in range(3):
        planner.plan(obs)
    start = time.perf_counter()
    for _ in range(repeats):
        planner.plan(obs)
    return (time.perf_counter() - start) / repeats * 1e3


@torch.no_grad()
def compute_floor(planner: ARCPlanner, batch: int, repeats: int) -> float:
    """The planner's matrix products alone (same shapes and counts), in ms per call."""
    cfg, model = planner.config, planner.model
    elites = model.num_elites
    num_seq = cfg.population_size + cfg.num_actor_sequences
    rows = num_seq * cfg.num_particles
    per_member = rows if cfg.propagation == "paper" else -(-rows // elites)
    rows_total = batch * per_member * (elites if cfg.propagation == "paper" else 1)
    if cfg.propagation != "paper":
        rows_total = batch * per_member * elites
    x_model = torch.randn(elites, batch * per_member, model.input_dim)
    x_critic = torch.randn(rows_total, OBS_DIM + ACTION_DIM)
    x_actor_model = torch.randn(elites, batch * cfg.num_actor_sequences, model.input_dim)
    x_actor = torch.randn(batch * cfg.num_actor_sequences, OBS_DIM)

    def ensemble(x: torch.Tensor) -> torch.Tensor:
        for layer in model.hidden_layers:
            x = F.silu(torch.baddbmm(layer.bias[:elites], x, layer.weight[:elites]))
        return torch.baddbmm(model.output_layer.bias[:elites], x, model.output_layer.weight[:elites])

    critic = planner.value_fn

    def once() -> None:
        for t in range(cfg.horizon):
            planner.actor(x_actor)
            if t < cfg.horizon - 1:
                ensemble(x_actor_model)
        for _ in range(cfg.iterations):
            for _ in range(cfg.horizon - 1):
                ensemble(x_model)
            critic(x_critic[:, :OBS_DIM], x_critic[:, OBS_DIM:])

    for _ in range(3):
        once()
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "planner_speed.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    for propagation in ("paper", "random_elite"):
        planner = make_planner(propagation)
        for batch in (1, 4):
            floor = compute_floor(planner, batch, args.repeats)
            plan_ms = time_planner(planner, batch, args.repeats)
            rows.append((propagation, batch, plan_ms, plan_ms / batch, floor, plan_ms / floor))
            print(f"{propagation:>12} B={batch}: {plan_ms:7.1f} ms/call  {plan_ms / batch:6.1f} ms/action  "
                  f"floor {floor:7.1f} ms  ratio {plan_ms / floor:.2f}", flush=True)
    lines = [
        "# ARC planner speed",
        "",
        f"Command: `python benchmarks/planner_speed.py --repeats {args.repeats}`  ",
        f"Config: paper online ARC (H=3, N=100, P=4, 5 iterations, mixture 0.05), 7 members of 4x200 "
        f"(5 elites), critic and actor 2x256, obs {OBS_DIM} / action {ACTION_DIM}, `torch.set_num_threads(1)`, "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}.  ",
        "Floor = the same batched matrix products alone, no planner logic, measured in the same run.",
        "",
        "| propagation | B (envs) | ms per plan call | ms per action | compute floor (ms) | plan / floor |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {p} | {b} | {ms:.1f} | {per:.1f} | {fl:.1f} | {ratio:.2f} |" for p, b, ms, per, fl, ratio in rows]
    lines.append("")
    lines.append("For scale: the paper's reference implementation takes about 630 ms per action for this config "
                 "on one thread of this machine (figure from ../shared/DESIGN.md, not re-measured here).")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
