"""Shared pytest setup: make ``tests/`` importable (``from analytic import ...``) and use one thread."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

torch.set_num_threads(1)

BENCHMARKS = Path(_TESTS_DIR).parent / "benchmarks"


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread():
    """The test machine has 2 shared cores: keep torch on one thread."""
    torch.set_num_threads(1)
    yield


@pytest.fixture
def import_benchmark(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    """Import a script of ``benchmarks/`` by its module name (``import_benchmark("safe")``)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module
