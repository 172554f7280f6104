"""``--params`` of ``benchmarks/safe.py``: variants of the packaged hyperparameters, kept apart from their records."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TASK = "SafetyHopperVelocity-v1"


@pytest.fixture
def safe(import_benchmark):
    return import_benchmark("safe")


def test_params_are_read_as_yaml_and_override_the_packaged_entry(safe) -> None:
    params = safe.parse_params(["critic_cost_penalty=2", "horizon=5", "cost_fn=null"])
    assert params == {"critic_cost_penalty": 2, "horizon": 5, "cost_fn": None}
    packaged = safe.algorithm_kwargs("safe_loop", TASK)
    variant = safe.algorithm_kwargs("safe_loop", TASK, params=params)
    assert variant == {**packaged, **params} and packaged.get("horizon") != 5
    with pytest.raises(SystemExit, match="'horizon' is not KEY=VALUE"):
        safe.parse_params(["horizon"])


def test_a_variant_needs_its_own_folders(tmp_path: Path) -> None:
    command = [sys.executable, str(BENCHMARKS / "safe.py"), "--only", TASK, "safe_loop", "0", "--params", "horizon=5"]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--results-dir and a --runs-dir of its own" in refused.stderr
    refused = subprocess.run([*command, "--results-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "of its own" in refused.stderr


def _record(algo: str, seed: int, returns: list[float], costs: list[float], **kwargs: object) -> dict:
    evaluation = {"steps": 30_000, "returns": returns, "costs": costs}
    settings = {"eval_episodes": len(returns), "smoke": False, "kwargs": kwargs}
    return {"task": TASK, "algo": algo, "seed": seed, "settings": settings, "evaluations": [evaluation],
            "wall_clock_s": 3600.0}  # fmt: skip


def _write(safe, folder: Path, record: dict) -> None:
    safe._write_json(folder / safe.RECORDS_DIR / TASK / f"{record['algo']}_seed{record['seed']}.json", record)


def test_a_variant_report_borrows_the_packaged_runs_and_checks_targets_on_matched_seeds(safe, tmp_path: Path) -> None:
    packaged, variant = tmp_path / "packaged", tmp_path / "variant"
    for seed, (loop_return, loop_cost) in enumerate([(500.0, 100.0), (1000.0, 300.0)]):
        _write(safe, packaged, _record("loop", seed, [loop_return], [loop_cost]))
        _write(safe, packaged, _record("sac_lag", seed, [400.0], [50.0]))
        _write(safe, packaged, _record("safe_loop", seed, [100.0 + seed], [4.0]))
    penalised = safe.algorithm_kwargs("safe_loop", TASK, params={"critic_cost_penalty": 2})
    _write(safe, variant, _record("safe_loop", 1, [820.0, 780.0], [25.0, 31.0], **penalised))

    report = safe.write_report(variant, TASK, baseline_dir=packaged).read_text()
    assert "| LOOP (packaged) | 2 |" in report and "| SafeLOOP (critic_cost_penalty=2) | 1 |" in report
    assert "| SafeLOOP (packaged, same seeds) | 1 | 30000 | 101.0 |" in report
    assert "| 1 | 1000.0 / 300.0 | 800.0 / 28.0 | 400.0 / 50.0 | 101.0 / 4.0 |" in report
    # seed 1 alone: cost 28.0 <= 30.0 and return ratio 0.8; against both LOOP seeds the cost target would fail
    assert "- seed 1: cost 28.0 vs LOOP's 300.0 (target <= 30.0): met" in report
    assert "ratio 0.800, target >= 0.80): met" in report
    assert "- seed 1: cost 28.0 vs SAC-Lagrangian's 50.0: met" in report
    assert "(packaged)" not in safe.write_report(packaged, TASK).read_text()
