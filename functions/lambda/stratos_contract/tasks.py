"""The task facts both sides agree on: task families, metrics, record formats, distillation modes, and what
each built-in task is (its data source, metric, verifier, complexity unit and prior).

The Lambdas plan and validate with these facts; the training container's task implementations
(``stratos_train.tasks``) take their metric, flags and complexity unit from here, so the two cannot drift.
Complexity is counted in each task's own unit (arrangements, reasoning steps), so priors compare runs of one
task, not tasks with each other; ``None`` means unknown until the data is seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class TaskKind(StrEnum):
    """Family of the task; the planner keys its prior accuracy per model on it."""

    MATH_WORD_PROBLEMS = "math-word-problems"
    """Grade-school arithmetic word problems with a numeric answer (GSM8K-like)."""
    SYMBOLIC_REASONING = "symbolic-reasoning"
    """Rule-based puzzles in a narrow domain (e.g. Mahjong winning tiles): rare in pre-training data."""
    CLASSIFICATION = "classification"
    """Pick one label from a closed set."""
    EXTRACTION = "extraction"
    """Copy or normalise a span of the input (entities, fields)."""
    OPEN_QA = "open-qa"
    """Short factual answers in free text."""


class Metric(StrEnum):
    """How a completion is scored against the reference answer (1.0 = correct, 0.0 = wrong)."""

    EXACT_MATCH = "exact-match"
    """Normalised string equality (whitespace collapsed, case-folded)."""
    SET_MATCH = "set-match"
    """The answer is a set of items; exact set equality scores 1, F1 is reported as partial credit."""
    NUMERIC_MATCH = "numeric-match"
    """The final number in the completion equals the reference (commas, currency and units stripped)."""
    REGEX_MATCH = "regex-match"
    """``task.answer_regex`` extracts the answer (group 1, else the whole match), then exact match."""


class DistillationMode(StrEnum):
    """Which distillation the training job runs."""

    AUTO = "auto"
    """Probe the teacher on the eval set and choose by coverage and task complexity."""
    ALIGNMENT = "alignment"
    """Knowledge Alignment: token-level KD on the teacher's logits (needs a shared tokenizer)."""
    INJECTION = "injection"
    """Knowledge Injection: fine-tune on verified, reverse-synthesised (prompt, reasoning, answer) data."""


class RecordFormat(StrEnum):
    """Record format of user JSONL files (one JSON object per line)."""

    CHAT = "chat"
    """``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}``; the last message
    is the assistant's reference answer."""
    PROMPT_COMPLETION = "prompt-completion"
    """``{"prompt": str, "completion": str}``; the completion is the reference answer."""


DataSource = Literal["generator", "builtin", "jsonl"]


@dataclass(frozen=True)
class TaskMeta:
    """Planner-facing facts about one task.

    Attributes:
        name: registry name, as in the spec (``data.generator``, ``data.name``) or ``jsonl``.
        source: the spec's ``data.source`` that selects it.
        kind: the task family the planner keys its priors on; None for user data (the spec says).
        metric: the metric the spec must use; None when the spec chooses (user data).
        has_verifier: answers can be checked beyond equality with a reference (Knowledge Injection can keep
            only verified teacher outputs).
        has_generator: examples are synthesised, so training data is unlimited.
        complexity_unit: what the complexity measure counts.
        complexity_prior: mean complexity of an example in ``complexity_unit``; None when unknown.
        prior_source: how ``complexity_prior`` was measured.
    """

    name: str
    source: DataSource
    kind: TaskKind | None
    metric: Metric | None
    has_verifier: bool
    has_generator: bool
    complexity_unit: str
    complexity_prior: float | None
    prior_source: str

    def required_metric(self) -> Metric:
        """The metric this task always uses.

        Raises:
            ValueError: the task leaves the metric to the spec (user data).
        """
        if self.metric is None:
            raise ValueError(f"task {self.name!r} takes its metric from the spec")
        return self.metric


TASKS: dict[str, TaskMeta] = {
    meta.name: meta
    for meta in (
        TaskMeta(
            name="mahjong-winning-tiles",
            source="generator",
            kind=TaskKind.SYMBOLIC_REASONING,
            metric=Metric.SET_MATCH,
            has_verifier=True,
            has_generator=True,
            complexity_unit="complete arrangements over all winning tiles",
            complexity_prior=2.86,
            prior_source="mean over 10,000 generated train examples, seed 0 (benchmarks/tasks_bench.py)",
        ),
        TaskMeta(
            name="gsm8k",
            source="builtin",
            kind=TaskKind.MATH_WORD_PROBLEMS,
            metric=Metric.NUMERIC_MATCH,
            has_verifier=True,
            has_generator=False,
            complexity_unit="reasoning steps (non-empty rationale lines)",
            complexity_prior=3.58,
            prior_source="mean over the 7,473 official train rationales",
        ),
        TaskMeta(
            name="jsonl",
            source="jsonl",
            kind=None,
            metric=None,
            has_verifier=False,
            has_generator=False,
            complexity_unit="non-empty lines of the reference answer",
            complexity_prior=None,
            prior_source="unknown until the user's data is read",
        ),
    )
}

TASK_NAMES: tuple[str, ...] = tuple(TASKS)


def task_meta(name: str) -> TaskMeta:
    """The :class:`TaskMeta` of ``name``.

    Raises:
        KeyError: no such task (the message lists the known ones).
    """
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r} (known: {', '.join(TASK_NAMES)})") from None
