"""The training job with an external teacher (``bedrock:`` here): no teacher model is loaded, every question to the
teacher goes through its client (a fake Converse client, counting its calls), the mode follows what the teacher
exposes, its usage lands in metrics.json, a re-run pays nothing, and a teacher the job cannot use fails it before
the student is loaded.

The jobs run in-process on the tiny config-built student (``tiny:2``) for a few steps.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from stratos_train import entrypoint, job
from stratos_train.config import TrainConfig
from stratos_train.env import SageMakerEnv
from stratos_train.evaluate import cut_after_answer
from stratos_train.models import load_model
from stratos_train.modes import ModeError, ProbeResult, decide_mode
from stratos_train.tasks import get_task
from stratos_train.tasks.base import Example
from stratos_train.teachers import BedrockTeacher, ExternalTeacherRef, TeacherError, TeacherUsage, sum_usage
from tests.conftest import offline_aws

MODEL = "amazon.nova-lite-v1:0"
SOURCE = f"bedrock:{MODEL}"
TASK = "mahjong-winning-tiles"
SETTINGS: dict[str, Any] = {
    "task": TASK,
    "teacher": SOURCE,
    "student": "tiny:2",
    "train_size": 16,
    "eval_size": 4,
    "probe_size": 4,
    "per_device_batch_size": 8,
    "max_steps": 2,
    "max_new_tokens": 64,  # room for the fake teacher's rationales (~40 tiny-tokenizer tokens) in the student
    "max_seq_len": 256,
    "logging_steps": 1,
    "extra_eval": False,
    "teacher_rationales": True,
    "rationale_samples": 3,
    "teacher_usd_per_1k_input": 0.06,
    "teacher_usd_per_1k_output": 0.24,
}
#: Fields that describe the job, not the run, and so differ between two jobs of one run.
PER_JOB = {"job_seconds", "run_jobs", "phases_reused", "phase_runs"}


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing here may reach AWS (:func:`tests.conftest.offline_aws`); one region, one thread."""
    offline_aws(monkeypatch, tmp_path, AWS_REGION="us-east-1", STRATOS_THREADS="1")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)


class FakeConverse:
    """A ``bedrock-runtime`` client whose ``converse`` answers like a model that knows some hands.

    * the reachability check ("Reply with OK.", maxTokens 1): ``OK``;
    * a rationale request (the known answer is in the prompt): a short explanation and the known answer, except
      for the hands in ``wrong`` (a wrong tile, which the verifier rejects); text goes on past the answer line;
    * a task question: the right answer for the hands in ``knows``, else ``1z``.

    Every call is recorded (thread-safe: the client is called ``teacher_concurrency`` at a time).
    """

    def __init__(self, knows: dict[str, str], wrong: set[str], fail: ClientError | None = None) -> None:
        self.knows, self.wrong, self.fail = knows, wrong, fail
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def converse(self, **request: Any) -> dict[str, Any]:
        with self._lock:
            self.calls.append(request)
        if self.fail is not None:
            raise self.fail
        user = request["messages"][-1]["content"][-1]["text"]
        known = re.search(r"The correct answer is: (.+)", user)
        hand = re.search(r"tiles of (\w+)\?", user)
        if user == "Reply with OK.":
            text = "OK"
        elif known and hand:
            answer = "9m" if hand[1] in self.wrong else known[1]
            text = f"Read the hand and check each tile.\nAnswer: {answer}\nHope this helps."
        else:
            text = f"Let me see.\nAnswer: {self.knows.get(hand[1] if hand else '', '1z')}\nDone."
        return {
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": len(user.split()), "outputTokens": len(text.split())},
        }


def _examples(split: str, n: int) -> list[Example]:
    return get_task(TASK).examples(split, n, 0)  # type: ignore[arg-type]


