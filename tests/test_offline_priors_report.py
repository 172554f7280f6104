"""The report of ``benchmarks/offline_priors.py``: final and late-training scores, and the target check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATASET = "Hopper-v5-medium"


@pytest.fixture
def offline_priors(import_benchmark):
    return import_benchmark("offline_priors")


def _write_record(results_dir: Path, algo: str, seed: int, scores: list[float]) -> None:
    folder = results_dir / "offline_priors" / "runs" / DATASET
    folder.mkdir(parents=True, exist_ok=True)
    evaluations = [{"gradient_steps": 100 * (i + 1), "score_mean": s} for i, s in enumerate(scores)]
    record = {"dataset": DATASET, "algo": algo, "seed": seed, "steps": 100 * len(scores), "steps_per_second": 50.0}
    (folder / f"{algo}_seed{seed}.json").write_text(json.dumps({**record, "evaluations": evaluations}))


def test_late_scores_average_each_runs_last_evaluations_before_the_seeds(offline_priors) -> None:
    records = [
        {"dataset": DATASET, "algo": "ours-crr", "evaluations": [{"score_mean": s} for s in (0.0, 10.0, 20.0, 30.0)]},
        {"dataset": DATASET, "algo": "ours-crr", "evaluations": [{"score_mean": s} for s in (5.0, 5.0, 5.0, 50.0)]},
    ]
    assert offline_priors.run_scores(records) == {(DATASET, "ours-crr"): [30.0, 50.0]}
    assert offline_priors.run_scores(records, last=3) == {(DATASET, "ours-crr"): [20.0, 20.0]}


def test_a_final_dip_misses_the_target_that_the_late_mean_meets(
    offline_priors, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_record(tmp_path, "ours-td3bc", 0, [40.0, 40.0, 40.0, 10.0])  # final 10, late mean 30
    _write_record(tmp_path, "d3rlpy-td3bc", 0, [30.0, 30.0, 30.0, 30.0])
    _write_record(tmp_path, "ours-crr", 0, [20.0, 20.0, 20.0, 20.0])
    _write_record(tmp_path, "d3rlpy-crr", 0, [21.0, 21.0, 21.0, 21.0])
    monkeypatch.setattr(offline_priors, "plot", lambda *args: None)  # the plot is not what this test checks
    offline_priors.write_report(tmp_path)
    report = (tmp_path / "offline_priors.md").read_text()
    final_part, late_part = report.split("mean over its last 3 evaluations")
    assert f"missed by TD3BC on {DATASET} (-20.00)" in final_part and "CRR on" not in final_part
    assert "met on every cell" in late_part
    assert "| 30.0 ± 0.0 (n=1) | 30.0 ± 0.0 (n=1) | -1.0 | +0.0 |" in late_part
