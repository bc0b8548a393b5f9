"""Local model sources: the catalog's pruned SmolLM2 is a local candidate of its own, and the training job the
pipeline asks for (base's folder, ``channel:student@layers=15``) trains exactly the local source of that id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import stratos_cli.local.process_runner as process_runner
from stratos_cli.local.process_runner import ProcessTrainingRunner
from stratos_cli.local.run import LOCAL_MODEL_SOURCES, local_spec
from stratos_cli.local.training import TrainingJobSpec
from tests.conftest import SPECS

PRUNED = "smollm2-135m-instruct-l15"


class _NoProcess:
    """Stands in for the training process: started, never polled."""

    pid = 0

    def __init__(self, command: list[str], **_: Any) -> None:
        self.command = command

    def poll(self) -> int:
        return 0


def test_the_local_student_is_the_catalogs_15_layer_copy():
    assert LOCAL_MODEL_SOURCES[PRUNED] == "smollm2-135m-instruct@layers=15"
    assert LOCAL_MODEL_SOURCES["smollm2-135m-instruct"] == "smollm2-135m-instruct"  # full model: unpruned
    assert not [key for key in LOCAL_MODEL_SOURCES if ":" in key]  # no channel-specific substitutions


def _spec(candidates: dict[str, Any] | None, mode: str = "auto") -> bytes:
    doc = json.loads((SPECS / "mahjong-local.json").read_text(encoding="utf-8"))
    doc["distillation"]["mode"] = mode
    if candidates is None:
        doc.pop("candidates", None)
    else:
        doc["candidates"] = candidates
    return json.dumps(doc).encode()


def test_demo_spec_plans_the_pruned_student_as_is():
    spec, doc, notes = local_spec((SPECS / "mahjong-local.json").read_bytes(), "mahjong-local.json")
    assert notes == []
    assert spec.candidates.students == [PRUNED] and doc["candidates"]["teachers"] == ["gemma-3-270m"]


def test_without_candidates_pruned_copies_are_local_students_but_never_default_teachers():
    spec, _, notes = local_spec(_spec(None), "spec.json")
    assert spec.candidates.teachers == ["smollm2-135m-instruct", "gemma-3-270m"]
    assert spec.candidates.students == ["smollm2-135m-instruct", "gemma-3-270m", PRUNED]
    assert len(notes) == 2


def test_named_candidates_by_repo_and_the_alignment_pair_are_kept():
    named = {
        "teachers": ["HuggingFaceTB/SmolLM2-135M-Instruct", "gemma-3-270m", "qwen2.5-7b-instruct"],
        "students": [PRUNED],
    }
    spec, _, notes = local_spec(_spec(named, mode="alignment"), "spec.json")
    # The repository read as its catalog id; Qwen does not install here.
    assert spec.candidates.teachers == ["smollm2-135m-instruct", "gemma-3-270m"]
    assert spec.candidates.students == [PRUNED]
    assert len(notes) == 1


def test_runner_gives_the_pruned_student_its_own_local_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """What PrepareTrainingJob sends for a pruned student (its BASE's folder, ``@layers`` on the source, the
    catalog id alongside) becomes the local source of the catalog id: nothing is downloaded."""
    monkeypatch.setattr(process_runner.subprocess, "Popen", _NoProcess)

    def no_s3() -> Any:
        raise AssertionError("a model channel with a local source must not be downloaded")

    sources = {**LOCAL_MODEL_SOURCES, PRUNED: "tiny:2", "smollm2-135m-instruct": "tiny:3"}
    runner = ProcessTrainingRunner(tmp_path, s3=no_s3, model_sources=sources)
    job = TrainingJobSpec(
        name="job-1",
        hyperparameters={
            "teacher": "channel:teacher",
            "student": "channel:student@layers=15",
            "teacher_id": "smollm2-135m-instruct",
            "student_id": PRUNED,
        },
        channels={
            "teacher": "s3://artifacts/models/smollm2-135m-instruct/",
            "student": "s3://artifacts/models/smollm2-135m-instruct/",
        },
        output_s3_uri="s3://artifacts/runs/r/training",
        instance_type="ml.c7i.xlarge",
        max_runtime_seconds=600,
    )
    runner.start(job)
    written = json.loads((tmp_path / "job-1" / "input" / "config" / "hyperparameters.json").read_text())
    assert (written["teacher"], written["student"]) == ("tiny:3", "tiny:2")
    assert runner.jobs["job-1"].sources == {
        "teacher": ("smollm2-135m-instruct", "tiny:3"),
        "student": (PRUNED, "tiny:2"),
    }
    with_defaults = ProcessTrainingRunner(tmp_path / "defaults", s3=no_s3, model_sources=LOCAL_MODEL_SOURCES)
    with_defaults.start(job)
    written = json.loads((tmp_path / "defaults" / "job-1" / "input" / "config" / "hyperparameters.json").read_text())
    assert written["student"] == "smollm2-135m-instruct@layers=15"  # today's local student, unchanged


def test_an_accuracy_floor_set_for_replaced_candidates_is_lifted_with_a_note():
    raw = (SPECS / "gsm8k.json").read_bytes()
    assert json.loads(raw)["constraints"]["min_accuracy"] == 0.3
    spec, doc, notes = local_spec(raw, "gsm8k.json")
    assert spec.constraints.min_accuracy == 0.0 and doc["constraints"]["min_accuracy"] == 0.0
    assert "constraints.min_accuracy: 0.3 -> 0 (set for the named candidates, not the PyPI models)" in notes


def test_an_accuracy_floor_stays_when_the_named_candidates_run_locally():
    doc = json.loads((SPECS / "mahjong-local.json").read_bytes())
    doc["constraints"]["min_accuracy"] = 0.2
    spec, _, notes = local_spec(json.dumps(doc).encode(), "spec.json")
    assert notes == [] and spec.constraints.min_accuracy == 0.2
