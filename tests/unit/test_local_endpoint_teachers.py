"""A local run's external teachers: which ones it keeps, the job settings they get, and the calls counted per
training process where they arrive."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import SimpleNamespace

from stratos_cli.local.run import LOCAL_OVERRIDES, local_spec, sized_overrides, teacher_calls
from stratos_cli.run_cli import teacher_lines
from tests.conftest import SPECS

SPEC = SPECS / "word-forms-endpoint-teacher-local.json"
BEDROCK = {"kind": "bedrock", "model_id": "amazon.nova-lite-v1:0"}
OTHER_ENDPOINT = {"kind": "sagemaker-endpoint", "endpoint_name": "big-teacher", "serves": "qwen2.5-7b-instruct"}


def _local(doc: dict) -> tuple:
    return local_spec(json.dumps(doc).encode(), "spec.json")


def test_an_endpoint_teacher_serving_a_pypi_model_is_the_only_teacher_candidate() -> None:
    spec, doc, notes = _local(json.loads(SPEC.read_text()))
    assert doc["candidates"].get("teachers") is None and spec.candidates.teacher_ids() == [
        "sagemaker-endpoint:word-forms-teacher"
    ]
    assert not [n for n in notes if "teachers" in n]


def test_bedrock_and_endpoints_serving_other_models_are_dropped_with_a_note() -> None:
    doc = json.loads(SPEC.read_text())
    endpoint = doc["candidates"]["external_teachers"][0]
    doc["candidates"]["external_teachers"] = [BEDROCK, OTHER_ENDPOINT, endpoint]
    spec, out, notes = _local(doc)
    assert [t.source for t in spec.candidates.external_teachers] == ["sagemaker-endpoint:word-forms-teacher"]
    assert any("external_teachers[0]: Bedrock teacher amazon.nova-lite-v1:0 dropped" in n for n in notes)
    assert any("external_teachers[1]: endpoint big-teacher dropped" in n for n in notes)
    # None left: the PyPI teachers, as for a spec that names none.
    doc["candidates"]["external_teachers"] = [BEDROCK]
    spec, out, notes = _local(doc)
    assert spec.candidates.external_teachers == [] and out["candidates"]["teachers"] == [
        "smollm2-135m-instruct",
        "gemma-3-270m",
    ]


def test_rationales_are_asked_of_an_external_teacher_only_unless_set() -> None:
    with_endpoint, _, _ = _local(json.loads(SPEC.read_text()))
    plain, _, _ = local_spec((SPECS / "word-forms-local.json").read_bytes(), "w.json")
    assert "teacher_rationales" not in LOCAL_OVERRIDES
    assert sized_overrides(with_endpoint, dict(LOCAL_OVERRIDES))["teacher_rationales"] == "true"
    assert sized_overrides(plain, dict(LOCAL_OVERRIDES))["teacher_rationales"] == "false"
    assert sized_overrides(with_endpoint, {"teacher_rationales": "false"})["teacher_rationales"] == "false"


@dataclass
class _Job:
    name: str
    process_starts: list[float] = field(default_factory=list)

    @property
    def spec(self) -> SimpleNamespace:
        return SimpleNamespace(name=self.name)


def _call(endpoint: str, at: float) -> SimpleNamespace:
    return SimpleNamespace(endpoint_name=endpoint, received_at=at)


def test_calls_are_counted_per_training_process_as_they_arrive() -> None:
    jobs = [_Job("job-a", [10.0, 50.0]), _Job("job-b", [80.0])]
    calls = [_call("teacher", t) for t in (11, 12, 13, 49.9, 81)] + [
        _call("student-endpoint", 60),  # the latency check's calls: not the teacher's
        _call("teacher", 5),  # before any job (the planner never calls; ignored)
    ]
    assert teacher_calls(calls, ["teacher"], jobs) == [
        {"job": "job-a", "process": 1, "calls": 4},
        {"job": "job-a", "process": 2, "calls": 0},
        {"job": "job-b", "process": 1, "calls": 1},
    ]


def test_the_run_summary_says_what_the_teacher_cost_and_what_its_checker_kept() -> None:
    metrics = {
        "teacher_usage": {"calls": 24, "cache_hits": 3, "input_tokens": 1200, "output_tokens": 300, "usd": 0.0123},
        "injection_teacher_rationales": 12,
        "injection_teacher_rejected": 4,
    }
    lines = teacher_lines(metrics, [{"job": "j", "process": 1, "calls": 24}, {"job": "j", "process": 2, "calls": 0}])
    assert lines[0] == "teacher calls: 24 (3 answered from the run's reply cache), 1,200 tokens in, 300 out, 0.0123 USD"
    assert lines[1] == "teacher rationales kept by the checker: 12 of 16 (75%)"
    assert lines[2] == "teacher endpoint calls received: j process 1: 24, j process 2: 0"
    assert teacher_lines({"teacher_accuracy": 0.5}, []) == []  # a loaded teacher: nothing to say
    topk = {
        "teacher_usage": metrics["teacher_usage"],
        "teacher_topk_rows_teacher": 300,
        "teacher_topk_rows_reference": 46,
        "teacher_topk_positions": 1419,
        "teacher_topk_positions_teacher": 1207,
        "teacher_topk_tail_mass": 0.062673,
    }
    assert teacher_lines(topk, [])[1] == (
        "top-k targets: 300 of 346 are the teacher's verified answers; 1,207 of 1,419 positions on its top-k, "
        "tail mass 0.063"
    )
