"""``stratos plan`` says which of the chosen plan's figures past runs calibrated and from how many (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

from stratos.run_record import Comparison
from stratos_cli.cli import main
from tests.conftest import SPECS

SPEC = str(SPECS / "mahjong-local.json")


def _plan(capsys, *args: str) -> dict:
    assert main(["plan", SPEC, "--json", *args]) == 0
    out: dict = json.loads(capsys.readouterr().out)
    return out


def test_plan_calibrates_on_the_local_run_records_unless_told_not_to(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("STRATOS_HOME", str(tmp_path))
    before = _plan(capsys)
    assert before["calibration"]["records"] == 0 and before["plan"]["accuracy_band"]["runs"] == 0
    assert before["tie"]["reason"]
    chosen = before["plan"]
    record = {
        "pk": "mahjong-local-earlier",
        "finished_at": "2026-12-04T00:00:00+00:00",
        "predicted_vs_actual": {
            "basis": "local",
            "task_kind": "symbolic-reasoning",
            "teacher": chosen["teacher"],
            "student": chosen["student"],
            "mode": chosen["mode"],
            "mode_actual": chosen["mode"],
            "training_instance": "local:m",
            "serving_instance": "local:m",
            "accuracy": Comparison.of(0.16, 0.0, uncalibrated=chosen["expected_accuracy"]).model_dump(),
            "training_hours": Comparison.of(0.05, 0.04, uncalibrated=0.05).model_dump(),
            "training_cost_usd": Comparison.of(0.01, 0.01).model_dump(),
        },
    }
    kept = tmp_path / "runs" / "mahjong-local-earlier" / "record.json"
    kept.parent.mkdir(parents=True)
    kept.write_text(json.dumps(record))
    after = _plan(capsys)
    assert after["calibration"]["used"] == 1 and "local run records" in after["calibration"]["source"]
    band = after["plan"]["accuracy_band"]  # one teacher, one student in this spec: the same pair
    assert band["runs"] == 1 and after["plan"]["expected_accuracy"] < chosen["expected_accuracy"]
    assert _plan(capsys, "--no-calibration")["calibration"]["records"] == 0
    assert main(["plan", SPEC]) == 0  # the tables, with the calibration table and the tie line
    text = capsys.readouterr().out
    assert "Calibration of the chosen plan: 1 of 1 past run records usable" in text
    assert "Uncertainty-aware choice:" in text
