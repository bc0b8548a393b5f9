"""Top-k KD from a SageMaker endpoint teacher (``teacher_topk`` > 0): the job checks that the endpoint's token ids
are the student's, asks it for every training target with its top-k log-probabilities, keeps its verified answers
as targets, and matches its distributions position by position; a mismatched tokenizer or a container without
top-k falls back to Knowledge Injection (``auto``) or fails a forced alignment by name.

The endpoint is a fake ``sagemaker-runtime`` client that answers in TGI's shape, in the tiny student's own token
space (its tokenizer is taken from the job's load); the jobs run in-process for a few steps.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from stratos_train import job
from stratos_train.config import TrainConfig
from stratos_train.data import EncodedExample, encode_example
from stratos_train.env import SageMakerEnv
from stratos_train.losses import IGNORE_INDEX, topk_kd_loss_per_token
from stratos_train.models import load_model
from stratos_train.modes import ModeError
from stratos_train.sequence_kd import (
    ONE_HOT_FILL,
    SequenceKDStats,
    align_topk,
    check_token_space,
    endpoint_topk_cache,
    teacher_targets,
)
from stratos_train.tasks import get_task
from stratos_train.tasks.base import Example
from stratos_train.teachers import SageMakerEndpointTeacher, TeacherReply
from tests.conftest import offline_aws

ENDPOINT = "stratos-teacher"
SOURCE = f"sagemaker-endpoint:{ENDPOINT}"
TASK = "mahjong-winning-tiles"
K = 3
SETTINGS: dict[str, Any] = {
    "task": TASK,
    "teacher": SOURCE,
    "teacher_prompt_format": "chat",
    "teacher_topk": K,
    "student": "tiny:2",
    "train_size": 12,
    "eval_size": 4,
    "probe_size": 4,
    "per_device_batch_size": 4,
    "max_steps": 2,
    "max_new_tokens": 48,
    "max_seq_len": 320,
    "logging_steps": 1,
    "extra_eval": False,
}


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    offline_aws(monkeypatch, tmp_path, AWS_REGION="us-east-1", STRATOS_THREADS="1")


def _examples(split: str, n: int) -> list[Example]:
    return get_task(TASK).examples(split, n, 0)  # type: ignore[arg-type]


def _answer(example: Example) -> str:
    return " ".join(example.answer) if isinstance(example.answer, tuple) else str(example.answer)


class FakeTGI:
    """A TGI endpoint whose model knows every hand but those in ``wrong`` (answers ``9m 9p``), and lists its tokens
    and top-k in the student's token space: the generated ids are exactly the student's encoding of the answer
    (its end-of-turn token included), the first alternative is the generated token (log-prob -0.1), the others
    the next ids (-3, -4, ...). ``shift`` adds to every id (a teacher with another vocabulary); ``no_topk`` leaves
    ``top_tokens`` out (a container that does not return them)."""

    def __init__(self, wrong: set[str], shift: int = 0, no_topk: bool = False) -> None:
        self.wrong, self.shift, self.no_topk = wrong, shift, no_topk
        self.tokenizer: Any = None
        self.answers = {ex.problem["hand"]: _answer(ex) for ex in (*_examples("train", 12), *_examples("eval", 4))}
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def describe_endpoint(self, EndpointName: str) -> dict[str, Any]:
        return {"EndpointName": EndpointName, "EndpointStatus": "InService"}

    def invoke_endpoint(self, **request: Any) -> dict[str, Any]:
        body = json.loads(request["Body"])
        with self._lock:
            self.calls.append(body)
        messages = body["inputs"]
        hand = re.search(r"tiles of (\w+)\?", messages[-1]["content"])
        key = hand[1] if hand else ""
        text = "Answer: " + ("9m 9p" if key in self.wrong else self.answers.get(key, "1z"))
        encoded, _ = encode_example(self.tokenizer, messages, text, 1024)
        assert encoded is not None
        ids = [t for t in encoded.labels if t != IGNORE_INDEX]
        top_n = body["parameters"].get("top_n_tokens", 0)
        vocab = len(self.tokenizer)

        def token(i: int, logprob: float) -> dict[str, Any]:
            return {"id": i + self.shift, "text": self.tokenizer.decode([i]), "logprob": logprob, "special": False}

        details: dict[str, Any] = {
            "finish_reason": "eos_token",
            "generated_tokens": len(ids),
            "prefill": [],
            "tokens": [token(i, -0.1) for i in ids],
        }
        if top_n and not self.no_topk:
            details["top_tokens"] = [
                [token(i, -0.1), *(token((i + j) % vocab, -2.0 - j) for j in range(1, top_n))] for i in ids
            ]
        answer = [{"generated_text": text, "details": details}]
        return {"Body": _Body(json.dumps(answer).encode()), "ResponseMetadata": {"RetryAttempts": 0}}


class _Body:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def read(self) -> bytes:
        return self.raw


def _install(monkeypatch: pytest.MonkeyPatch, fake: FakeTGI) -> None:
    monkeypatch.setattr(SageMakerEndpointTeacher, "_build_client", lambda self, service: fake)

    def load(source: str, *args: Any, **kwargs: Any) -> Any:
        loaded = load_model(source, *args, **kwargs)
        fake.tokenizer = loaded.tokenizer  # the endpoint answers in the student's token space
        return loaded

    monkeypatch.setattr(job, "load_model", load)


def _run(base: Path, **overrides: Any) -> dict[str, Any]:
    job.run_job(TrainConfig(**{**SETTINGS, **overrides}), SageMakerEnv.from_environ(str(base)))
    written: dict[str, Any] = json.loads((base / "output" / "data" / "metrics.json").read_text(encoding="utf-8"))
    return written


# --- the job ----------------------------------------------------------------------------------------------------


def test_an_endpoint_with_top_k_teaches_by_top_k_kd_on_its_verified_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = _examples("train", 12)
    fake = FakeTGI(wrong={train[5].problem["hand"], train[7].problem["hand"]})
    _install(monkeypatch, fake)
    metrics = _run(tmp_path)

    assert metrics["mode"] == "alignment"
    evidence = metrics["mode_evidence"]
    assert evidence["teacher_interface"] == "top-k" and evidence["tokenizers_compatible"] is True
    assert evidence["coverage"] == 1.0  # the probe's 4 hands are known
    assert all(call["parameters"]["top_n_tokens"] == K for call in fake.calls)

    # Every training prompt asked once (the token check's 4 are cache hits the second time), 2 answers wrong.
    assert metrics["teacher_topk_rows_teacher"] == 10 and metrics["teacher_topk_rows_reference"] == 2
    assert metrics["teacher_topk_reference_reasons"] == {"answer differs": 2}
    # The teacher's ids are the student's encoding of its answer: every teacher row matches at every position.
    positions, matched = metrics["teacher_topk_positions"], metrics["teacher_topk_positions_teacher"]
    assert 0 < matched < positions and metrics["train_tokens"] == positions
    tail = 1 - (torch.tensor([-0.1, -3.0, -4.0]).exp().sum().item())
    assert metrics["teacher_topk_tail_mass"] == pytest.approx(tail, abs=1e-5)
    usage = metrics["teacher_usage"]
    # The token check asks the first 4 training prompts, the very requests the probe and training send again
    # (cache hits); then the teacher's evaluation (4) and the other 8 training prompts.
    assert usage["calls"] == len(fake.calls) == 4 + 4 + 8 and usage["cache_hits"] == 4 + 4
    assert metrics["train_steps"] == 2 and "student_after_accuracy" in metrics

    # A re-run of the finished job asks nothing.
    made = len(fake.calls)
    again = _run(tmp_path)
    assert len(fake.calls) == made and again["teacher_usage"]["job_calls"] == 0
    assert again["teacher_topk_rows_teacher"] == 10

    # A job of the run that must train again (its training result lost, e.g. interrupted before the end) reads
    # the teacher's answers from the run's state: no call, not even a cache read, and the first job's timing.
    state = next((tmp_path / "checkpoints").glob("run-*"))
    (state / "state" / "train.json").unlink()
    hits = again["teacher_usage"]["cache_hits"]
    third = _run(tmp_path)
    assert len(fake.calls) == made and third["teacher_usage"]["cache_hits"] == hits
    assert third["teacher_topk_cache_seconds"] == metrics["teacher_topk_cache_seconds"]
    assert "topk_targets" in third["phases_reused"]


@pytest.mark.parametrize(
    ("fake", "why"),
    [
        (FakeTGI(set(), shift=1), "decode to other text with the student's tokenizer"),
        (FakeTGI(set(), no_topk=True), "came without top-k log-probabilities"),
    ],
    ids=["other-vocabulary", "no-top-k"],
)
def test_an_endpoint_whose_tokens_are_not_the_students_falls_back_to_injection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeTGI, why: str
) -> None:
    _install(monkeypatch, fake)
    metrics = _run(tmp_path)
    assert metrics["mode"] == "injection"
    evidence = metrics["mode_evidence"]
    assert evidence["teacher_interface"] == "top-k" and evidence["tokenizers_compatible"] is False
    assert why in evidence["reason"] and "teacher_topk_rows_teacher" not in metrics
    # The token check asked the first 4 training prompts with top-k; injection then asks for text only (a
    # container that refuses top_n_tokens still answers the probe, the evaluation and the rationales).
    assert [("top_n_tokens" in call["parameters"]) for call in fake.calls[:5]] == [True] * 4 + [False]
    assert not any("top_n_tokens" in call["parameters"] for call in fake.calls[4:])

    with pytest.raises(ModeError, match=f"not the student's \\(.*{why}"):
        _run(tmp_path / "forced", mode="alignment")


# --- the pieces -------------------------------------------------------------------------------------------------


class _Tok:
    """A tokenizer whose id i decodes to ``t<i>``."""

    all_special_ids = (0,)

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return "".join(f"t{i}" for i in ids if not (skip_special_tokens and i in self.all_special_ids))


def _reply(ids: list[int], *, k: int = 2, text: str | None = None, stop: str = "end") -> TeacherReply:
    """A reply generating ``ids`` (text: their decoding, unless given), each with ``k`` alternatives."""
    text = "".join(f"t{i}" for i in ids if i) if text is None else text
    tokens = tuple((i, f"t{i}", -0.2) for i in ids)
    top = tuple(((i, f"t{i}", -0.2), *((i + j, f"t{i + j}", -2.0 * j) for j in range(1, k))) for i in ids)
    return TeacherReply(text=text, stop=stop, tokens=tokens, top_logprobs=top)  # type: ignore[arg-type]


def test_token_space_check_counts_every_kind_of_mismatch() -> None:
    good = check_token_space([_reply([1, 2, 3, 0])], _Tok(), vocab_size=100)  # 0: its end token (special)
    assert good.ok and (good.replies, good.tokens) == (1, 4) and good.why == "" and good.aligned is None
    # Per-token texts are not compared (TGI writes them as differences of decodings): the ids' decoding is.
    shifted = TeacherReply(text="t6", stop="end", tokens=((5, "t6", 0.0),), top_logprobs=(((5, "t6", 0.0),),))
    bad = check_token_space([shifted], _Tok(), vocab_size=100)
    assert not bad.ok and bad.mismatched == 1 and "endpoint 't6' vs student 't5'" in bad.why
    assert check_token_space([_reply([98, 99])], _Tok(), vocab_size=100).ok  # alternative 100: dropped later
    big = check_token_space([_reply([98, 100])], _Tok(), vocab_size=100)
    assert not big.ok and big.out_of_vocab == 1 and "generated token ids are outside" in big.why
    # With the student's own labels: an answer it re-tokenises differently does not align.
    aligned = check_token_space([_reply([1, 2, 0]), _reply([3, 4, 0])], _Tok(), 100, labels=[[1, 2, 7], [3, 4, 7]])
    assert aligned.ok and aligned.aligned == 2  # the end tokens differ (0 vs 7): the answers align
    three = [_reply([1, 2]), _reply([3, 4]), _reply([5, 6])]
    apart = check_token_space(three, _Tok(), 100, labels=[[1, 2], [12, 7], [13, 7]])
    assert not apart.ok and apart.aligned == 1 and "only 1 of 3 answers re-tokenise" in apart.why
    bare = check_token_space([TeacherReply(text="x", stop="end")], _Tok(), vocab_size=100)
    assert bare.without_topk == 1 and not bare.ok
    refused = TeacherReply(text="", stop="error", detail="ModelError: top_n_tokens 10 > max 5")
    failed = check_token_space([refused, refused], _Tok(), vocab_size=100)
    assert not failed.ok and failed.failed == 2
    assert (
        failed.why
        == "no reply to compare (2 replies failed, the others were empty): error: ModelError: top_n_tokens 10 > max 5"
    )


def test_align_topk_uses_the_teacher_on_the_common_prefix_and_one_hot_after() -> None:
    stats = SequenceKDStats()
    values, indices = align_topk([4, 5, 9, 7], _reply([4, 5, 6, 7], k=2), k=3, stats=stats)
    assert values.shape == indices.shape == (4, 3)
    assert indices[0].tolist() == [4, 5, 4] and values[0].tolist() == pytest.approx([-0.2, -2.0, ONE_HOT_FILL])
    assert indices[1].tolist() == [5, 6, 5]
    # position 2 differs (student 9, teacher 6): one-hot from there on, even where ids agree again (7).
    assert indices[2].tolist() == [9, 9, 9] and values[2].tolist() == [0.0, ONE_HOT_FILL, ONE_HOT_FILL]
    assert indices[3].tolist() == [7, 7, 7]
    assert (stats.positions, stats.positions_teacher) == (4, 2)
    tail = 1 - (torch.tensor([-0.2, -2.0]).exp().sum().item())
    assert stats.tail_mass == pytest.approx(tail)

    # One-hot rows cost exactly the cross-entropy; teacher rows are finite.
    logits = torch.randn(4, 12)
    kl = topk_kd_loss_per_token(logits, values, indices)
    ce = torch.nn.functional.cross_entropy(logits, torch.tensor([4, 5, 9, 7]), reduction="none")
    assert torch.isfinite(kl).all() and torch.allclose(kl[2:], ce[2:], atol=1e-5)
    none, _ = align_topk([3, 3], None, k=2)
    assert none[:, 0].tolist() == [0.0, 0.0]
    # Alternatives past the student's vocabulary are dropped (its logits have no such rows): filler instead.
    values, indices = align_topk([8, 9], _reply([8, 9], k=3), k=3, vocab_size=10)
    assert indices[1].tolist() == [9, 9, 9] and values[1].tolist() == pytest.approx([-0.2, ONE_HOT_FILL, ONE_HOT_FILL])
    assert indices[0].tolist() == [8, 9, 8]


def test_teacher_targets_keep_verified_answers_only() -> None:
    task = get_task(TASK)
    examples = _examples("train", 3)
    right = _reply([1, 2], text=f"Answer: {_answer(examples[0])}")
    wrong = _reply([1, 2], text="Answer: 9m 9p")
    failed = TeacherReply(text="", stop="error", detail="ModelError")
    pairs, used, stats = teacher_targets(task, examples, [right, wrong, failed])
    assert [u is not None for u in used] == [True, False, False]
    assert pairs[0][1] == right.text and pairs[1][1] == task.target(examples[1])
    assert stats.reference_reasons == {"answer differs": 1, "error": 1}
    with pytest.raises(ValueError, match="2 replies for 3 examples"):
        teacher_targets(task, examples, [right, wrong])


def test_endpoint_topk_cache_follows_each_rows_source_pair() -> None:
    rows = [EncodedExample([0, 1, 2], [IGNORE_INDEX, 1, 2], 0, source=1)]
    [(values, indices)] = endpoint_topk_cache(rows, [None, _reply([1, 2])], k=2)
    assert indices[:, 0].tolist() == [1, 2] and values[0].tolist() == pytest.approx([-0.2, -2.0])
    with pytest.raises(ValueError, match="without its pair's position"):
        endpoint_topk_cache([EncodedExample([0, 1], [IGNORE_INDEX, 1])], [None], k=2)


def test_plain_text_prompts_expose_text_only() -> None:
    """In plain text the answer follows 'Assistant:', not the student's chat turn: no top-k alignment."""
    assert job.teacher_interface(TrainConfig(**SETTINGS)) == ("top-k", "")
    interface, why = job.teacher_interface(TrainConfig(**{**SETTINGS, "teacher_prompt_format": "text"}))
    assert interface == "text" and "needs teacher_prompt_format 'chat'" in why
    forced = job.teacher_interface(TrainConfig(**{**SETTINGS, "mode": "injection"}))
    assert forced[0] == "text"
