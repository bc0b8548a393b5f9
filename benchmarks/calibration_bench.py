"""Calibration benchmark: the same local spec run twice through the whole local pipeline; predicted vs measured.

Each run is ``stratos run`` (the embedded AWS, the real ASL and handlers, the real training container on the
PyPI models) with a fresh ``STRATOS_HOME``, so the first run plans with the estimators alone and the second
with the first run's record (:mod:`stratos.planner.calibration`: the record is put into the second run's runs
table, so its SelectPlan calibrates the expected accuracy, and its prediction for this machine's local instance
profile calibrates the training time). Per run: the expected accuracy and the training hours predicted (with
band and the runs they were calibrated on) against the measured ones, and the errors. The claim checked: the
second run's prediction error is smaller than the first's for accuracy and for training time.

The spec is ``events/specs/word-forms-local.json`` made small enough for a few minutes a run on 2 cores: the
first ``--train`` / ``--eval`` rows of ``events/data/word-forms`` (default 96 / 24), the distillation mode fixed
to ``alignment`` (the same-tokenizer pair SmolLM2-135M -> its 15-layer copy; a run whose ``auto`` switch ran
another mode than planned does not calibrate accuracy). The post-deploy latency check runs as ``stratos run``
runs it (``--latency-check report``: a miss on this CPU is recorded, not rolled back).

Warm-up: the first training job on a quiet machine ran its first evaluations 5-8x slower than every later job
(teacher 9-14 s vs 1.8 s on 24 rows, measured 2026-12-04), a one-time cost that has nothing to do with the
estimators; unless ``--no-warmup``, one run of the same spec in a throwaway ``STRATOS_HOME`` comes first, so the
two measured runs do the same work. The machine's profile is measured before it (cached in the home).

Usage: ``python benchmarks/calibration_bench.py [--json] [--train N] [--eval N] [--home DIR]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "functions"))
sys.path.insert(0, str(REPO / "functions" / "lambda"))

SPEC = REPO / "events" / "specs" / "word-forms-local.json"
DATA = REPO / "events" / "data" / "word-forms"
RUNS = 2


def bench_inputs(folder: Path, train: int, eval_rows: int) -> tuple[Path, Path]:
    """Write the benchmark's spec and data (the first ``train`` / ``eval_rows`` rows) under ``folder``."""
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.jsonl", train), ("eval.jsonl", eval_rows)):
        lines = [line for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]
        (data / name).write_text("\n".join(lines[:rows]) + "\n", encoding="utf-8")
    doc = json.loads(SPEC.read_text(encoding="utf-8"))
    doc["task_id"] = "calibration-bench"
    doc["distillation"] = {"mode": "alignment"}
    doc["deployment"]["endpoint_name"] = "calibration-bench-student"
    spec = folder / "calibration-bench.json"
    spec.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return spec, data


def _figure(pva: dict[str, Any], key: str) -> dict[str, Any]:
    c = pva.get(key) or {}
    predicted, actual = c.get("predicted"), c.get("actual")
    error = None if predicted is None or actual is None else actual - predicted
    return {
        "predicted": predicted,
        "band": c.get("band"),
        "runs": c.get("runs"),
        "uncalibrated": c.get("uncalibrated"),
        "actual": actual,
        "abs_error": None if error is None else abs(error),
        "abs_relative_error": None if error is None or not predicted else abs(error / predicted),
    }


