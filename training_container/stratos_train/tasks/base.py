"""The task interface the training container programs against.

A *task* knows four things about its domain, and nothing about models or tokenizers:

* where examples come from: :meth:`Task.examples` loads (GSM8K, user JSONL) or generates (Mahjong) a split;
* how a problem is asked: :meth:`Task.prompt` renders chat messages ``[{"role": ..., "content": ...}]``
  (the trainer applies the tokenizer's chat template), optionally after ``few_shot`` solved examples;
* what a good answer looks like: :meth:`Task.target` is the training target (reasoning, then one final
  answer line), :meth:`Task.extract_answer` reads a model's completion back, :meth:`Task.score` scores it
  (the task metric, plus partial credit) and :meth:`Task.verify` checks a candidate (answer, reasoning)
  for Knowledge Injection;
* how hard an example is: :meth:`Task.complexity`, in a unit each task documents.

Tasks never import torch or transformers: they run in the training container's data stage, in tests and in
the ``stratos data`` command alike.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from stratos_contract.errors import StratosError
from stratos_contract.tasks import Metric

#: A chat message as the tokenizer's chat template takes it: ``{"role": "system"|"user"|"assistant",
#: "content": str}``.
Message = dict[str, str]

#: Which side of the train/eval split. GSM8K's ``eval`` is its official ``test.jsonl``.
Split = Literal["train", "eval"]
SPLITS: tuple[Split, ...] = ("train", "eval")

#: A canonical answer: a string (a number, a label, free text) or a tuple of items for set-valued answers
#: (Mahjong's winning tiles, in tile order).
Answer = str | tuple[str, ...]


class TaskError(StratosError):
    """Base of the errors tasks raise on purpose (bad data, unknown task, unsupported operation).

    They never reach the state machine by name: inside the training job they become the job's
    ``output/failure`` reason (and so a ``TrainingFailedError``); the ``stratos data`` command prints them
    and exits 1.
    """


class UnknownTaskError(TaskError):
    """No task has the requested name; the message lists the known names and the closest one."""


class TaskDataError(TaskError):
    """Task data is missing or malformed; the message names the path (and line) and what is wrong."""


class NoVerifierError(TaskError):
    """The task cannot verify answers on its own (user JSONL): compare with the reference via ``score``."""


@dataclass(frozen=True)
class Example:
    """One problem with its reference solution.

    Attributes:
        id: stable identifier, unique within a split (Mahjong: ``mj-<hand>``; GSM8K: ``gsm8k-<file>-<line>``;
            JSONL: ``<file name>:<line>``).
        problem: the problem's structured fields, JSON-safe (Mahjong ``{"hand": "123m456p789s1122z"}``;
            GSM8K ``{"question": ...}``; JSONL ``{"messages": [...]}`` with the reference answer removed).
        answer: the canonical reference answer (see :data:`Answer`).
        reasoning: a reasoning trace that leads to ``answer`` (verified for Mahjong, the official rationale for
            GSM8K); empty when the data has none.
        meta: task-specific facts about the example (Mahjong: number of waits, stratum, arrangements), never
            shown to a model.
    """

    id: str
    problem: dict[str, Any]
    answer: Answer
    reasoning: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Score:
    """A completion scored against the reference.

    Attributes:
        correct: the task metric's verdict (exact set, numeric equality, normalised exact/regex match).
        credit: partial credit in 0..1 (Mahjong: F1 of the predicted vs reference tile sets); equals
            ``float(correct)`` for metrics without partial credit.
        predicted: the answer read from the completion in canonical form, or None when none was found.
    """

    correct: bool
    credit: float
    predicted: Answer | None


@dataclass(frozen=True)
class Verdict:
    """Whether a candidate (answer, reasoning) for a problem is acceptable as training data.

    Attributes:
        ok: accept it.
        reasons: why it was rejected (empty when ``ok``), one short sentence each.
        reasoning_checked: True when the reasoning itself was checked (Mahjong trace lines, GSM8K
            arithmetic), not only its final answer.
    """

    ok: bool
    reasons: tuple[str, ...] = ()
    reasoning_checked: bool = False


@runtime_checkable
class Task(Protocol):
    """What the training container needs from a task. One implementation per module of this package."""

    name: str
    """Registry name: ``mahjong-winning-tiles``, ``gsm8k``, ``jsonl``."""
    metric: Metric
    """The spec metric this task scores by."""
    has_verifier: bool
    """True when :meth:`verify` checks answers beyond string equality with a reference."""
    has_generator: bool
    """True when :meth:`examples` synthesises examples (reverse synthesis) instead of loading them."""
    complexity_unit: str
    """What :meth:`complexity` counts, in words."""

    def examples(self, split: Split, n: int | None = None, seed: int = 0) -> list[Example]:
        """``n`` examples of ``split`` (None: the task's default, for loaded data all), deterministic in
        ``seed``. Raises :class:`TaskDataError` when the data is missing or malformed."""
        ...

    def prompt(self, example: Example, few_shot: Sequence[Example] = ()) -> list[Message]:
        """Chat messages asking ``example``'s problem; each ``few_shot`` example comes first as a solved
        user/assistant pair (its :meth:`target` as the assistant turn)."""
        ...

    def target(self, example: Example) -> str:
        """The assistant turn to train on: the reasoning, then the final answer line."""
        ...

    def extract_answer(self, completion: str) -> Answer | None:
        """The answer a model's completion gives, in canonical form; None when it gives none."""
        ...

    def score(self, example: Example, completion: str) -> Score:
        """Score ``completion`` against ``example.answer``."""
        ...

    def verify(self, example: Example, answer: Answer, reasoning: str | None = None) -> Verdict:
        """Check a candidate answer (and its reasoning, when given) for ``example``'s problem.
        Raises :class:`NoVerifierError` when the task has no verifier."""
        ...

    def complexity(self, example: Example) -> float:
        """How much reasoning ``example`` takes, in :attr:`complexity_unit`."""
        ...

    def strata(self) -> tuple[str, ...]:
        """Labels of the task's strata (kinds of problem scored apart; empty when it has none)."""
        ...

    def stratum(self, example: Example) -> str | None:
        """The stratum label of ``example`` (None when the task has no strata)."""
        ...

    def stratified_examples(self, split: Split, n: int, seed: int, weights: Mapping[str, float]) -> list[Example]:
        """``n`` examples of ``split`` drawn toward the strata in proportion to ``weights`` (label -> weight),
        deterministic in ``seed``. Raises :class:`TaskError` when the task has no strata."""
        ...

    def extra_eval_sets(self, n: int, seed: int) -> dict[str, list[Example]]:
        """Further held-out sets scored beside the ``eval`` split (name -> ``n`` examples); may be empty."""
        ...


class TaskBase(ABC):
    """Shared plumbing for the concrete tasks: system message, few-shot chat assembly."""

    #: Prefix of the final answer line of a training target.
    ANSWER_PREFIX: ClassVar[str] = "Answer: "

    def _instructions(self) -> str | None:
        """The system message, or None for none."""
        return None

    @abstractmethod
    def _question(self, example: Example) -> list[Message]:
        """The user turn(s) of ``example`` (without the system message)."""

    @abstractmethod
    def target(self, example: Example) -> str:
        """The assistant turn to train on (see :meth:`Task.target`)."""

    def strata(self) -> tuple[str, ...]:
        return ()

    def stratum(self, example: Example) -> str | None:
        return None

    def stratified_examples(self, split: Split, n: int, seed: int, weights: Mapping[str, float]) -> list[Example]:
        raise TaskError(f"task {getattr(self, 'name', type(self).__name__)!r} has no strata to draw toward")

    def extra_eval_sets(self, n: int, seed: int) -> dict[str, list[Example]]:
        return {}

    def prompt(self, example: Example, few_shot: Sequence[Example] = ()) -> list[Message]:
        messages: list[Message] = []
        system = self._instructions()
        if system:
            messages.append({"role": "system", "content": system})
        for shot in few_shot:
            if shot.id == example.id:
                raise ValueError(f"few-shot example {shot.id} is the example being asked")
            messages.extend(self._question(shot))
            messages.append({"role": "assistant", "content": self.target(shot)})
        messages.extend(self._question(example))
        return messages


def pick_few_shot(pool: Sequence[Example], k: int, seed: int, exclude: Sequence[str] = ()) -> list[Example]:
    """``k`` examples drawn without replacement from ``pool`` (seeded), skipping the ids in ``exclude``.

    Raises:
        ValueError: ``k`` is negative or the pool has fewer than ``k`` usable examples.
    """
    if k < 0:
        raise ValueError(f"few-shot count must be >= 0, got {k}")
    banned = set(exclude)
    usable = [ex for ex in pool if ex.id not in banned]
    if len(usable) < k:
        raise ValueError(f"need {k} few-shot examples, the pool has {len(usable)}")
    return random.Random(seed).sample(usable, k)


def largest_remainder(n: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Split ``n`` items over labels in proportion to ``weights`` (>= 0), rounding by largest remainder (ties:
    label order), so the counts sum to ``n`` exactly: ``(10, {"a": 1, "b": 1, "c": 1})`` -> 4, 3, 3.

    Raises:
        ValueError: a negative weight, or no positive weight.
    """
    if any(w < 0 for w in weights.values()) or not sum(weights.values()) > 0:
        raise ValueError(f"weights must be >= 0 with a positive sum, got {dict(weights)}")
    total = sum(weights.values())
    exact = {label: n * w / total for label, w in weights.items()}
    counts = {label: int(v) for label, v in exact.items()}
    order = sorted(exact, key=lambda label: exact[label] - counts[label], reverse=True)
    for label in order[: n - sum(counts.values())]:
        counts[label] += 1
    return counts


def sample_indices(total: int, n: int | None, seed: int) -> list[int]:
    """Indices of a seeded subsample of ``n`` out of ``total`` items, in their original order.

    The same seed gives nested samples: the ``n=10`` sample is contained in the ``n=20`` one. ``None`` (or
    ``n >= total``) keeps everything.

    Raises:
        ValueError: ``n`` < 1.
    """
    if n is None or n >= total:
        return list(range(total))
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    order = list(range(total))
    random.Random(seed).shuffle(order)
    return sorted(order[:n])


def example_record(task: Task, example: Example, split: Split, few_shot: Sequence[Example] = ()) -> dict[str, Any]:
    """The JSON record ``stratos data`` writes for one example.

    Fields: ``id``, ``task``, ``split``, ``problem`` (structured), ``prompt`` (chat messages), ``reasoning``,
    ``answer`` (canonical; a list for set answers), ``target`` (the assistant turn trained on),
    ``complexity`` (in ``complexity_unit``) and ``meta``.
    """
    answer: Any = list(example.answer) if isinstance(example.answer, tuple) else example.answer
    return {
        "id": example.id,
        "task": task.name,
        "split": split,
        "problem": example.problem,
        "prompt": task.prompt(example, few_shot),
        "reasoning": example.reasoning,
        "answer": answer,
        "target": task.target(example),
        "complexity": task.complexity(example),
        "complexity_unit": task.complexity_unit,
        "meta": example.meta,
    }
