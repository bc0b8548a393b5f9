"""The local instance profile (:mod:`stratos_cli.local.profile`): the estimators reproduce what was measured, the
cache is used while fresh, and a local run's job is predicted with the hyperparameters it really got."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import stratos_cli.local.profile as profile_module
from stratos.planner import estimators as est
from stratos.planner.calibration import NO_CALIBRATION, calibrate
from stratos.planner.catalog import load_catalog
from stratos.run_record import Comparison
from stratos.spec import parse_spec
from stratos_cli.local.profile import LOCAL_STARTUP_S, LocalProfile, load_profile, local_prediction, machine_key
from tests.conftest import SPECS


def _profile(**fields: Any) -> LocalProfile:
    values: dict[str, Any] = {
        "machine": "x86_64-2c-24g-abc123",
        "measured_at": datetime.now(UTC),
        "cores": 2,
        "memory_gib": 23.4,
        "training_tflops": 0.2,
        "bandwidth_gbps": 30.0,
    }
    return LocalProfile(**(values | fields))


def test_the_estimators_reproduce_the_measured_rates():
    profile = _profile()
    inst = profile.instance()
    assert inst.instance_type == "local:x86_64-2c-24g-abc123" and inst.tier == "cpu" and inst.devices == 1
    flops = 1e15
    assert est.training_seconds(flops, inst) == pytest.approx(flops / 0.2e12)
    cpu = est.EFFICIENCY["cpu"]
    assert est.bandwidth_bytes_per_s(inst) * cpu.decode_bandwidth == pytest.approx(30e9)
    assert inst.snapshot_prices == {}  # the machine has no price


def test_a_fresh_cached_profile_is_used_and_a_stale_one_measured_again(tmp_path: Path, monkeypatch):
    calls: list[int] = []

    def fake_probe() -> dict[str, Any]:
        calls.append(1)
        return {"training_tflops": 0.3, "bandwidth_gbps": 12.0, "probe": {"steps": 3}}

    monkeypatch.setattr(profile_module, "probe", fake_probe)
    cached = tmp_path / "profiles" / f"{machine_key()}.json"
    cached.parent.mkdir(parents=True)
    cached.write_text(_profile(machine=machine_key(), training_tflops=0.9).model_dump_json())
    assert load_profile(tmp_path).training_tflops == 0.9 and not calls
    stale = _profile(machine=machine_key(), measured_at=datetime.now(UTC) - timedelta(days=40))
    cached.write_text(stale.model_dump_json())
    fresh = load_profile(tmp_path)
    assert len(calls) == 1 and fresh.training_tflops == 0.3 and fresh.startup_s == LOCAL_STARTUP_S
    assert LocalProfile.model_validate_json(cached.read_text()) == fresh  # cached again


def test_a_failed_probe_says_why(tmp_path: Path, monkeypatch):
    def failing(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, "", "Traceback...\nModuleNotFoundError: No module named 'torch'")

    monkeypatch.setattr(profile_module.subprocess, "run", failing)
    monkeypatch.setattr(profile_module, "machine_key", lambda: "m")
    with pytest.raises(RuntimeError, match="No module named 'torch'"):
        load_profile(tmp_path)


PLAN = {
    "teacher": "smollm2-135m-instruct",
    "student": "smollm2-135m-instruct-l15",
    "mode": "alignment",
    "expected_accuracy": 0.3,
    "accuracy_band": {"uncalibrated": 0.3, "band": 0.1, "runs": 0},
    "training_hours": 0.2,
    "training_cost_usd": 0.1,
}
HYPER = {"train_size": "120", "eval_size": "30", "max_new_tokens": "64", "max_seq_len": "320", "probe_size": "8"}


def _spec() -> Any:
    return parse_spec((SPECS / "gsm8k-local.json").read_bytes(), "gsm8k-local.json")


def test_the_local_prediction_sizes_the_job_it_ran():
    spec, profile = _spec(), _profile()
    prediction = local_prediction(PLAN, spec, HYPER, profile, NO_CALIBRATION)
    assert prediction.basis == "local" and prediction.training_instance == profile.instance_type
    assert prediction.accuracy == 0.3 and prediction.accuracy_band is not None
    # The training passes alone: 120 rows x min(prompt + output, 320) tokens x 1 pass (the container's default)
    # x (6 N_s + 2 N_t) at the measured rate.
    catalog = load_catalog()
    student, teacher = catalog.model(PLAN["student"]), catalog.model(PLAN["teacher"])
    assert student is not None and teacher is not None
    lat = spec.constraints.latency
    tokens = 120 * min(lat.prompt_tokens + lat.output_tokens, 320)
    train_s = tokens * (6 * student.params + 2 * teacher.params) / 0.2e12
    assert prediction.training_hours > LOCAL_STARTUP_S / 3600 + train_s / 3600  # plus evaluation
    band = prediction.training_hours_band
    assert band is not None and band.runs == 0 and band.uncalibrated == prediction.training_hours
    # max_steps caps the passes: 2 steps x batch 8 = 16 of the 120 rows.
    short = local_prediction(PLAN, spec, HYPER | {"max_steps": "2"}, profile, NO_CALIBRATION)
    assert short.training_hours < prediction.training_hours
    # The plan's price of a training hour (its cost / its hours) prices the local hours.
    assert prediction.training_cost_usd == pytest.approx(prediction.training_hours * 0.1 / 0.2)
    # The local endpoint server answers one request at a time: the load test's clients queue behind each other.
    from stratos.planner import estimators as est

    single = est.p50_latency_ms(student, profile.instance(), lat.prompt_tokens, lat.output_tokens, 1)
    assert prediction.p50_latency_ms == pytest.approx(lat.concurrency * single)


def test_an_earlier_local_run_calibrates_the_time_on_this_machine_only():
    spec, profile = _spec(), _profile()
    raw = local_prediction(PLAN, spec, HYPER, profile, NO_CALIBRATION).training_hours
    record = {
        "predicted_vs_actual": {
            "basis": "local",
            "task_kind": spec.task.kind.value,
            "teacher": PLAN["teacher"],
            "student": PLAN["student"],
            "mode": "alignment",
            "mode_actual": "alignment",
            "training_instance": profile.instance_type,
            "serving_instance": profile.instance_type,
            "accuracy": Comparison.of(0.3, 0.0, uncalibrated=0.3).model_dump(),
            "training_hours": Comparison.of(raw, raw / 4, uncalibrated=raw).model_dump(),
            "training_cost_usd": Comparison.of(0.1, 0.05).model_dump(),
        }
    }
    calibrated = local_prediction(PLAN, spec, HYPER, profile, calibrate([record]))
    assert calibrated.training_hours == pytest.approx(raw / 2)  # one run: half way on the log scale
    assert calibrated.training_hours_band is not None and calibrated.training_hours_band.runs == 1
    other = _profile(machine="x86_64-64c-512g-ffffff")
    assert local_prediction(PLAN, spec, HYPER, other, calibrate([record])).training_hours_band.runs == 0  # type: ignore[union-attr]
