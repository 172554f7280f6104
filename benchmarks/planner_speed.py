"""Milliseconds per planned action of ARC (paper config, HalfCheetah sizes) vs its compute floor, and of
the other planners (CEM, MPPI, random shooting) with the same settings, ensemble, actor and critic.

Usage: python benchmarks/planner_speed.py [--repeats 30] [--device cpu|cuda] [--out benchmarks/results/planner_speed.md]

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
from sb3_loop.planning.planners import PLANNER_NAMES, build_planner
from sb3_loop.planning.sampling import SamplingPlanner

OBS_DIM, ACTION_DIM = 17, 6  # HalfCheetah-v5
RESULTS_DIR = Path(__file__).parent / "results"


def mlp(sizes: list[int], out_act: nn.Module | None = None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    if out_act is not None:
        layers.append(out_act)
    return nn.Sequential(*layers)


def make_planner(propagation: str, name: str = "arc", device: str = "cpu") -> SamplingPlanner:
    """Planner ``name`` with the paper's online ARC settings (H=3, N=100, P=4, 5 iterations) where it has them."""
    model = ProbabilisticEnsemble(OBS_DIM, ACTION_DIM, ensemble_size=7, num_elites=5, hidden_sizes=(200,) * 4)
    actor = mlp([OBS_DIM, 256, 256, ACTION_DIM], nn.Tanh())
    critic = mlp([OBS_DIM + ACTION_DIM, 256, 256, 1])
    model, actor, critic = model.to(device), actor.to(device), critic.to(device)
    value_fn = lambda obs, act: critic(torch.cat((obs, act), dim=-1))  # noqa: E731
    settings = vars(ARCConfig(propagation=propagation))
    bounds = torch.ones(ACTION_DIM, device=device)
    return build_planner(name, model, actor, value_fn, -bounds, bounds, settings)


def time_planner(planner: SamplingPlanner, batch: int, repeats: int, device: str = "cpu") -> float:
    obs = torch.randn(batch, OBS_DIM, device=device)
    for _ in range(3):
        planner.plan(obs)
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        planner.plan(obs)
    _synchronize(device)
    return (time.perf_counter() - start) / repeats * 1e3


def _synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def compute_floor(planner: ARCPlanner, batch: int, repeats: int, device: str = "cpu") -> float:
    """The planner's matrix products alone (same shapes and counts), in ms per call."""
    cfg, model = planner.config, planner.model
    elites = model.num_elites
    num_seq = cfg.population_size + cfg.num_actor_sequences
    rows = num_seq * cfg.num_particles
    per_member = rows if cfg.propagation == "paper" else -(-rows // elites)
    rows_total = batch * per_member * (elites if cfg.propagation == "paper" else 1)
    if cfg.propagation != "paper":
        rows_total = batch * per_member * elites
    x_model = torch.randn(elites, batch * per_member, model.input_dim, device=device)
    x_critic = torch.randn(rows_total, OBS_DIM + ACTION_DIM, device=device)
    x_actor_model = torch.randn(elites, batch * cfg.num_actor_sequences, model.input_dim, device=device)
    x_actor = torch.randn(batch * cfg.num_actor_sequences, OBS_DIM, device=device)

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
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    _synchronize(device)
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--device", default="cpu", help="torch device of the networks and the planner")
    parser.add_argument("--out", type=Path, default=None, help="default: results/planner_speed.md (_gpu on cuda)")
    args = parser.parse_args()
    on_gpu = torch.device(args.device).type == "cuda"
    out = args.out or RESULTS_DIR / ("planner_speed_gpu.md" if on_gpu else "planner_speed.md")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    floor_rows = arc_against_floor(args.repeats, args.device)
    planner_rows = planners_side_by_side(args.repeats, args.device)
    command = f"python benchmarks/planner_speed.py --repeats {args.repeats}" + (f" --device {args.device}" if on_gpu else "")
    hardware = torch.cuda.get_device_name(args.device) if on_gpu else platform.processor() or platform.machine()
    lines = [
        "# Planner speed",
        "",
        f"Command: `{command}`  ",
        f"Config: paper online ARC (H=3, N=100, P=4, 5 iterations, mixture 0.05), 7 members of 4x200 "
        f"(5 elites), critic and actor 2x256, obs {OBS_DIM} / action {ACTION_DIM}, `torch.set_num_threads(1)`, "
        f"torch {torch.__version__}, device {args.device} ({hardware}).  ",
        "Floor = the same batched matrix products alone, no planner logic, measured in the same run.",
        "",
        "## ARC against its compute floor",
        "",
        "| propagation | B (envs) | ms per plan call | ms per action | compute floor (ms) | plan / floor |",
        "|---|---|---|---|---|---|",
        *[f"| {p} | {b} | {ms:.1f} | {per:.1f} | {fl:.1f} | {ratio:.2f} |" for p, b, ms, per, fl, ratio in floor_rows],
        "",
        "For scale: the paper's reference implementation takes about 630 ms per action for this config "
        "on one thread of this machine (figure from ../shared/DESIGN.md, not re-measured here).",
        "",
        "## The planners side by side (default `random_elite` propagation, the same settings)",
        "",
        "CEM, MPPI and random shooting make no actor proposals; ARC adds 5 actor-driven sequences to its 100 in "
        "each iteration; random shooting draws its 100 x 5 sequences at once. Ratios are measured in the same run.",
        "",
        "| planner | B (envs) | ms per plan call | ms per action | / ARC |",
        "|---|---|---|---|---|",
        *[f"| {name} | {b} | {ms:.1f} | {ms / b:.1f} | {ratio:.2f} |" for name, b, ms, ratio in planner_rows],
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


def arc_against_floor(repeats: int, device: str) -> list[tuple]:
    rows = []
    for propagation in ("paper", "random_elite"):
        planner = make_planner(propagation, device=device)
        for batch in (1, 4):
            floor = compute_floor(planner, batch, repeats, device)
            plan_ms = time_planner(planner, batch, repeats, device)
            rows.append((propagation, batch, plan_ms, plan_ms / batch, floor, plan_ms / floor))
            print(f"{propagation:>12} B={batch}: {plan_ms:7.1f} ms/call  {plan_ms / batch:6.1f} ms/action  "
                  f"floor {floor:7.1f} ms  ratio {plan_ms / floor:.2f}", flush=True)  # fmt: skip
    return rows


def planners_side_by_side(repeats: int, device: str) -> list[tuple]:
    """ms per plan call of every planner at B = 1 and 4, with the ratio to ARC's in the same run."""
    timings = {}
    for name in PLANNER_NAMES:
        planner = make_planner("random_elite", name, device)
        for batch in (1, 4):
            timings[name, batch] = time_planner(planner, batch, repeats, device)
            print(f"{name:>9} B={batch}: {timings[name, batch]:7.1f} ms/call", flush=True)
    return [(name, batch, ms, ms / timings["arc", batch]) for (name, batch), ms in timings.items()]


if __name__ == "__main__":
    main()
