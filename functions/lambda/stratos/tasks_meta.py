"""What the Lambdas need to know about the tasks, without the tasks: names, metrics and complexity priors.

The task implementations (data, prompts, scoring, verifiers) live in the training container
(``stratos_train.tasks``) and import the ``mahjong`` package; the Lambdas plan and validate with the facts
below only. A unit test keeps the two in step (names, metric, verifier/generator flags) and re-measures the
complexity priors.

Complexity is counted in each task's own unit (arrangements, reasoning steps), so priors compare runs of
one task, not tasks with each other; ``None`` means unknown until the data is seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stratos.spec import BuiltinDatasetData, DataSection, GeneratorData, Metric, TaskKind

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


def task_name(data: DataSection) -> str:
    """The task a spec's ``data`` section selects: the generator or dataset name, or ``jsonl``."""
    if isinstance(data, GeneratorData):
        return data.generator
    if isinstance(data, BuiltinDatasetData):
        return data.name
    return "jsonl"


def task_meta(name: str) -> TaskMeta:
    """The :class:`TaskMeta` of ``name``.

    Raises:
        KeyError: no such task (the message lists the known ones).
    """
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r} (known: {', '.join(TASK_NAMES)})") from None
