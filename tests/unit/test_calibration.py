"""Calibration from past runs (:mod:`stratos.planner.calibration`): the shrinkage estimator, which records count,
the predicted-vs-actual block, and a plan corrected by a past run."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from stratos.payloads import EstimateBand
from stratos.planner.calibration import (
    DEFAULT_ACCURACY_BAND,
    DEFAULT_P50_BAND,
    DEFAULT_TRAINING_HOURS_BAND,
    MAX_RUNS_PER_KEY,
    NO_CALIBRATION,
    PRIOR_RUNS,
    Prediction,
    additive,
    calibrate,
    compare,
    multiplicative,
    with_latency,
)
from stratos.planner.catalog import load_catalog
from stratos.planner.plan import plan
from stratos.planner.pricing import snapshot_price_table
from stratos.run_record import Comparison, RunRecord
from stratos.spec import parse_spec
from tests.conftest import SPECS


def test_no_runs_keep_the_estimator_and_the_default_bands():
    assert additive([], 0.1).shift == 0 and additive([], 0.1).band == 0.1
    c = NO_CALIBRATION.for_training("open-qa", "s", "alignment", "ml.g5.xlarge")
    assert (c.runs, c.factor, c.band) == (0, 1.0, DEFAULT_TRAINING_HOURS_BAND)
    assert c.apply(2.0) == 2.0 and c.band_of(2.0) == pytest.approx(2 * DEFAULT_TRAINING_HOURS_BAND)


def test_one_run_moves_an_additive_figure_half_way_and_pools_the_band():
    c = additive([-0.16], DEFAULT_ACCURACY_BAND)
    assert c.runs == 1 and c.shift == pytest.approx(-0.16 / (1 + PRIOR_RUNS))
    assert c.band == pytest.approx(math.sqrt((DEFAULT_ACCURACY_BAND**2 + 0.08**2) / 2))
    assert c.apply(0.16) == pytest.approx(0.08)
    assert c.apply(0.05) == 0.0  # clipped at 0


def test_many_agreeing_runs_converge_on_what_they_measured():
    c = additive([0.2] * 19, 0.1)
    assert c.shift == pytest.approx(0.2 * 19 / 20) and c.band < 0.1
    m = multiplicative([0.25] * 9, 0.3)
    assert m.factor == pytest.approx(0.25 ** (9 / 10)) and m.band < 0.3


def test_multiplicative_is_symmetric_on_logs():
    up, down = multiplicative([4.0], 0.3), multiplicative([0.25], 0.3)
    assert up.factor * down.factor == pytest.approx(1.0) and up.band == pytest.approx(down.band)
    assert up.factor == pytest.approx(2.0)  # one run: half way on the log scale


def _pva(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "basis": "plan",
        "task_kind": "open-qa",
        "teacher": "t",
        "student": "s",
        "mode": "alignment",
        "mode_actual": "alignment",
        "training_instance": "ml.g5.xlarge",
        "serving_instance": "ml.c7i.large",
        "accuracy": Comparison.of(0.3, 0.1, uncalibrated=0.3).model_dump(),
        "training_hours": Comparison.of(1.0, 0.5, uncalibrated=1.0).model_dump(),
        "training_cost_usd": Comparison.of(1.0, 0.5).model_dump(),
        "p50_latency_ms": Comparison.of(100.0, 200.0, uncalibrated=100.0).model_dump(),
    }
    doc.update(overrides)
    return {"pk": "r", "predicted_vs_actual": doc}


def test_calibrate_keys_each_figure_and_skips_what_it_cannot_use():
    records = [
        _pva(),
        _pva(mode_actual="injection"),  # the job switched mode: no accuracy residual, time still counts
        {"pk": "old"},  # no block
        {"pk": "bad", "predicted_vs_actual": {"basis": "plan"}},  # unreadable block
    ]
    cal = calibrate(records)
    assert (cal.records, cal.used) == (4, 2)
    acc = cal.for_accuracy("open-qa", "s", "alignment")
    assert acc.runs == 1 and acc.shift == pytest.approx(-0.1)
    assert cal.for_accuracy("open-qa", "other", "alignment").runs == 0
    assert cal.for_training("open-qa", "s", "alignment", "ml.g5.xlarge").runs == 2
    assert cal.for_training("open-qa", "s", "alignment", "ml.g6.xlarge").runs == 0  # another instance
    assert cal.for_latency("s", "ml.c7i.large").factor == pytest.approx(2 ** (2 / 3))
    described = cal.describe()
    assert (
        described["accuracy"][0]["runs"] == 1 and described["default_bands"]["p50_latency_relative"] == DEFAULT_P50_BAND
    )
    json.dumps(described)


def test_only_the_newest_runs_and_records_count():
    records = [_pva(accuracy=Comparison.of(0.3, 0.0, uncalibrated=0.3).model_dump())] * (MAX_RUNS_PER_KEY + 5)
    assert calibrate(records).for_accuracy("open-qa", "s", "alignment").runs == MAX_RUNS_PER_KEY
    assert calibrate(records, max_records=3).for_accuracy("open-qa", "s", "alignment").runs == 3


def _prediction() -> Prediction:
    return Prediction(
        basis="local",
        teacher="t",
        student="s",
        mode="alignment",
        training_instance="local:m",
        serving_instance="local:m",
        accuracy=0.2,
        accuracy_band=EstimateBand(uncalibrated=0.3, band=0.09, runs=1),
        training_hours=0.5,
        training_hours_band=EstimateBand(uncalibrated=1.0, band=0.15, runs=1),
        training_cost_usd=2.0,
        p50_latency_ms=400.0,
        p50_latency_band=EstimateBand(uncalibrated=200.0, band=120.0, runs=1),
        tokens_per_s=40.0,
    )


def test_compare_works_out_each_error_and_scales_the_derived_figures():
    pva = compare(
        _prediction(), "open-qa", accuracy=0.1, mode_actual="alignment", training_hours=0.25, training_cost_usd=1.0
    )
    RunRecord(predicted_vs_actual=pva)  # the record takes it
    assert pva.accuracy.error == pytest.approx(-0.1) and pva.accuracy.relative_error == pytest.approx(-0.5)
    assert pva.accuracy.runs == 1 and pva.accuracy.uncalibrated == 0.3
    assert pva.training_hours.relative_error == pytest.approx(-0.5)
    # cost follows hours: uncalibrated 2.0 x 1.0 / 0.5; band 2.0 x 0.15 / 0.5
    assert pva.training_cost_usd.uncalibrated == pytest.approx(4.0) and pva.training_cost_usd.band == pytest.approx(0.6)
    # tokens/s goes as 1 / p50: uncalibrated 40 x 400 / 200
    assert pva.tokens_per_s is not None and pva.tokens_per_s.uncalibrated == pytest.approx(80.0)
    assert pva.p50_latency_ms is not None and pva.p50_latency_ms.actual is None  # not measured yet
    measured = with_latency(pva, 500.0, 30.0)
    assert measured.p50_latency_ms is not None and measured.p50_latency_ms.error == pytest.approx(100.0)
    assert measured.tokens_per_s is not None and measured.tokens_per_s.relative_error == pytest.approx(-0.25)
    assert measured.training_hours == pva.training_hours


def test_a_zero_prediction_has_no_relative_error():
    c = Comparison.of(0.0, 0.1)
    assert c.error == pytest.approx(0.1) and c.relative_error is None
    assert Comparison.of(0.2, None).error is None


def test_a_past_run_corrects_the_plan_and_says_so():
    spec = parse_spec((SPECS / "mahjong-local.json").read_bytes(), "mahjong-local.json")
    prices = snapshot_price_table(spec.constraints.region, load_catalog())
    before = plan(spec, prices).chosen
    assert before.accuracy_band is not None and before.accuracy_band.runs == 0
    assert before.accuracy_band.band == pytest.approx(DEFAULT_ACCURACY_BAND)
    record = _pva(
        task_kind=spec.task.kind.value,
        teacher=before.teacher,
        student=before.student,
        mode=before.mode,
        mode_actual=before.mode,
        training_instance=before.training_instance,
        accuracy=Comparison.of(before.expected_accuracy, 0.0, uncalibrated=before.expected_accuracy).model_dump(),
        training_hours=Comparison.of(
            before.training_hours, before.training_hours * 4, uncalibrated=before.training_hours
        ).model_dump(),
    )
    result = plan(spec, prices, calibration=calibrate([record]))
    after = result.chosen
    assert after.student == before.student and after.mode == before.mode
    assert after.accuracy_band is not None and after.accuracy_band.runs == 1
    assert after.expected_accuracy == pytest.approx(before.expected_accuracy / 2)
    assert after.accuracy_band.uncalibrated == pytest.approx(before.expected_accuracy)
    document = result.frontier_document()
    assert document["calibration"]["used"] == 1 and document["calibration"]["accuracy"][0]["runs"] == 1
    # The calibrated instance is slower by 2x now (one run at 4x): its training hours say so.
    calibrated = [p for p in result.selection.frontier if p.training_instance == before.training_instance]
    for p in calibrated:
        assert p.training_hours_band is not None and p.training_hours_band.runs == 1
        assert p.training_hours == pytest.approx(p.training_hours_band.uncalibrated * 2, rel=1e-9)


def test_the_bands_fit_the_state_payload_budgets():
    from stratos.payloads import PlanRef, PlanSummary, size_upper_bound

    for model in (EstimateBand, PlanSummary, PlanRef):
        assert size_upper_bound(model) <= model.MAX_BYTES
