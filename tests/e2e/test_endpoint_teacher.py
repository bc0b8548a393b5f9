"""A local run that distils from a teacher behind a SageMaker endpoint, through the real path: the endpoint stood up
in the embedded AWS first, ValidateSpec's DescribeEndpoint, the training job's InvokeEndpoint over HTTP to the
embedded AWS and on to the local endpoint server, the reply cache, and a spot-like interruption whose restarted
process calls the teacher no more (counted where the calls arrive)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratos_cli.local.run import LocalRunOptions, run_local
from tests.conftest import SPECS
from tests.e2e.test_local_run import TINY_SOURCES

SPEC = SPECS / "word-forms-endpoint-teacher-local.json"
DATA = SPECS.parent / "data" / "word-forms"
TRAIN, EVAL, PROBE = 16, 4, 4
#: A short local run interrupted at 20 % of its steps, with an endpoint teacher (shared by test_endpoint_topk).
ENDPOINT_RUN = {
    "max_steps": "300",  # long enough (seconds) for the 2 s status polls to see 20 %
    "train_size": str(TRAIN),
    "eval_size": str(EVAL),
    "probe_size": str(PROBE),
    "max_new_tokens": "8",
    "bf16": "false",
    "logging_steps": "1",
    "extra_eval": "false",
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STRATOS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_an_endpoint_teacher_teaches_through_the_embedded_aws_and_a_restart_never_calls_it_again(home: Path) -> None:
    options = LocalRunOptions(spec_path=SPEC, data_dir=DATA, serve=False, home=home, interrupt_at=0.2)
    options.model_sources = dict(TINY_SOURCES)
    options.overrides.update(ENDPOINT_RUN)
    states: list[str] = []
    result = run_local(options, on_state=states.append)
    assert result.status == "SUCCEEDED", (result.error, result.reason, states)
    assert result.plan and result.plan["teacher"] == "sagemaker-endpoint:word-forms-teacher"
    assert result.mode == "injection"  # an endpoint asked for text exposes no logits
    [hyper] = (home / "runs").glob("work-*/jobs/*/input/config/hyperparameters.json")
    sent = json.loads(hyper.read_text())
    assert sent["teacher"] == "sagemaker-endpoint:word-forms-teacher" and "teacher" not in {
        p.name for p in hyper.parents[1].joinpath("data").iterdir()
    }  # no teacher weights were staged: the job calls the endpoint
    assert sent["teacher_rationales"] == "true"

    metrics = result.metrics
    assert metrics["mode_evidence"]["teacher_interface"] == "text"
    asked = metrics["injection_teacher_rationales"] + metrics["injection_teacher_rejected"]
    assert asked == TRAIN  # every training example asked once (rationale_samples 64 > 16)
    usage = metrics["teacher_usage"]
    # probe + the teacher's evaluation row + one rationale per training example, each answered by the endpoint.
    assert usage["calls"] + usage["cache_hits"] == PROBE + EVAL + TRAIN
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0

    # Counted where the calls arrive: the first process made every call the job reports, the process restarted
    # after the interruption made none (its phases and the reply cache answered).
    rows = result.teacher_calls
    assert [row["process"] for row in rows] == [1, 2], rows
    assert rows[0]["calls"] == usage["calls"] > 0
    assert rows[1]["calls"] == 0
    assert any(state == "Deploy" for state in states)
