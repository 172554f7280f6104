"""examples/quickstart.py (``make train``) end to end with tiny settings: table, PNG and model are produced."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch

from sb3_loop import LOOP

torch.set_num_threads(1)

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"

#: Small networks for both learners (kept matched), and a tiny planner and ensemble for LOOP.
SHARED_KWARGS = dict(policy_kwargs=dict(net_arch=[16, 16]), batch_size=32)
LOOP_KWARGS = dict(
    population_size=8,
    num_particles=2,
    planning_iterations=2,
    ensemble_size=2,
    num_elites=1,
    dynamics_hidden_sizes=(16,),
    dynamics_train_freq=50,
    dynamics_batch_size=32,
)


def load_quickstart() -> ModuleType:
    spec = importlib.util.spec_from_file_location("quickstart", QUICKSTART)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quickstart_prints_table_saves_plot_and_model(tmp_path, capsys):
    quickstart = load_quickstart()
    save = tmp_path / "out" / "loop_tiny"
    argv = ["--steps", "150", "--learning-starts", "50", "--eval-freq", "100", "--eval-episodes", "2", "--seed", "3"]
    results = quickstart.main([*argv, "--save", str(save)], shared_kwargs=SHARED_KWARGS, loop_kwargs=LOOP_KWARGS)

    names = [quickstart.PLANNER, quickstart.ACTOR, quickstart.BASELINE]
    assert list(results.curves) == names
    for curve in results.curves.values():
        assert curve.steps == [100, 150]  # every --eval-freq steps, and at the end
        assert len(curve.means) == len(curve.stds) == 2
        assert all(-3000 < mean <= 0 for mean in curve.means)  # Pendulum-v1 returns of 200-step episodes
    assert set(results.seconds) == {"LOOP", "SAC"}

    output = capsys.readouterr().out
    assert "Pendulum-v1, seed 3" in output and "2 deterministic episodes" in output
    header = next(line for line in output.splitlines() if line.strip().startswith("steps |"))
    assert all(name in header for name in names)
    rows = [line.split("|")[0].strip() for line in output.splitlines() if "|" in line and "steps" not in line]
    assert rows == ["100", "150"]
    assert "after 150 steps: LOOP planner" in output and "wall-clock:" in output

    assert results.plot_path == save.with_suffix(".png")
    assert results.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results.model_path == save.with_suffix(".zip") and results.model_path.exists()
    loaded = LOOP.load(results.model_path)
    assert loaded.policy.arc_config.population_size == LOOP_KWARGS["population_size"]


def test_quickstart_without_plot_or_sac(tmp_path, capsys):
    quickstart = load_quickstart()
    save = tmp_path / "loop_tiny"
    argv = ["--steps", "60", "--learning-starts", "50", "--eval-freq", "100", "--eval-episodes", "1"]
    results = quickstart.main(
        [*argv, "--save", str(save), "--plot", "none", "--no-sac"], shared_kwargs=SHARED_KWARGS, loop_kwargs=LOOP_KWARGS
    )
    assert list(results.curves) == [quickstart.PLANNER, quickstart.ACTOR]
    assert results.curves[quickstart.PLANNER].steps == [60]  # eval_freq > steps: evaluated at the end only
    assert results.plot_path is None and not save.with_suffix(".png").exists()
    assert save.with_suffix(".zip").exists()
    assert "SAC (stock SB3" not in capsys.readouterr().out
