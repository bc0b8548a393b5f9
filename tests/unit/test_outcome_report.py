"""The report opens with the outcome (issue 16): the run, its accuracy, predicted vs actual with a figure, the money;
the spec comes last but the run record. ``stratos run`` prints the same predicted-vs-actual rows."""

from __future__ import annotations

from typing import Any

from stratos.payloads import EstimateBand
from stratos.planner.calibration import Prediction, compare
from stratos_cli.local.report import write_report
from stratos_cli.run_cli import comparison_rows


def _pva(runs: int = 1) -> dict[str, Any]:
    prediction = Prediction(
        basis="local",
        teacher="smollm2-135m-instruct",
        student="smollm2-135m-instruct-l15",
        mode="alignment",
        training_instance="local:x86_64-2c-24g-abc123",
        serving_instance="local:x86_64-2c-24g-abc123",
        accuracy=0.087,
        accuracy_band=EstimateBand(uncalibrated=0.174, band=0.094, runs=runs),
        training_hours=0.039,
        training_hours_band=EstimateBand(uncalibrated=0.044, band=0.009, runs=runs),
        training_cost_usd=0.012,
        p50_latency_ms=1313.0,
        p50_latency_band=EstimateBand(uncalibrated=983.0, band=418.0, runs=runs),
        tokens_per_s=97.0,
    )
    pva = compare(
        prediction,
        "open-qa",
        accuracy=0.0,
        mode_actual="alignment",
        training_hours=0.061,
        training_cost_usd=0.019,
        p50_latency_ms=1900.0,
        tokens_per_s=7.7,
    )
    return pva.model_dump(mode="json")


def test_rows_say_predicted_band_calibration_actual_and_errors():
    rows = {row[0]: row for row in comparison_rows(_pva())}
    assert rows["accuracy (fraction)"] == (
        "accuracy (fraction)",
        "0.087 ± 0.094 (calibrated on 1 run; estimator 0.174)",
        "0.000",
        "-0.087",
        "-100 %",
    )
    assert rows["training time, h"][2:] == ("0.061", "+0.022", "+56 %")
    assert rows["p50 latency, ms"][1].startswith("1,313 ± 418 (calibrated on 1 run")
    uncalibrated = {row[0]: row for row in comparison_rows(_pva(runs=0))}
    assert uncalibrated["accuracy (fraction)"][1] == "0.087 ± 0.094"  # nothing said about calibration


def test_the_report_opens_with_the_outcome_and_ends_with_the_spec(tmp_path):
    record = {
        "run_id": "calibration-bench-abc",
        "status": "SUCCEEDED",
        "endpoint": {"name": "calibration-bench-student", "config": "c"},
        "actual": {"training_cost_usd": 0.019, "training_hours": 0.061, "spot": False},
        "predicted_vs_actual": _pva(),
        "latency": {
            "passed": False,
            "keep": True,
            "limit_ms": 1650.0,
            "spec_p50_ms": 1500.0,
            "tolerance": 0.1,
            "measured": {"p50_ms": 1900.0, "p90_ms": 2300.0, "tokens_per_s": 7.7, "concurrency": 4, "requests": 16},
        },
        "local_profile": {"cores": 2, "training_tflops": 0.19, "bandwidth_gbps": 35.0, "measured_at": "2026-12-04"},
    }
    metrics = {"student_after_accuracy": 0.0, "teacher_accuracy": 0.875, "eval_examples": 24}
    plan = {"plan": {"training_cost_usd": 0.05, "serving_usd_per_month": 78.18, "total_cost_usd": 78.24}}
    spec = {"task_id": "calibration-bench", "constraints": {"budget_usd": 1500, "serving_months": 1}}
    paths = write_report(tmp_path, spec=spec, plan=plan, metrics=metrics, model_card="", run_record=record)
    text = paths.markdown.read_text()
    order = [
        "## Outcome",
        "### Accuracy on the held-out set",
        "### Predicted vs actual",
        "### Money",
        "## Plan",
        "## Accuracy",
        "## Spec",
        "## Run record",
    ]
    positions = [text.index(f"\n{heading}\n") for heading in order]
    assert positions == sorted(positions)
    outcome = text.split("\n## Outcome\n", 1)[1].split("\n## ", 1)[0]
    assert "| teacher | — | 0.875 |" in outcome
    assert "`local:x86_64-2c-24g-abc123`: 2 cores, 0.190 TFLOP/s" in outcome
    assert "| accuracy (fraction) | 0.087 ± 0.094 (calibrated on 1 run; estimator 0.174) | 0.000 |" in outcome
    assert "| training, as billed (billable time x on-demand price), USD | 0.02 |" in outcome
    assert "| endpoint, planned, USD/month | 78.18 |" in outcome
    assert "Latency check: p50 1,900 ms, p90 2,300 ms, 7.7 tokens/s at concurrency 4 (16 requests); OVER" in outcome
    assert "reported only, the endpoint stays" in outcome
    assert "](images/predicted_vs_actual.png)" in outcome and "predicted_vs_actual" in paths.images
    assert paths.images["predicted_vs_actual"].stat().st_size > 0


def test_a_run_without_a_comparison_says_so(tmp_path):
    paths = write_report(tmp_path, spec={}, plan={}, metrics={}, model_card="", run_record={"status": "FAILED"})
    text = paths.markdown.read_text()
    assert "No predicted-vs-actual block in the run record" in text and "predicted_vs_actual" not in paths.images
