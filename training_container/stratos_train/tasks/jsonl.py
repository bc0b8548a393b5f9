"""The user's own data: JSONL files of chat or prompt/completion records (README "Tasks" has the formats).

* ``chat``: ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}``; at least one user
  message; the last message is the assistant's reference answer, the ones before it are the prompt.
* ``prompt-completion``: ``{"prompt": str, "completion": str}``; the completion is the reference answer.

Blank lines are skipped; any other malformed line fails the load with ``file:line: reason`` (up to ten
listed). The reference answer is trained on as it stands (``target``); ``reasoning`` is empty.

Scoring by the spec's metric, applied alike to the completion and the reference:

* ``exact-match``: the text after the last ``Answer:`` marker if there is one, else the whole text;
  normalised (:func:`~stratos_train.tasks.scoring.normalise_text`) and compared.
* ``regex-match``: ``answer_regex``'s last match (group 1 if the regex has a group, else the whole match),
  normalised. A reference the regex does not match is used whole.
* ``numeric-match``: the final number (GSM8K's rules). ``set-match``: the answer's items (split on commas,
  semicolons, newlines, "and") compared as sets, F1 as partial credit.

No verifier: the task cannot tell a right answer from a wrong one except by the reference, so Knowledge
Injection keeps teacher answers that score correct against it. Complexity: non-empty lines of the reference.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import re2

from stratos_contract.tasks import TASKS, Metric, RecordFormat
from stratos_train.tasks.base import (
    Answer,
    Example,
    Message,
    NoVerifierError,
    Score,
    Split,
    TaskBase,
    TaskDataError,
    Verdict,
    sample_indices,
)
from stratos_train.tasks.scoring import (
    answer_segment,
    extract_number,
    format_number,
    normalise_text,
    set_f1,
    split_items,
)

NAME = "jsonl"
ROLES = ("system", "user", "assistant")
#: Malformed lines listed in one error before "and N more".
MAX_LISTED_ERRORS = 10


class JsonlTask(TaskBase):
    """User JSONL data (module docstring has the formats and scoring).

    Args:
        format: ``chat`` or ``prompt-completion``.
        train, eval: local paths of the train and eval files (a split without a path cannot be loaded).
        metric: ``exact-match`` (default), ``regex-match``, ``numeric-match`` or ``set-match``.
        answer_regex: required by, and only allowed with, ``regex-match``.

    Raises:
        ValueError: an unknown format or metric, a regex that does not compile, or ``answer_regex`` given
            without ``regex-match`` (or missing with it).
    """

    name = NAME
    # The task's facts are the contract's (stratos_contract.tasks); the metric is the spec's (an argument).
    has_verifier = TASKS[NAME].has_verifier
    has_generator = TASKS[NAME].has_generator
    complexity_unit = TASKS[NAME].complexity_unit

    def __init__(
        self,
        format: str | RecordFormat,
        train: str | Path | None = None,
        eval: str | Path | None = None,
        metric: str | Metric = Metric.EXACT_MATCH,
        answer_regex: str | None = None,
    ) -> None:
        try:
            self.format = RecordFormat(format)
        except ValueError as exc:
            raise ValueError(f"format must be one of {[f.value for f in RecordFormat]}, got {format!r}") from exc
        try:
            self.metric = Metric(metric)
        except ValueError as exc:
            raise ValueError(f"metric must be one of {[m.value for m in Metric]}, got {metric!r}") from exc
        if (self.metric is Metric.REGEX_MATCH) != (answer_regex is not None):
            raise ValueError("answer_regex is required by, and only allowed with, metric 'regex-match'")
        # RE2 (linear time), the engine the spec's validator checked the pattern with: a looping model's output
        # cannot make a user's pattern backtrack for the rest of the job.
        self.answer_regex: re2._Regexp[str] | None = None
        if answer_regex is not None:
            options = re2.Options()
            options.log_errors = False
            try:
                self.answer_regex = re2.compile(answer_regex, options=options)
            except re2.error as exc:
                raise ValueError(f"answer_regex does not compile under RE2: {exc}") from exc
            if self.answer_regex.search("") is not None:
                raise ValueError("answer_regex matches the empty string: every completion would score as correct")
        self.paths: dict[str, Path | None] = {
            "train": Path(train) if train is not None else None,
            "eval": Path(eval) if eval is not None else None,
        }

    # ----------------------------------------------------------------------------------------------------
    # Loading

    def examples(self, split: Split, n: int | None = None, seed: int = 0) -> list[Example]:
        """The records of ``split``'s file (all, or a seeded subsample of ``n``) in file order.

        Raises:
            TaskDataError: no path for the split, a missing or unreadable file, or malformed lines.
        """
        path = self.paths[split]
        if path is None:
            option = "--train" if split == "train" else "--eval"
            raise TaskDataError(f"jsonl task has no {split} file ({option} PATH)")
        if not path.is_file():
            raise TaskDataError(f"JSONL file {path} does not exist")
        try:
            lines = path.read_text(encoding="utf-8").removeprefix("\ufeff").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise TaskDataError(f"cannot read {path}: {exc}") from exc
        examples: list[Example] = []
        errors: list[str] = []
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                examples.append(self._parse(path, lineno, line))
            except ValueError as exc:
                errors.append(f"{path}:{lineno}: {exc}")
        if errors:
            more = f" (and {len(errors) - MAX_LISTED_ERRORS} more)" if len(errors) > MAX_LISTED_ERRORS else ""
            listed = "; ".join(errors[:MAX_LISTED_ERRORS])
            raise TaskDataError(f"{len(errors)} malformed {self.format.value} record(s): {listed}{more}")
        if not examples:
            raise TaskDataError(f"JSONL file {path} holds no records")
        return [examples[i] for i in sample_indices(len(examples), n, seed)]

    def _parse(self, path: Path, lineno: int, line: str) -> Example:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc.msg} at column {exc.colno}") from exc
        if not isinstance(record, dict):
            raise ValueError("a record must be a JSON object")
        problem: dict[str, Any]
        if self.format is RecordFormat.CHAT:
            messages = _check_messages(record)
            problem, answer = {"messages": messages[:-1]}, messages[-1]["content"]
        else:
            unknown = sorted(set(record) - {"prompt", "completion"})
            if unknown:
                raise ValueError(
                    f"unknown field(s) {unknown}; a prompt-completion record has 'prompt' and 'completion'"
                )
            prompt, completion = record.get("prompt"), record.get("completion")
            if not isinstance(prompt, str) or not prompt.strip():
                raise ValueError("'prompt' must be a non-empty string")
            if not isinstance(completion, str) or not completion.strip():
                raise ValueError("'completion' must be a non-empty string")
            problem, answer = {"prompt": prompt}, completion
        return Example(id=f"{path.name}:{lineno}", problem=problem, answer=answer.strip(), meta={"line": lineno})

    # ----------------------------------------------------------------------------------------------------
    # Prompting

    def _turns(self, example: Example) -> tuple[list[Message], list[Message]]:
        """(system messages, other prompt messages) of an example."""
        if "messages" in example.problem:
            messages: list[Message] = [dict(m) for m in example.problem["messages"]]
        else:
            messages = [{"role": "user", "content": str(example.problem["prompt"])}]
        return [m for m in messages if m["role"] == "system"], [m for m in messages if m["role"] != "system"]

    def _question(self, example: Example) -> list[Message]:
        return self._turns(example)[1]

    def prompt(self, example: Example, few_shot: Sequence[Example] = ()) -> list[Message]:
        """The record's own messages; few-shot pairs go after its system message(s), before its question."""
        system, _ = self._turns(example)
        messages = list(system)
        for shot in few_shot:
            if shot.id == example.id:
                raise ValueError(f"few-shot example {shot.id} is the example being asked")
            messages.extend(self._question(shot))
            messages.append({"role": "assistant", "content": self.target(shot)})
        messages.extend(self._question(example))
        return messages

    def target(self, example: Example) -> str:
        return str(example.answer)

    # ----------------------------------------------------------------------------------------------------
    # Scoring

    def extract_answer(self, completion: str) -> Answer | None:
        """The answer by the metric's rule (module docstring); None when the completion gives none."""
        if self.metric is Metric.NUMERIC_MATCH:
            value = extract_number(completion)
            return None if value is None else format_number(value)
        if self.metric is Metric.REGEX_MATCH:
            return self._regex_answer(completion)
        segment = answer_segment(completion)
        text = segment if segment is not None else completion
        if self.metric is Metric.SET_MATCH:
            return split_items(text)
        normalised = normalise_text(text)
        return normalised or None

    def _regex_answer(self, text: str) -> str | None:
        assert self.answer_regex is not None  # guaranteed by __init__ for regex-match
        last = None
        for match in self.answer_regex.finditer(text):
            last = match
        if last is None:
            return None
        found = last.group(1) if self.answer_regex.groups else last.group(0)
        return normalise_text(found or "")

    def reference_answer(self, example: Example) -> Answer:
        """The reference in the metric's canonical form (a regex that misses the reference: all of it)."""
        extracted = self.extract_answer(str(example.answer))
        if extracted is None:
            return normalise_text(str(example.answer))
        return extracted

    def score(self, example: Example, completion: str) -> Score:
        predicted = self.extract_answer(completion)
        reference = self.reference_answer(example)
        if predicted is None:
            return Score(correct=False, credit=0.0, predicted=None)
        if self.metric is Metric.SET_MATCH:
            pred_items, ref_items = _items(predicted), _items(reference)
            return Score(
                correct=set(pred_items) == set(ref_items), credit=set_f1(pred_items, ref_items), predicted=predicted
            )
        correct = predicted == reference
        return Score(correct=correct, credit=float(correct), predicted=predicted)

    def verify(self, example: Example, answer: Answer, reasoning: str | None = None) -> Verdict:
        """Always raises: user JSONL has no verifier; keep answers whose :meth:`score` is correct instead.

        Raises:
            NoVerifierError: always.
        """
        raise NoVerifierError("the jsonl task has no verifier: keep teacher answers that score correct")

    def complexity(self, example: Example) -> float:
        return float(max(1, sum(1 for line in str(example.answer).splitlines() if line.strip())))


def _items(answer: Answer) -> tuple[str, ...]:
    return answer if isinstance(answer, tuple) else split_items(answer)


def _check_messages(record: dict[str, Any]) -> list[Message]:
    unknown = sorted(set(record) - {"messages"})
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; a chat record has 'messages'")
    messages = record.get("messages")
    if not isinstance(messages, list) or len(messages) < 2:
        raise ValueError("'messages' must be a list of at least a user and an assistant message")
    out: list[Message] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise ValueError(f"messages[{i}] must be an object with exactly 'role' and 'content'")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise ValueError(f"messages[{i}].role must be one of {list(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}].content must be a string")
        out.append({"role": role, "content": content})
    if out[-1]["role"] != "assistant" or not out[-1]["content"].strip():
        raise ValueError("the last message must be the assistant's non-empty reference answer")
    if not any(m["role"] == "user" for m in out[:-1]):
        raise ValueError("the prompt needs at least one user message")
    return out
