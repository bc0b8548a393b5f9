"""Exhaustive reference selection: every candidate checked, scored and compared one by one.

The check on :func:`stratos.planner.selection.select`: same factor tables, same constraint order, same score
formula and tie-break, but no factorisation, no Pareto pruning, no counting tricks, and the full Pareto
frontier by pairwise comparison. O(candidates) time (O(feasible^2) with ``frontier=True``): for tests and the
benchmark's optimality check, never for Lambdas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stratos.planner.selection import (
    BELOW_MIN_ACCURACY,
    BUDGET,
    LATENCY,
    SERVING_NOT_ALLOWED,
    SERVING_UNAVAILABLE,
    TRAINING_NOT_ALLOWED,
    TRAINING_TIME,
    TRAINING_UNAVAILABLE,
    Best,
    Limits,
    PlanningProblem,
    Weights,
    max_runtime_seconds,
)


@dataclass(frozen=True)
class ReferenceCandidate:
    """A feasible candidate with its objectives and score."""

    teacher: str
    student: str
    mode: str
    training_instance: str
    serving_instance: str
    expected_accuracy: float
    p50_latency_ms: float
    training_hours: float
    total_cost_usd: float
    score: float
    max_runtime_seconds: int

    def ids(self) -> tuple[str, str, str, str, str]:
        return (self.teacher, self.student, self.mode, self.training_instance, self.serving_instance)

    def objectives(self) -> tuple[float, float, float, float]:
        return (self.expected_accuracy, self.p50_latency_ms, self.training_hours, self.total_cost_usd)


@dataclass(frozen=True)
class ReferenceResult:
    """What the exhaustive selection finds."""

    chosen: ReferenceCandidate | None
    baselines: dict[str, ReferenceCandidate]
    rejected: dict[str, int]
    feasible: int
    best: Best | None
    frontier: list[ReferenceCandidate] | None


def _reason(problem: PlanningProblem, limits: Limits, k: int, t: int, s: int) -> str | None:
    pm = problem.pair_modes[k]
    if pm.reason is not None:
        return pm.reason
    if pm.accuracy < limits.min_accuracy:
        return BELOW_MIN_ACCURACY
    hours, tc, _, t_idx, t_reason = problem.training[k][t]
    if limits.allowed is not None and t_idx not in limits.allowed:
        return TRAINING_NOT_ALLOWED
    if t_idx in limits.unavailable:
        return TRAINING_UNAVAILABLE
    if t_reason is not None:
        return t_reason
    if hours > limits.max_training_hours:
        return TRAINING_TIME
    p50, sc, _, s_idx, s_reason = problem.serving[pm.student_index][s]
    if limits.allowed is not None and s_idx not in limits.allowed:
        return SERVING_NOT_ALLOWED
    if s_idx in limits.unavailable:
        return SERVING_UNAVAILABLE
    if s_reason is not None:
        return s_reason
    if p50 > limits.p50_ms:
        return LATENCY
    if tc + sc > limits.budget_usd:
        return BUDGET
    return None


def reference_select(
    problem: PlanningProblem, limits: Limits, weights: Weights, *, frontier: bool = False
) -> ReferenceResult:
    """Select by brute force (see the module docstring); ``frontier=True`` also computes the full frontier."""
    n = len(problem.instance_types)
    rejected: dict[str, int] = {}
    rows: list[tuple[Any, ...]] = []
    for k, pm in enumerate(problem.pair_modes):
        for t in range(n):
            for s in range(n):
                why = _reason(problem, limits, k, t, s)
                if why is not None:
                    rejected[why] = rejected.get(why, 0) + 1
                    continue
                hours, tc, rate, t_idx, _ = problem.training[k][t]
                p50, sc, _, s_idx, _ = problem.serving[pm.student_index][s]
                rows.append((pm, t_idx, s_idx, pm.accuracy, p50, hours, tc + sc, tc, sc, rate))
    if not rows:
        return ReferenceResult(None, {}, rejected, 0, None, [] if frontier else None)
    best = Best(
        accuracy=max(r[3] for r in rows),
        p50_latency_ms=min(r[4] for r in rows),
        training_hours=min(r[5] for r in rows),
        total_cost_usd=min(r[6] for r in rows),
    )
    cands = []
    for pm, t_idx, s_idx, acc, p50, hours, total, _tc, sc, rate in rows:
        acc_term = weights.accuracy * acc / best.accuracy if best.accuracy > 0 else weights.accuracy
        score = (
            acc_term
            + weights.training_time * best.training_hours / hours
            + weights.latency * best.p50_latency_ms / p50
            + weights.cost * best.total_cost_usd / total
        )
        cands.append(
            ReferenceCandidate(
                teacher=pm.teacher,
                student=pm.student,
                mode=pm.mode,
                training_instance=problem.instance_types[t_idx],
                serving_instance=problem.instance_types[s_idx],
                expected_accuracy=acc,
                p50_latency_ms=p50,
                training_hours=hours,
                total_cost_usd=total,
                score=score,
                max_runtime_seconds=max_runtime_seconds(limits.budget_usd, sc, rate, limits.max_training_hours),
            )
        )

    def score_key(c: ReferenceCandidate) -> tuple[Any, ...]:
        return (-c.score, c.total_cost_usd, c.p50_latency_ms, c.training_hours, -c.expected_accuracy, *c.ids())

    chosen = min(cands, key=score_key)
    baselines = {
        "accuracy_first": min(
            cands, key=lambda c: (-c.expected_accuracy, c.total_cost_usd, c.p50_latency_ms, c.training_hours, *c.ids())
        ),
        "cost_first": min(
            cands, key=lambda c: (c.total_cost_usd, -c.expected_accuracy, c.p50_latency_ms, c.training_hours, *c.ids())
        ),
        "latency_first": min(
            cands, key=lambda c: (c.p50_latency_ms, c.total_cost_usd, -c.expected_accuracy, c.training_hours, *c.ids())
        ),
    }
    front: list[ReferenceCandidate] | None = None
    if frontier:
        front = sorted((c for c in cands if not any(_dominates(o, c) for o in cands)), key=score_key)
    return ReferenceResult(chosen, baselines, rejected, len(cands), best, front)


def _dominates(a: ReferenceCandidate, b: ReferenceCandidate) -> bool:
    """``a`` is at least as good as ``b`` on every objective and better on one."""
    no_worse = (
        a.expected_accuracy >= b.expected_accuracy
        and a.p50_latency_ms <= b.p50_latency_ms
        and a.training_hours <= b.training_hours
        and a.total_cost_usd <= b.total_cost_usd
    )
    return no_worse and a.objectives() != b.objectives()
