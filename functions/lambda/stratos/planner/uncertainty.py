"""Uncertainty-aware choice: every estimate carries a band; plans whose scores differ by less than the band of
that difference are ties, broken by the lower hourly price, then the fewer accelerators.

**Bands** (:mod:`stratos.planner.calibration`): expected accuracy +- an absolute fraction, training hours and p50
latency +- a relative fraction; from the calibration residuals where past runs of the same key exist, else the
stated defaults (0.10, 30 %, 30 %). Each plan carries them as :class:`~stratos.planner.selection.Band`
(uncalibrated figure, half-width in the figure's unit, runs).

**Score band** of two plans ``p`` and ``q``: first-order propagation of each band through the deployment score
(:mod:`stratos.planner.selection`), ``x`` in {p, q}::

    sigma_acc(x)   = w_acc x band_acc(x) / acc*
    sigma_train(x) = (w_time x time*/time(x) + w_cost x cost*/cost(x) x train_cost(x)/cost(x)) x band_hours(x)
    sigma_lat(x)   = w_lat x lat*/lat(x) x band_p50(x)                          (band_hours, band_p50 relative)
    band(p, q)     = sqrt(sum of sigma^2 over both plans and over the estimates they do NOT share)

(``d term / d ln value = -term``; the training time moves the training cost with it, hence the cost term's
share.) An estimate two plans share — the same teacher, student and mode share the accuracy estimate; the same
training option its hours; the same student on the same serving instance its p50 — errs the same way for both
and cannot reorder them; the other errors are taken as independent (root-sum-square).

**Rule.** ``T`` = the max-score plan ``p`` and every returned frontier plan ``q`` with
``score(p) - score(q) <= band(p, q)``. The chosen plan is the one in ``T`` with the lowest hourly price (training
job USD/hour + serving USD/hour x instances), then the fewest accelerators (training nodes x accelerators per
node + serving accelerators x instances), then score order. Only frontier plans take part, so the chosen plan
stays Pareto-optimal; the rest of the frontier keeps its score order behind it (the quota fallback order).

This is what keeps a 4-GPU training instance at 6.8x the cost from winning over a 1-GPU one by a 5 % shorter
estimated time (``make demo``'s plan before this rule): the difference is far inside the training-time band.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from stratos.planner.calibration import NO_CALIBRATION, Calibration
from stratos.planner.selection import Band, Best, Plan, PlanningProblem, Selection, TieBreak, Weights

AccuracyIds = tuple[str, str, str]
"""(teacher, student, mode)."""


@dataclass(frozen=True)
class Uncertainty:
    """Each estimate's band and calibration, for the plans of one problem.

    Attributes:
        task_kind: the spec's task kind (the calibration key).
        calibration: what past runs taught (:func:`stratos.planner.calibration.calibrate`).
        uncalibrated_accuracy: the estimators' expected accuracy per (teacher, student, mode), before
            calibration (the calibrated one may be clipped at 0 or 1, so it cannot be undone).
    """

    task_kind: str = ""
    calibration: Calibration = NO_CALIBRATION
    uncalibrated_accuracy: Mapping[AccuracyIds, float] = field(default_factory=dict)

    def accuracy_band(self, plan: Plan) -> Band:
        """The band of ``plan.expected_accuracy`` (fraction)."""
        c = self.calibration.for_accuracy(self.task_kind, plan.student, plan.mode)
        raw = self.uncalibrated_accuracy.get((plan.teacher, plan.student, plan.mode), plan.expected_accuracy)
        return Band(raw, c.band_of(plan.expected_accuracy), c.runs)

    def training_hours_band(self, plan: Plan) -> Band:
        """The band of ``plan.training_hours`` (hours)."""
        c = self.calibration.for_training(self.task_kind, plan.student, plan.mode, plan.training_instance)
        return Band(plan.training_hours / c.factor, c.band_of(plan.training_hours), c.runs)

    def p50_latency_band(self, plan: Plan) -> Band:
        """The band of ``plan.p50_latency_ms`` (ms)."""
        c = self.calibration.for_latency(plan.student, plan.serving_instance)
        return Band(plan.p50_latency_ms / c.factor, c.band_of(plan.p50_latency_ms), c.runs)

    def annotate(self, plan: Plan) -> Plan:
        """``plan`` with its three bands."""
        return replace(
            plan,
            accuracy_band=self.accuracy_band(plan),
            training_hours_band=self.training_hours_band(plan),
            p50_latency_band=self.p50_latency_band(plan),
        )


def _sigmas(plan: Plan, best: Best, weights: Weights) -> tuple[float, float, float]:
    """``(sigma_acc, sigma_train, sigma_lat)`` of ``plan``'s score (module docstring); bands must be set."""
    assert plan.accuracy_band and plan.training_hours_band and plan.p50_latency_band
    acc = weights.accuracy * plan.accuracy_band.band / best.accuracy if best.accuracy > 0 else 0.0
    hours_rel = plan.training_hours_band.band / plan.training_hours if plan.training_hours > 0 else 0.0
    time_term = weights.training_time * best.training_hours / plan.training_hours if plan.training_hours > 0 else 0.0
    total = plan.total_cost_usd
    cost_share = weights.cost * best.total_cost_usd / total * plan.training_cost_usd / total if total > 0 else 0.0
    lat_rel = plan.p50_latency_band.band / plan.p50_latency_ms if plan.p50_latency_ms > 0 else 0.0
    lat_term = weights.latency * best.p50_latency_ms / plan.p50_latency_ms if plan.p50_latency_ms > 0 else 0.0
    return acc, (time_term + cost_share) * hours_rel, lat_term * lat_rel


