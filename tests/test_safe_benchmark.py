"""``--params`` of ``benchmarks/safe.py``: variants of the packaged hyperparameters, kept apart from their records."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TASK = "SafetyHopperVelocity-v1"


@pytest.fixture
def safe(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("safe")


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
