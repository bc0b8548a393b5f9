"""A local run that aligns a student to an endpoint teacher's top-k log-probabilities through the real path: the
endpoint stood up in the embedded AWS, the training job's InvokeEndpoint (``top_n_tokens``) over HTTP to the local
endpoint server, the job's token check, top-k KD on the teacher's verified answers, and a restart that calls the
teacher no more.

The teacher is a tiny exported model and the student its own copy cut to one layer (the same tokenizer, as a
depth-pruned student of a real endpoint model would have), so the token check passes and the mode is alignment.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratos_cli.local.run import LocalRunOptions, run_local
from stratos_train.export import export_source
from tests.conftest import SPECS
from tests.e2e.test_endpoint_teacher import DATA, ENDPOINT_RUN, EVAL, PROBE, TRAIN

SPEC = SPECS / "word-forms-endpoint-topk-local.json"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STRATOS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_an_endpoint_teacher_with_top_k_aligns_the_student_through_the_embedded_aws(home: Path, tmp_path: Path) -> None:
    teacher_dir = tmp_path / "teacher"
    export_source("tiny:3", teacher_dir, max_new_tokens=16)
    options = LocalRunOptions(spec_path=SPEC, data_dir=DATA, serve=False, home=home, interrupt_at=0.2)
    options.model_sources = {
        "smollm2-135m-instruct": str(teacher_dir),
        "smollm2-135m-instruct-l15": f"{teacher_dir}@layers=1",
    }
    # A random tiny teacher covers nothing: threshold 0 lets the mode rule align to it anyway.
    options.overrides.update({**ENDPOINT_RUN, "coverage_threshold": "0"})
    states: list[str] = []
    result = run_local(options, on_state=states.append)
    assert result.status == "SUCCEEDED", (result.error, result.reason, states)
    [hyper] = (home / "runs").glob("work-*/jobs/*/input/config/hyperparameters.json")
    sent = json.loads(hyper.read_text())
    assert sent["teacher"] == "sagemaker-endpoint:word-forms-topk-teacher" and sent["teacher_topk"] == "5"

    metrics = result.metrics
    assert result.mode == "alignment", metrics["mode_evidence"]
    evidence = metrics["mode_evidence"]
    assert evidence["teacher_interface"] == "top-k" and evidence["tokenizers_compatible"] is True
    # A random tiny teacher answers no word form right: every row trains on its reference target, one-hot
    # (tests/unit/test_endpoint_topk_job.py covers verified teacher rows and their matched positions).
    assert metrics["teacher_topk_rows_teacher"] == 0 and metrics["teacher_topk_rows_reference"] == TRAIN
    assert metrics["teacher_topk_reference_reasons"] == {"answer differs": TRAIN}
    assert metrics["teacher_topk_positions"] == metrics["train_tokens"] > 0
    # What came over the wire: every cached reply lists its generated ids and the top-5 at each of them.
    replies = [json.loads(p.read_text())["reply"] for p in home.rglob("teacher-replies/*/*.json")]
    assert len(replies) == usage_calls(metrics) and all(
        r["tokens"] and len(r["top_logprobs"]) == len(r["tokens"]) and {len(t) for t in r["top_logprobs"]} == {5}
        for r in replies
    )
    usage = metrics["teacher_usage"]
    # Token check (4 training prompts) + teacher evaluation (4) + the other 12 training prompts; the probe's
    # 4 prompts and the 4 checked training prompts are answered again from the reply cache.
    assert usage["calls"] == 4 + EVAL + (TRAIN - 4) and usage["cache_hits"] >= PROBE + 4

    # Counted where the calls arrive: the restarted process made none.
    calls = result.teacher_calls
    assert [row["process"] for row in calls] == [1, 2], calls
    assert calls[0]["calls"] == usage["calls"] and calls[1]["calls"] == 0


def usage_calls(metrics: dict[str, object]) -> int:
    """Calls the job made (each one reply in the cache)."""
    usage = metrics["teacher_usage"]
    assert isinstance(usage, dict)
    return int(usage["calls"])