def score_band(p: Plan, q: Plan, best: Best, weights: Weights) -> float:
    """The band of ``score(p) - score(q)`` (module docstring); both plans must carry their bands."""
    sp, sq = _sigmas(p, best, weights), _sigmas(q, best, weights)
    same_pair = (p.teacher, p.student, p.mode) == (q.teacher, q.student, q.mode)
    shared = (
        same_pair,
        same_pair and p.training_instance == q.training_instance,
        p.student == q.student and p.serving_instance == q.serving_instance,
    )
    return math.sqrt(sum(a * a + b * b for a, b, same in zip(sp, sq, shared, strict=True) if not same))


def hourly_price_usd(plan: Plan, serving_instances: int) -> float:
    """What the plan pays per hour while it trains and serves: the training job's USD/hour (nodes x price, after
    the spot saving) + the serving USD/hour x instances."""
    return plan.training_usd_per_hour + plan.serving_usd_per_hour * serving_instances


def accelerators(plan: Plan, per_instance: Mapping[str, int], serving_instances: int) -> int:
    """Accelerators the plan holds: training nodes x accelerators per node + serving accelerators x instances
    (0 for CPU types)."""
    nodes = plan.parallelism.nodes if plan.parallelism is not None else 1
    return (
        nodes * per_instance.get(plan.training_instance, 0)
        + per_instance.get(plan.serving_instance, 0) * serving_instances
    )


def decide(
    selection: Selection,
    problem: PlanningProblem,
    weights: Weights,
    *,
    serving_instances: int = 1,
    accelerators_per_instance: Mapping[str, int] | None = None,
) -> Selection:
    """``selection`` with every returned plan banded and the chosen plan picked by the rule of the module
    docstring (the frontier reordered: the chosen plan first, then the others in score order).

    Args:
        selection: :func:`stratos.planner.selection.select`'s result (its ``chosen`` is the max-score plan).
        problem: the tables it ran on (``problem.uncertainty`` gives the bands; default bands without one).
        weights: the deployment score's weights.
        serving_instances: the spec's ``deployment.instance_count``.
        accelerators_per_instance: instance type -> accelerators (catalog); missing types count 0.
    """
    if selection.chosen is None:
        return selection
    uncertainty = problem.uncertainty or Uncertainty()
    per_instance = accelerators_per_instance or {}
    frontier = [uncertainty.annotate(p) for p in selection.frontier]
    baselines = {name: uncertainty.annotate(p) for name, p in selection.baselines.items()}
    top = uncertainty.annotate(selection.chosen)
    best = selection.best
    if not frontier or best is None or frontier[0].ids() != top.ids():
        # No frontier (a what-if run), or one that does not start at the max-score plan: nothing to compare.
        reason = "max-score plan kept (no frontier to compare it with)"
        return replace(selection, chosen=top, frontier=frontier, baselines=baselines, tie=TieBreak(top, 1, 0.0, reason))
    tied: list[tuple[int, Plan, float]] = [(0, top, 0.0)]
    for index, q in enumerate(frontier[1:], start=1):
        band = score_band(top, q, best, weights)
        if top.score - q.score <= band:
            tied.append((index, q, band))
    index, chosen, band = min(
        tied,
        key=lambda t: (
            hourly_price_usd(t[1], serving_instances),
            accelerators(t[1], per_instance, serving_instances),
            t[0],
        ),
    )
    if index == 0:
        reason = (
            f"max-score plan kept: {len(tied) - 1} frontier plan(s) within its score band, none cheaper per hour "
            "with as few accelerators"
            if len(tied) > 1
            else "max-score plan kept: no other frontier plan within its score band"
        )
    else:
        reason = (
            f"score {chosen.score:.4f} vs the max {top.score:.4f} (difference {top.score - chosen.score:.4f} within "
            f"the band +-{band:.4f} of the estimates the two plans do not share): a tie, taken at the lower hourly "
            f"price ({hourly_price_usd(chosen, serving_instances):,.2f} vs "
            f"{hourly_price_usd(top, serving_instances):,.2f} USD/hour)"
        )
    ordered = [chosen, *(p for i, p in enumerate(frontier) if i != index)]
    return replace(
        selection,
        chosen=chosen,
        frontier=ordered,
        baselines=baselines,
        tie=TieBreak(top, len(tied), band, reason),
    )