def _answer(example: Example) -> str:
    return " ".join(example.answer) if isinstance(example.answer, tuple) else str(example.answer)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeConverse:
    """The fake client every BedrockTeacher gets: it knows the first two held-out hands and the first two
    probe hands; it gets the second rationale wrong."""
    evals, train = _examples("eval", 4), _examples("train", 16)
    knows = {ex.problem["hand"]: _answer(ex) for ex in (*evals[:2], *train[:2])}
    client = FakeConverse(knows, wrong={train[1].problem["hand"]})
    monkeypatch.setattr(BedrockTeacher, "_build_client", lambda self, service: client)
    return client


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every model source the job loads, in order."""
    seen: list[str] = []

    def load(source: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(source)
        return load_model(source, *args, **kwargs)

    monkeypatch.setattr(job, "load_model", load)
    return seen


def _run(base: Path, **overrides: Any) -> dict[str, Any]:
    job.run_job(TrainConfig(**{**SETTINGS, **overrides}), SageMakerEnv.from_environ(str(base)))
    written: dict[str, Any] = json.loads((base / "output" / "data" / "metrics.json").read_text(encoding="utf-8"))
    return written


def _run_facts(metrics: dict[str, Any]) -> dict[str, Any]:
    """metrics.json without what describes the job rather than the run."""
    facts = {k: v for k, v in metrics.items() if k not in PER_JOB}
    facts["teacher_usage"] = {k: v for k, v in facts["teacher_usage"].items() if not k.startswith("job_")}
    return facts


# --- the job ----------------------------------------------------------------------------------------------------


def test_a_text_only_teacher_teaches_by_injection_through_its_client(
    tmp_path: Path, fake: FakeConverse, loads: list[str]
) -> None:
    metrics = _run(tmp_path)
    assert loads == ["tiny:2"]  # the student only: no teacher model
    assert metrics["mode"] == "injection"
    evidence = metrics["mode_evidence"]
    assert evidence["teacher_interface"] == "text" and not evidence["forced"]
    assert evidence["tokenizers_compatible"] is False and "text only" in evidence["reason"]
    assert evidence["coverage"] == 0.5 and evidence["probe_size"] == 4  # it knows 2 of the 4 probe hands

    # The calls: the check, the probe, the held-out row, the rationales; budgets as for a loaded teacher.
    check, *rest = fake.calls
    assert check["inferenceConfig"]["maxTokens"] == 1
    rationales = [c for c in rest if "system" in c]
    questions = [c for c in rest if "system" not in c]
    # A rationale may explain for rationale_tokens (256) and then write its answer line (max_new_tokens, 64).
    assert len(rationales) == 3 and {c["inferenceConfig"]["maxTokens"] for c in rationales} == {256 + 64}
    assert len(questions) == 4 + 4 and {c["inferenceConfig"]["maxTokens"] for c in questions} == {64}
    assert all(c["inferenceConfig"]["temperature"] == 0 for c in fake.calls)

    # The teacher row: its completions (cut after the answer line) scored like a loaded model's.
    task, evals = get_task(TASK), _examples("eval", 4)
    texts = [f"Let me see.\nAnswer: {fake.knows.get(ex.problem['hand'], '1z')}" for ex in evals]
    expected = [task.score(ex, text) for ex, text in zip(evals, texts, strict=True)]
    assert metrics["teacher_accuracy"] == sum(s.correct for s in expected) / 4 == 0.5
    assert metrics["teacher_partial"] == pytest.approx(sum(s.credit for s in expected) / 4)
    assert metrics["teacher_answered"] == 1.0
    assert "heldout_kl_before" not in metrics and "heldout_kl_after" not in metrics

    # Rationales: 3 asked, the wrong one rejected by the verifier, the verified ones kept as targets.
    assert metrics["injection_teacher_asked"] == 3
    assert metrics["injection_teacher_rationales"] == 2 and metrics["injection_teacher_rejected"] == 1
    assert any("not the winning tiles" in reason for reason in metrics["injection_rejection_reasons"])
    state = next((tmp_path / "checkpoints").glob("run-*")) / "state"
    pairs = json.loads((state / "injection_data.json").read_text(encoding="utf-8"))["pairs"]
    kept = [target for _, target in pairs if target.startswith("Read the hand")]
    assert len(kept) == 2 and all(not target.endswith("Hope this helps.") for target in kept)

    usage = metrics["teacher_usage"]
    assert usage["calls"] == len(fake.calls) == 1 + 8 + 3 and usage["cache_hits"] == 0
    assert usage["job_calls"] == usage["calls"] and usage["jobs"] == 1
    assert usage["replies_by_stop"]["end"] == 11  # the check is a call, not a reply
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    priced = usage["input_tokens"] / 1000 * 0.06 + usage["output_tokens"] / 1000 * 0.24
    assert usage["usd"] == pytest.approx(priced, abs=1e-6) and usage["job_usd"] == usage["usd"]
    assert metrics["train_steps"] == 2 and "student_after_accuracy" in metrics


def test_a_rerun_of_the_same_job_makes_no_call_and_gives_the_same_metrics(tmp_path: Path, fake: FakeConverse) -> None:
    first = _run(tmp_path)
    made = len(fake.calls)
    again = _run(tmp_path)
    assert len(fake.calls) == made  # 0 calls: not even the reachability check
    assert again["run_jobs"] == 2 and again["teacher_usage"]["job_calls"] == 0
    assert again["teacher_usage"]["job_usd"] == 0.0
    assert _run_facts(again) == _run_facts(first)


def test_another_recipe_over_the_same_checkpoints_is_answered_from_the_reply_cache(
    tmp_path: Path, fake: FakeConverse
) -> None:
    """A job that cannot reuse the run's phases (here: another learning rate, so another run folder) asks the
    teacher the same questions: the reply cache answers them all; only the reachability check is a call."""
    first = _run(tmp_path)
    made = len(fake.calls)
    other = _run(tmp_path, learning_rate=1e-3)
    new_calls = fake.calls[made:]
    assert [c["inferenceConfig"]["maxTokens"] for c in new_calls] == [1]  # the check alone
    usage = other["teacher_usage"]
    assert usage["calls"] == 1 and usage["cache_hits"] == first["teacher_usage"]["calls"] - 1
    assert usage["usd"] == pytest.approx(3 / 1000 * 0.06 + 1 / 1000 * 0.24)  # the check: 3 + 1 tokens
    for key in ("teacher_accuracy", "teacher_partial", "injection_teacher_rationales", "mode_evidence"):
        assert other[key] == first[key]


def test_an_unreachable_teacher_fails_the_job_before_the_student_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loads: list[str]
) -> None:
    denied = ClientError(
        {"Error": {"Code": "AccessDeniedException", "Message": "You don't have access to the model"}}, "Converse"
    )
    client = FakeConverse({}, set(), fail=denied)
    monkeypatch.setattr(BedrockTeacher, "_build_client", lambda self, service: client)
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    hyperparameters = {k: v if isinstance(v, str) else json.dumps(v) for k, v in SETTINGS.items()}
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters), encoding="utf-8")

    assert entrypoint.main(["--base-dir", str(tmp_path)]) == 1
    failure = (tmp_path / "output" / "failure").read_text(encoding="utf-8")
    assert failure.startswith(f"TeacherError: teacher {SOURCE} is not reachable in us-east-1: AccessDeniedException")
    assert len(client.calls) == 1 and loads == []  # one check; no model loaded, no training
    assert not (tmp_path / "output" / "data" / "metrics.json").exists()


def test_forced_alignment_with_a_text_only_teacher_is_refused_before_anything_runs(
    tmp_path: Path, fake: FakeConverse, loads: list[str]
) -> None:
    with pytest.raises(ModeError, match="returns text only \\(Bedrock's Converse API returns no log-probabilities\\)"):
        _run(tmp_path, mode="alignment")
    assert fake.calls == [] and loads == []


def test_top_k_alignment_through_bedrock_is_refused(tmp_path: Path, fake: FakeConverse, loads: list[str]) -> None:
    """Converse returns no log-probabilities (an endpoint's top-k: tests/unit/test_endpoint_topk_job.py)."""
    with pytest.raises(
        ModeError, match=f"teacher_topk 5 with the external teacher {SOURCE}: .*Converse API returns no"
    ):
        _run(tmp_path, teacher_topk=5)
    assert fake.calls == [] and loads == []


# --- the pieces -------------------------------------------------------------------------------------------------


def test_a_text_only_teacher_means_injection_whatever_its_coverage() -> None:
    decision = decide_mode(
        "auto",
        compatible=True,
        threshold=0.5,
        probe=lambda: ProbeResult.from_scores([1.0] * 8, 1.0, [3.0] * 8),
        complexity_unit="decompositions",
        interface="text",
        interface_why="Bedrock's Converse API returns no log-probabilities",
    )
    assert decision.mode == "injection" and not decision.forced
    assert decision.coverage == 1.0 and decision.complexity == 3.0 and decision.probe_size == 8
    assert decision.teacher_interface == "text" and decision.tokenizers_compatible is False
    assert "text only (Bedrock's Converse API" in decision.reason
    forced = decide_mode("injection", compatible=True, threshold=0.5, probe=None, interface="text")
    assert forced.forced and forced.teacher_interface == "text"
    with pytest.raises(ModeError, match="returns text only"):
        decide_mode("alignment", compatible=True, threshold=0.5, probe=None, interface="text")
    loaded = decide_mode(
        "auto",
        compatible=True,
        threshold=0.5,
        probe=lambda: ProbeResult.from_scores([1.0, 1.0, 1.0, 0.0], 0.8, [1.0] * 4),
    )
    assert loaded.mode == "alignment" and loaded.teacher_interface == "logits"


def test_cut_after_answer_matches_the_stop_after_answer_rule() -> None:
    assert cut_after_answer("Because.\nAnswer: 1s 3s\nMore text.\nAnswer: 9m") == ("Because.\nAnswer: 1s 3s", True)
    assert cut_after_answer("Because.\nAnswer: 1s 3s") == ("Because.\nAnswer: 1s 3s", False)  # not closed
    assert cut_after_answer("no answer here\n") == ("no answer here\n", False)


def test_usage_of_several_jobs_adds_up() -> None:
    one = TeacherUsage(input_usd_per_1k=0.06, output_usd_per_1k=0.24, calls=3, input_tokens=1000, output_tokens=500)
    one.replies_by_stop["end"] = 2
    two = TeacherUsage(input_usd_per_1k=0.06, output_usd_per_1k=0.24, cache_hits=2)
    two.replies_by_stop["end"] = 2
    total = sum_usage([one.as_dict(), two.as_dict()])
    assert total["calls"] == 3 and total["cache_hits"] == 2 and total["replies_by_stop"]["end"] == 4
    assert total["usd"] == pytest.approx(0.06 + 0.12) and total["input_usd_per_1k"] == 0.06
    assert sum_usage([]) == TeacherUsage().as_dict()


def test_the_region_is_the_jobs_else_the_arns(monkeypatch: pytest.MonkeyPatch) -> None:
    arn = "arn:aws:bedrock:eu-west-1::foundation-model/amazon.nova-lite-v1:0"
    ref = ExternalTeacherRef("bedrock", arn, f"bedrock:{arn}")
    assert job.teacher_region(ref) == "us-east-1"
    monkeypatch.delenv("AWS_REGION")
    assert job.teacher_region(ref) == "eu-west-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    assert job.teacher_region(ref) == "us-west-2"
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(TeacherError, match="no AWS region"):
        job.teacher_region(ExternalTeacherRef("bedrock", MODEL, SOURCE))
