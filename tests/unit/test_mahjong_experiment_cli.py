"""The command line of benchmarks/mahjong_experiment.py: which training runs ``--curve`` makes, and the
``--curve-traces`` refusals (an unknown or empty list fails at parse time, naming the flag, not minutes into a
training job)."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import REPO

_spec = importlib.util.spec_from_file_location("mahjong_experiment", REPO / "benchmarks" / "mahjong_experiment.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_default_curve_is_old_and_new_trace_then_the_closed_loop():
    args = bench.build_parser().parse_args(["--curve", "--curve-sizes", "300,600"])
    assert bench.curve_runs(args) == [
        ("decompose", 300, 1),
        ("decompose", 600, 1),
        ("suits", 300, 1),
        ("suits", 600, 1),
        ("suits", 600, 3),
    ]


def test_curve_traces_extends_one_trace_and_rounds_compare_0_drops_the_closed_loop():
    args = bench.build_parser().parse_args(
        ["--curve", "--curve-traces", "suits", "--curve-sizes", "2400,4800", "--rounds-compare", "0"]
    )
    assert bench.curve_runs(args) == [("suits", 2400, 1), ("suits", 4800, 1)]


@pytest.mark.parametrize(
    ("value", "reason"),
    [("suits,bogus", "unknown trace bogus (known: waits, candidates, decompose, suits)"), (",", "at least one")],
)
def test_curve_traces_refuses_unknown_or_empty(value, reason, capsys):
    with pytest.raises(SystemExit) as exited:
        bench.build_parser().parse_args(["--curve-traces", value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --curve-traces" in err and reason in err