def run_twice(home: Path, spec: Path, data: Path, warmup: Path | None = None) -> dict[str, Any]:
    """Run ``spec`` twice in ``home`` (after one discarded run in ``warmup``, when given); the predicted-vs-actual
    figures of each run and the verdict."""
    from stratos_cli.local.profile import load_profile
    from stratos_cli.local.run import LocalRunOptions, run_local
    from stratos_cli.local.serving import stop_all

    rows: list[dict[str, Any]] = []
    profile = load_profile(home)
    try:
        if warmup is not None:
            run_local(
                LocalRunOptions(spec_path=spec, data_dir=data, force=True, serve=False, home=warmup, profile=profile)
            )
        for index in range(1, RUNS + 1):
            options = LocalRunOptions(
                spec_path=spec, data_dir=data, force=True, serve=False, home=home, profile=profile
            )
            started = time.perf_counter()
            result = run_local(options)
            pva = result.predicted_vs_actual or {}
            rows.append(
                {
                    "run": index,
                    "run_id": result.run_id,
                    "status": result.status,
                    "error": result.error,
                    "reason": result.reason[:300],
                    "wall_s": round(time.perf_counter() - started, 1),
                    "plan": result.plan,
                    "mode": result.mode,
                    "profile": result.profile,
                    "training_instance": pva.get("training_instance"),
                    "accuracy": _figure(pva, "accuracy"),
                    "training_hours": _figure(pva, "training_hours"),
                    "p50_latency_ms": _figure(pva, "p50_latency_ms"),
                }
            )
    finally:
        stop_all()
    first, second = rows[0], rows[-1]

    def smaller(key: str, measure: str) -> bool | None:
        a, b = first[key][measure], second[key][measure]
        return None if a is None or b is None else b < a

    return {
        "runs": rows,
        "accuracy_error_smaller": smaller("accuracy", "abs_error"),
        "training_time_error_smaller": smaller("training_hours", "abs_relative_error"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--train", type=int, default=96, help="training rows (default 96)")
    parser.add_argument("--eval", type=int, default=24, help="held-out rows (default 24)")
    parser.add_argument("--home", type=Path, default=None, help="STRATOS_HOME to use (default: a fresh temp folder)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the discarded warm-up run")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="stratos-calibration-bench-") as tmp:
        home = args.home or Path(tmp) / "home"
        spec, data = bench_inputs(Path(tmp), args.train, args.eval)
        report = {"spec": "word-forms-local.json, alignment", "train_rows": args.train}
        warmup = None if args.no_warmup else Path(tmp) / "warmup-home"
        report |= {"eval_rows": args.eval, "warmup": warmup is not None, **run_twice(home, spec, data, warmup)}
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        _print(report)
    ok = report["accuracy_error_smaller"] and report["training_time_error_smaller"]
    return 0 if ok else 1


def _print(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    table = Table(
        title=f"Predicted vs measured, the same spec twice ({report['spec']}, {report['train_rows']} / "
        f"{report['eval_rows']} rows)"
    )
    for name in (
        "run",
        "status",
        "accuracy: predicted ± band (runs)",
        "measured",
        "|error|",
        "training h: predicted ± band (runs)",
        "measured",
        "|relative error|",
        "wall s",
    ):
        table.add_column(name, justify="left" if name in ("status",) else "right")
    for r in report["runs"]:
        acc, hours = r["accuracy"], r["training_hours"]

        def cell(f: dict[str, Any], pattern: str) -> str:
            if f["predicted"] is None:
                return "—"
            band = f" ± {pattern.format(f['band'])}" if f["band"] is not None else ""
            return f"{pattern.format(f['predicted'])}{band} ({f['runs']})"

        def num(value: Any, pattern: str) -> str:
            return "—" if value is None else pattern.format(value)

        table.add_row(
            str(r["run"]),
            r["status"],
            cell(acc, "{:.3f}"),
            num(acc["actual"], "{:.3f}"),
            num(acc["abs_error"], "{:.3f}"),
            cell(hours, "{:.4f}"),
            num(hours["actual"], "{:.4f}"),
            num(hours["abs_relative_error"], "{:.1%}"),
            f"{r['wall_s']:.0f}",
        )
    console.print(table)
    console.print(f"machine: {report['runs'][0]['profile']}")
    console.print(
        f"second run's accuracy error smaller: {report['accuracy_error_smaller']}; "
        f"training-time error smaller: {report['training_time_error_smaller']}"
    )


if __name__ == "__main__":
    sys.exit(main())
