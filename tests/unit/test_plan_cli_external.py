"""`stratos plan` on specs with external teachers, and on an invalid spec with --json."""

from __future__ import annotations

import json
from pathlib import Path

from stratos_cli.cli import main
from tests.conftest import SPECS

ENDPOINT_SPEC = str(SPECS / "word-forms-endpoint-teacher-local.json")


def test_the_plan_names_its_external_teacher_with_tokens_price_and_rate(capsys) -> None:
    assert main(["plan", ENDPOINT_SPEC, "--json", "--no-calibration"]) == 0
    doc = json.loads(capsys.readouterr().out)
    plan = doc["plan"]
    assert plan["teacher"] == "sagemaker-endpoint:word-forms-teacher" and plan["teacher_tokens"] > 0
    assert plan["teacher_usd_per_1k"] == [0.0, 0.0]
    [access] = doc["external_teachers"]
    assert access["id"] == plan["teacher"] and access["interface"] == "text" and access["tokens_per_minute"] == 1500
    assert main(["plan", ENDPOINT_SPEC, "--no-calibration"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "External teacher: sagemaker-endpoint:word-forms-teacher (text" in text
    assert "timed at 1,500 tokens/min" in text and "billed by the hour to its owner" in text


def test_an_invalid_spec_with_json_prints_the_errors_as_json(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"spec_version": 1}))
    assert main(["plan", str(bad), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["error"] == "SpecValidationError" and {e["path"] for e in out["errors"]} >= {"task_id", "data"}


def test_validate_names_candidates_outside_the_catalog_as_the_pipeline_would(tmp_path: Path, capsys) -> None:
    doc = json.loads((SPECS / "gsm8k.json").read_text())
    doc["candidates"] = {"teachers": ["no-such-model"], "accuracy_priors": {"nor-this-one": 0.5}}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "INVALID (2 errors)" in err and "candidates.teachers[0]: not in the model catalog" in err
    assert 'candidates.accuracy_priors["nor-this-one"]' in err
    assert main(["validate", ENDPOINT_SPEC]) == 0
