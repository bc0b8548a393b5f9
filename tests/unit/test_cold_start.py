"""Every handler module pulls in no heavy library at import (what keeps a cold start short). The import time
itself is a figure of benchmarks/cold_start_bench.py (median of fresh interpreters against its 300 ms budget),
not a test: a timed test fails on a busy machine, not on a slow handler."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import REPO

_spec = importlib.util.spec_from_file_location("cold_start_bench", REPO / "benchmarks" / "cold_start_bench.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_benchmark_covers_every_handler_in_the_template():
    modules = bench.handler_modules()
    assert "validate_spec.app" in modules and "check_latency.app" in modules and len(modules) == 9


@pytest.mark.parametrize("module", bench.handler_modules())
def test_handler_imports_no_heavy_library(module):
    row = bench.measure(module, repeats=1)
    assert row["heavy_imports"] == [], row
