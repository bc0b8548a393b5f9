"""Predicted vs actual and calibration through the real state machine (issue 16): the evaluation gate records the
plan's estimates beside the job's measurements, and the next run's SelectPlan reads the runs table and plans with
the first run's outcome."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from stratos.planner.calibration import PRIOR_RUNS
from tests.doubles import Script, sample_metrics
from tests.functional.conftest import Run, mahjong_spec


def _run_id(run: Run, execution_arn: str) -> str:
    *_, (_name, output, _) = run.outputs(execution_arn)
    return str(output["record"]["run_id"])


def _record(run: Run, execution_arn: str) -> dict[str, Any]:
    record = run.stack.run_record(_run_id(run, execution_arn))
    assert record is not None
    return record


def _frontier(run, plan: dict) -> dict:
    """The frontier document SelectPlan stored for ``plan`` (a run record's plan)."""
    bucket, _, key = plan["frontier"].removeprefix("s3://").partition("/")
    return json.loads(run.stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def test_the_record_compares_and_the_second_run_plans_with_the_first_runs_outcome(make_stack):
    # The job "measures" 0.05 accuracy and 10 minutes (2 polls x 300 s) whatever the plan predicted.
    run = make_stack(script=Script(metrics=sample_metrics(accuracy=0.05)))
    spec = mahjong_spec(**{"constraints.min_accuracy": 0.0})
    first = run.upload_and_wait(spec, key="specs/mahjong.json")
    assert first["status"] == "SUCCEEDED", first
    record = _record(run, first["executionArn"])
    plan, pva = record["plan"], record["predicted_vs_actual"]
    assert pva["basis"] == "plan" and pva["task_kind"] == "symbolic-reasoning"
    assert (pva["teacher"], pva["student"], pva["mode"], pva["mode_actual"]) == (
        plan["teacher"],
        plan["student"],
        plan["mode"],
        "injection",
    )
    assert pva["training_instance"] == plan["training_instance"]
    acc = pva["accuracy"]
    assert acc["predicted"] == pytest.approx(plan["expected_accuracy"]) and acc["actual"] == pytest.approx(0.05)
    assert acc["error"] == pytest.approx(0.05 - plan["expected_accuracy"])
    assert acc["relative_error"] == pytest.approx((0.05 - plan["expected_accuracy"]) / plan["expected_accuracy"])
    assert acc["runs"] == 0 and acc["uncalibrated"] == pytest.approx(plan["expected_accuracy"])  # nothing earlier
    assert _frontier(run, plan)["calibration"]["records"] == 0  # its own record, there from the start, is not past
    hours = pva["training_hours"]
    assert hours["actual"] == pytest.approx(600 / 3600, abs=1e-6) and hours["predicted"] == plan["training_hours"]
    assert pva["training_cost_usd"]["actual"] == pytest.approx(record["actual"]["training_cost_usd"])
    assert pva["p50_latency_ms"]["predicted"] == pytest.approx(plan["p50_latency_ms"])

    # A second run of the same task: its plan is calibrated on the first run's record.
    second = run.upload_and_wait(spec, key="specs/mahjong-again.json")
    assert second["status"] == "SUCCEEDED", second
    again = _record(run, second["executionArn"])["plan"]
    assert _frontier(run, again)["calibration"]["records"] == 1
    assert (again["teacher"], again["student"], again["mode"]) == (plan["teacher"], plan["student"], plan["mode"])
    band = again["accuracy_band"]
    shrink = 1 / (1 + PRIOR_RUNS)  # one run moves the figure 1 / (1 + n0) of the way to what it measured
    assert band["runs"] == 1 and band["uncalibrated"] == pytest.approx(acc["uncalibrated"], abs=1e-6)
    assert again["expected_accuracy"] == pytest.approx(acc["uncalibrated"] + shrink * (0.05 - acc["uncalibrated"]))
    assert abs(again["expected_accuracy"] - 0.05) < abs(plan["expected_accuracy"] - 0.05)
    # The band: the default as one pseudo-run pooled with the residual left after the correction.
    residual = (0.05 - acc["uncalibrated"]) * (1 - shrink)
    assert band["band"] == pytest.approx(math.sqrt((0.10**2 + residual**2) / 2), abs=1e-6)
    if again["training_instance"] == plan["training_instance"]:
        time_band = again["training_hours_band"]
        assert time_band["runs"] == 1
        factor = (hours["actual"] / hours["uncalibrated"]) ** shrink
        assert again["training_hours"] == pytest.approx(time_band["uncalibrated"] * factor, rel=1e-4)


def test_a_local_runs_kept_record_put_into_the_runs_table_calibrates_selectplan(make_stack):
    """What ``stratos run`` does with the records earlier local runs kept (``stratos_cli.local.run``): they go into
    the embedded runs table before the run starts, and the real SelectPlan reads them like a stack on AWS."""
    from stratos.planner.catalog import load_catalog
    from stratos.planner.plan import plan
    from stratos.planner.pricing import snapshot_price_table
    from stratos.run_record import Comparison
    from stratos.spec import validate_spec_document
    from stratos_cli.local.run import _seed_records

    doc = mahjong_spec(**{"constraints.min_accuracy": 0.0})
    spec = validate_spec_document(doc)
    chosen = plan(spec, snapshot_price_table(spec.constraints.region, load_catalog())).chosen
    kept = {
        "pk": "mahjong-earlier-run",
        "run_id": "mahjong-earlier-run",
        "kind": "run",
        "status": "SUCCEEDED",
        "updated_at": "2026-12-01T00:00:00+00:00",
        "execution_arn": "arn:aws:states:us-east-1:123456789012:execution:earlier:1",
        "predicted_vs_actual": {
            "basis": "local",
            "task_kind": spec.task.kind.value,
            "teacher": chosen.teacher,
            "student": chosen.student,
            "mode": chosen.mode,
            "mode_actual": chosen.mode,
            "training_instance": "local:this-machine",
            "serving_instance": "local:this-machine",
            # It did better than expected: the same student stays the best choice, now expected higher.
            "accuracy": Comparison.of(
                chosen.expected_accuracy, chosen.expected_accuracy + 0.2, uncalibrated=chosen.expected_accuracy
            ).model_dump(),
            "training_hours": Comparison.of(0.1, 0.05, uncalibrated=0.1).model_dump(),
            "training_cost_usd": Comparison.of(0.01, 0.005).model_dump(),
        },
    }
    run = make_stack()
    _seed_records(run.stack, [kept])
    described = run.upload_and_wait(doc)
    assert described["status"] == "SUCCEEDED", described
    record = _record(run, described["executionArn"])
    calibrated = record["plan"]
    assert (calibrated["student"], calibrated["mode"]) == (chosen.student, chosen.mode)
    assert calibrated["accuracy_band"]["runs"] == 1
    # The correction is per task kind, student and mode (the teacher may differ): half the residual, +0.1.
    uncalibrated = calibrated["accuracy_band"]["uncalibrated"]
    assert calibrated["expected_accuracy"] == pytest.approx(min(1.0, uncalibrated + 0.1), abs=1e-6)
    # The local machine's training time calibrates nothing on AWS instances.
    assert calibrated["training_hours_band"]["runs"] == 0
    assert run.stack.run_record("mahjong-earlier-run") is not None  # the kept record is still there, unchanged
