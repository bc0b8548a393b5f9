"""User JSONL task: record formats, validation messages, prompts, the four metrics, no verifier."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stratos_train.tasks import NoVerifierError, TaskDataError, TaskError, get_task
from stratos_train.tasks.base import Example
from stratos_train.tasks.jsonl import JsonlTask


def _jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


def _chat(question: str, answer: str, system: str | None = None) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}] if system else []
    return {"messages": [*messages, {"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def test_chat_records(tmp_path: Path) -> None:
    train = _jsonl(
        tmp_path / "train.jsonl",
        [_chat("Capital of France?", "Paris", system="Answer in one word."), "", _chat("Capital of Italy?", "Rome")],
    )
    task = JsonlTask("chat", train=train)
    examples = task.examples("train")
    assert [e.id for e in examples] == ["train.jsonl:1", "train.jsonl:3"]
    first = examples[0]
    assert first.answer == "Paris" and first.reasoning == ""
    assert first.problem == {
        "messages": [
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": "Capital of France?"},
        ]
    }
    assert task.target(first) == "Paris"
    # Few-shot pairs go after the system message and before the question.
    assert task.prompt(first, [examples[1]]) == [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Capital of Italy?"},
        {"role": "assistant", "content": "Rome"},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert task.complexity(first) == 1.0


def test_prompt_completion_records(tmp_path: Path) -> None:
    records = [{"prompt": f"{i} + {i} =", "completion": f"Double it.\nAnswer: {2 * i}"} for i in range(30)]
    path = _jsonl(tmp_path / "pc.jsonl", records)
    task = JsonlTask("prompt-completion", train=path, eval=path, metric="numeric-match")
    examples = task.examples("eval", n=5, seed=1)
    assert len(examples) == 5 and examples == task.examples("eval", n=5, seed=1)
    ex = examples[0]
    assert task.prompt(ex) == [{"role": "user", "content": ex.problem["prompt"]}]
    assert task.complexity(ex) == 2.0
    assert task.score(ex, task.target(ex)).correct


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{bad", "not JSON"),
        ("[1, 2]", "a record must be a JSON object"),
        (json.dumps({"messages": []}), "at least a user and an assistant"),
        (json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]}), "role must be"),
        (json.dumps({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]}), "last"),
        (json.dumps({"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]}), "user"),
        (json.dumps({"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "a"}]}), "string"),
        (json.dumps({"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]}), "exactly 'role'"),
        (json.dumps({**_chat("q", "a"), "extra": 1}), "unknown field(s) ['extra']"),
    ],
)
def test_malformed_chat_lines_are_named(tmp_path: Path, line: str, reason: str) -> None:
    path = _jsonl(tmp_path / "data.jsonl", [_chat("q", "a"), line])
    with pytest.raises(TaskDataError) as info:
        JsonlTask("chat", train=path).examples("train")
    assert f"{path}:2: " in str(info.value) and reason in str(info.value)


def test_malformed_prompt_completion_and_many_errors(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "pc.jsonl", [{"prompt": "q", "completion": ""}] * 12 + [{"prompt": "q"}])
    with pytest.raises(TaskDataError) as info:
        JsonlTask("prompt-completion", train=path).examples("train")
    message = str(info.value)
    assert message.startswith("13 malformed prompt-completion record(s)")
    assert "'completion' must be a non-empty string" in message and "(and 3 more)" in message


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError, match="no eval file"):
        JsonlTask("chat").examples("eval")
    with pytest.raises(TaskDataError, match=f"JSONL file {tmp_path / 'x.jsonl'} does not exist"):
        JsonlTask("chat", train=tmp_path / "x.jsonl").examples("train")
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match="holds no records"):
        JsonlTask("chat", train=tmp_path / "empty.jsonl").examples("train")


def _ex(answer: str) -> Example:
    return Example(id="f:1", problem={"prompt": "q"}, answer=answer)


@pytest.mark.parametrize(
    ("completion", "correct"),
    [
        ("Paris", True),
        ("  paris. ", True),
        ("**Paris**", True),
        ("Let me think.\nThe answer is Paris.", True),
        ("Answer: PARIS", True),
        ("Paris, France", False),
        ("London", False),
    ],
)
def test_exact_match(completion: str, correct: bool) -> None:
    assert JsonlTask("chat").score(_ex("Paris"), completion).correct is correct


def test_regex_match_uses_the_last_match_and_group_one() -> None:
    task = JsonlTask("prompt-completion", metric="regex-match", answer_regex=r"\(([A-D])\)")
    ex = _ex("Because of X, the answer is (B).")
    assert task.reference_answer(ex) == "b"
    assert task.score(ex, "Not (A)... on reflection (B)").correct
    assert not task.score(ex, "(B) at first, but (C)").correct
    assert task.score(ex, "no letter").predicted is None
    whole = JsonlTask("prompt-completion", metric="regex-match", answer_regex=r"[0-9]{4}")
    assert whole.score(_ex("1969"), "It was 1969.").correct  # no group: the whole match
    assert whole.reference_answer(_ex("late sixties")) == "late sixties"  # regex misses: reference used whole


def test_numeric_and_set_match() -> None:
    numeric = JsonlTask("chat", metric="numeric-match")
    assert numeric.score(_ex("1234"), "The answer is 1,234.").correct
    assert numeric.score(_ex("18"), "$18.00").correct and numeric.score(_ex("18"), "18 eggs").correct
    sets = JsonlTask("chat", metric="set-match")
    assert sets.score(_ex("red, green, blue"), "Answer: Blue and red; green.").correct
    partial = sets.score(_ex("red, green, blue"), "Answer: red, green, red")
    assert not partial.correct and partial.credit == pytest.approx(0.8)


def test_no_verifier() -> None:
    task = get_task("jsonl", format="chat")
    assert task.has_verifier is False
    with pytest.raises(NoVerifierError, match="no verifier"):
        task.verify(_ex("Paris"), "Paris")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"format": "csv"}, "format must be one of"),
        ({"format": "chat", "metric": "bleu"}, "metric must be one of"),
        ({"format": "chat", "metric": "regex-match"}, "answer_regex is required by"),
        ({"format": "chat", "answer_regex": "x"}, "only allowed with"),
        ({"format": "chat", "metric": "regex-match", "answer_regex": "("}, "does not compile under RE2"),
        ({"format": "chat", "metric": "regex-match", "answer_regex": "\\d*"}, "matches the empty string"),
        ({"format": "chat", "train_uri": "x"}, "unexpected keyword argument 'train_uri'"),
        ({}, "missing a required argument: 'format'"),
    ],
)
def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(TaskError, match=message):
        get_task("jsonl", **options)


def test_answer_regex_scores_on_re2_so_a_looping_output_cannot_backtrack() -> None:
    task = JsonlTask("prompt-completion", metric="regex-match", answer_regex="(a+)+$")
    assert task.answer_regex is not None and type(task.answer_regex).__module__.startswith("re2")
    looping = "a" * 20_000 + "b"  # exponential for a backtracking engine, one pass for RE2
    assert task.extract_answer(looping) is None  # no match: the text ends in 'b'
    assert task.extract_answer("answer: aaa") == "aaa"
