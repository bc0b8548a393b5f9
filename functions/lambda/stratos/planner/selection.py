"""Selection: feasibility filter, Pareto frontier, deployment score, single-objective baselines.

A *candidate* is ``(teacher, student, mode, training instance, serving instance)``. Its four objectives are
the expected accuracy (up), the p50 latency (down), the training hours (down) and the total cost = training
+ serving (down). The estimates come precomputed per factor (:class:`PlanningProblem`): accuracy per pair
mode, training hours/cost per (pair mode, instance), p50 latency/serving cost per (student, instance).

**Feasibility** (hard constraints), checked in this order; a candidate is counted once, under the first
check it fails: pair rules (same model, capacity ratio, tokenizer) → ``below-min-accuracy`` → training
instance (not allowed by families/allow-list, unavailable, price unknown, no managed spot figure under
``constraints.spot: on``, does not fit, ``training-time`` over ``max_training_hours``) → serving instance (not
allowed, unavailable, price unknown, context too long, does not fit, ``latency`` over ``p50_ms``) → ``budget``
(training + serving cost over ``budget_usd``).

**Deployment score** of a feasible plan ``p`` (our own formula; the paper's is not public)::

    score(p) = w_acc  * acc(p) / acc*
             + w_time * time* / time(p)
             + w_lat  * lat*  / lat(p)
             + w_cost * cost* / cost(p)

where ``*`` is the best value of that objective over the whole feasible set (highest accuracy, lowest p50
latency, training hours, total cost) and the weights are the spec's ``objective`` (normalised to sum 1). Each
term is the plan's value relative to the best achievable (1 = best), so the score lies in (0, 1] and equals 1
only for a plan best on every weighted objective. Ratios to the best (not min–max) keep the ranking
independent of how bad the worst candidate is: adding a dominated candidate never changes the choice. The
score increases in every objective, so the plan that maximises it is Pareto-optimal. Ties are broken by
lower total cost, lower p50, fewer training hours, higher accuracy, then the ids (deterministic).

**Baselines**, from the same feasible set and scored with the same formula: ``accuracy_first`` (highest
accuracy; ties by cost), ``cost_first`` (lowest total cost; ties by accuracy), ``latency_first`` (lowest p50;
ties by cost).

**Speed.** The candidate space is a product, and the objectives split over its factors: a training option
that is slower *and* dearer than another for the same pair mode (or a serving option with higher p50 *and*
cost for the same student) gives a plan Pareto-dominated by the same plan with the better option, which is
also feasible. So the planner keeps, per pair mode, the 2-D Pareto set of training options and, per student,
that of serving options (sort + sweep), and pairs only those; rejection counts for all candidates are exact
by counting (``bisect`` over sorted serving costs for the budget). The best values of each objective over the
feasible set are attained inside the reduced set, so scores are exact. The frontier is extracted by
sort-filter-skyline (Chomicki et al. 2003): candidates in score order, each checked against the frontier
found so far (a dominator always scores at least as high); it stops after ``frontier_max`` plans.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stratos.planner.estimators import Mode, SpotEstimate
from stratos_contract.parallelism import ParallelismPlan

if TYPE_CHECKING:
    from stratos.planner.uncertainty import Uncertainty

#: SageMaker's ceiling on MaxRuntimeInSeconds: 28 days.
SAGEMAKER_MAX_RUNTIME_SECONDS = 28 * 24 * 3600
#: Frontier plans the selection returns (best by score); the frontier itself may be larger.
FRONTIER_MAX = 200

# Rejection reasons (keys of ``Selection.rejected``).
BELOW_MIN_ACCURACY = "below-min-accuracy"
TRAINING_NOT_ALLOWED = "training-instance-not-allowed"
TRAINING_UNAVAILABLE = "training-instance-unavailable"
TRAINING_PRICE_UNKNOWN = "training-price-unknown"
TRAINING_MEMORY = "training-memory"
TRAINING_NO_SPOT = "training-no-spot-figure"
TRAINING_TIME = "training-time"
SERVING_NOT_ALLOWED = "serving-instance-not-allowed"
SERVING_UNAVAILABLE = "serving-instance-unavailable"
SERVING_PRICE_UNKNOWN = "serving-price-unknown"
SERVING_CONTEXT = "serving-context-too-long"
SERVING_MEMORY = "serving-memory"
LATENCY = "latency"
BUDGET = "budget"

#: Training option: ``(hours, cost_usd, usd_per_hour, instance_index, reason | None)``.
TrainOption = tuple[float, float, float, int, str | None]
#: Serving option: ``(p50_ms, cost_usd, usd_per_hour, instance_index, reason | None)``.
ServeOption = tuple[float, float, float, int, str | None]


@dataclass(frozen=True, slots=True)
class PairMode:
    """A (teacher, student, mode) with its expected accuracy, or the pair rule that rejects it.

    Attributes:
        teacher, student: model ids.
        mode: alignment or injection.
        accuracy: expected accuracy after distillation, 0..1.
        student_index: index of the student's serving options in :attr:`PlanningProblem.serving`.
        reason: rejection reason key (``same-model``, ``capacity-ratio``, ``tokenizer-mismatch``,
            ``text-only-teacher``) or ``None``.
        teacher_tokens, teacher_tokens_usd: an external teacher's expected tokens (input + output, count) and their
            price (USD, already in every training option's cost); 0 for a teacher the job loads.
        teacher_usd_per_1k: an external teacher's (input, output) price per 1,000 tokens, USD, that priced them;
            None for a teacher the job loads.
    """

    teacher: str
    student: str
    mode: Mode
    accuracy: float
    student_index: int
    reason: str | None = None
    teacher_tokens: float = 0.0
    teacher_tokens_usd: float = 0.0
    teacher_usd_per_1k: tuple[float, float] | None = None


@dataclass
class PlanningProblem:
    """The factor tables a selection runs on.

    Attributes:
        instance_types: the instance universe, in a fixed order (indices refer to it).
        pair_modes: every (teacher, student, mode) candidate slot.
        training: per pair mode, one :data:`TrainOption` per instance (empty for a rejected pair mode); a
            job over several nodes has ``usd_per_hour`` = nodes x the instance's price.
        serving: per student index, one :data:`ServeOption` per instance.
        parallelism: per pair mode, the parallelism plan of each training option (None where the option does
            not fit); empty when the tables were built without them (selection tests).
        spot: per pair mode, the managed spot estimate of each training option that is priced on spot (its
            hours and cost in :attr:`training` are then the spot figures), None for an on-demand option; empty
            when the tables were built without them.
        uncertainty: each estimate's band and calibration (:class:`~stratos.planner.uncertainty.Uncertainty`),
            for the uncertainty-aware choice among near-equal plans; None when the tables were built without
            one (selection tests): every estimate then gets the default bands.
    """

    instance_types: tuple[str, ...]
    pair_modes: list[PairMode]
    training: list[list[TrainOption]]
    serving: list[list[ServeOption]]
    parallelism: list[list[ParallelismPlan | None]] = field(default_factory=list)
    spot: list[list[SpotEstimate | None]] = field(default_factory=list)
    uncertainty: Uncertainty | None = None

    @property
    def candidates(self) -> int:
        """Size of the candidate space: pair modes x training instances x serving instances."""
        n = len(self.instance_types)
        return len(self.pair_modes) * n * n


@dataclass(frozen=True)
class Limits:
    """The hard constraints a selection applies.

    Attributes:
        budget_usd: training + serving cost limit, USD.
        p50_ms: p50 latency limit, ms.
        min_accuracy: lowest expected accuracy, fraction.
        max_training_hours: training wall-time limit, hours.
        allowed: instance indices allowed (families / allow-list), ``None`` = all.
        unavailable: instance indices the account cannot get now (quota fallback).
    """

    budget_usd: float
    p50_ms: float
    min_accuracy: float
    max_training_hours: float
    allowed: frozenset[int] | None = None
    unavailable: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Weights:
    """Objective weights of the deployment score (non-negative, summing to 1)."""

    accuracy: float
    latency: float
    training_time: float
    cost: float


@dataclass(frozen=True, slots=True)
class Band:
    """How sure the planner is of one estimate: the estimators' figure before calibration, the half-width of the
    band around the plan's figure (same unit), and the past runs that calibrated it
    (:mod:`stratos.planner.calibration`)."""

    uncalibrated: float
    band: float
    runs: int = 0

    def as_dict(self) -> dict[str, float | int]:
        return {"uncalibrated": self.uncalibrated, "band": self.band, "runs": self.runs}


@dataclass(frozen=True, slots=True)
class Plan:
    """One feasible plan with its estimates and score.

    Attributes:
        teacher, student, mode, training_instance, serving_instance: the choice.
        expected_accuracy: fraction 0..1.
        p50_latency_ms: ms.
        training_hours: hours.
        training_cost_usd, serving_cost_usd, total_cost_usd: USD.
        training_usd_per_hour: price of the training job, USD/hour: the instance's on-demand price x the
            parallelism plan's nodes, less the expected managed spot saving when ``spot`` is set.
        serving_usd_per_hour: on-demand hosting price of one serving instance, USD/hour.
        score: deployment score (module docstring).
        max_runtime_seconds: the training job's MaxRuntimeInSeconds: what the budget left after serving buys
            at the training price, capped by ``max_training_hours`` and SageMaker's 28 days.
        parallelism: how the training job spreads over its hardware (None when the problem carried none).
        spot: the managed spot estimate when the training job runs on spot (``training_hours`` and
            ``training_cost_usd`` are then its figures), None on-demand.
        accuracy_band, training_hours_band, p50_latency_band: each estimate's :class:`Band` (fraction, hours,
            ms), set by :func:`stratos.planner.uncertainty.decide`; None before.
        teacher_tokens, teacher_tokens_usd: an external teacher's expected tokens and their price, USD (included in
            ``training_cost_usd``; :attr:`PairMode.teacher_tokens`).
        teacher_usd_per_1k: the (input, output) USD per 1,000 tokens that priced them (:attr:`PairMode`).
    """

    teacher: str
    student: str
    mode: Mode
    training_instance: str
    serving_instance: str
    expected_accuracy: float
    p50_latency_ms: float
    training_hours: float
    training_cost_usd: float
    serving_cost_usd: float
    total_cost_usd: float
    training_usd_per_hour: float
    serving_usd_per_hour: float
    score: float
    max_runtime_seconds: int
    parallelism: ParallelismPlan | None = None
    spot: SpotEstimate | None = None
    accuracy_band: Band | None = None
    training_hours_band: Band | None = None
    p50_latency_band: Band | None = None
    teacher_tokens: float = 0.0
    teacher_tokens_usd: float = 0.0
    teacher_usd_per_1k: tuple[float, float] | None = None

    def ids(self) -> tuple[str, str, str, str, str]:
        """``(teacher, student, mode, training instance, serving instance)``."""
        return (self.teacher, self.student, self.mode, self.training_instance, self.serving_instance)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe dict (the CLI's and the frontier document's plan shape). Besides the attributes:
        ``spot`` (bool), ``on_demand_usd_per_hour``, ``on_demand_training_hours`` and
        ``on_demand_training_cost_usd`` (the same job on-demand; this plan's own figures when it is on-demand),
        ``spot_saving_usd`` (expected, 0 on-demand), ``spot_savings_fraction`` and ``spot_overhead_fraction``
        (the planning figures; None on-demand), ``accuracy_band``, ``training_hours_band`` and
        ``p50_latency_band`` (``{uncalibrated, band, runs}`` or None)."""
        spot = self.spot
        return {
            "teacher": self.teacher,
            "student": self.student,
            "training_instance": self.training_instance,
            "serving_instance": self.serving_instance,
            "mode": self.mode,
            "expected_accuracy": self.expected_accuracy,
            "p50_latency_ms": self.p50_latency_ms,
            "training_hours": self.training_hours,
            "training_cost_usd": self.training_cost_usd,
            "serving_cost_usd": self.serving_cost_usd,
            "total_cost_usd": self.total_cost_usd,
            "training_usd_per_hour": self.training_usd_per_hour,
            "serving_usd_per_hour": self.serving_usd_per_hour,
            "score": self.score,
            "max_runtime_seconds": self.max_runtime_seconds,
            "parallelism": None if self.parallelism is None else self.parallelism.model_dump(mode="json"),
            "spot": spot is not None,
            "on_demand_usd_per_hour": self.training_usd_per_hour if spot is None else spot.on_demand_usd_per_hour,
            "on_demand_training_hours": self.training_hours if spot is None else spot.on_demand_hours,
            "on_demand_training_cost_usd": (
                self.training_cost_usd if spot is None else spot.on_demand_cost_usd + self.teacher_tokens_usd
            ),
            "spot_saving_usd": (
                0.0 if spot is None else spot.on_demand_cost_usd + self.teacher_tokens_usd - self.training_cost_usd
            ),
            "spot_savings_fraction": None if spot is None else spot.savings_fraction,
            "spot_overhead_fraction": None if spot is None else spot.overhead_fraction,
            "accuracy_band": None if self.accuracy_band is None else self.accuracy_band.as_dict(),
            "training_hours_band": None if self.training_hours_band is None else self.training_hours_band.as_dict(),
            "p50_latency_band": None if self.p50_latency_band is None else self.p50_latency_band.as_dict(),
            "teacher_tokens": self.teacher_tokens,
            "teacher_tokens_usd": self.teacher_tokens_usd,
            "teacher_usd_per_1k": None if self.teacher_usd_per_1k is None else list(self.teacher_usd_per_1k),
        }


@dataclass(frozen=True)
class Best:
    """Best value of each objective over the feasible set (the score's normalisers)."""

    accuracy: float
    p50_latency_ms: float
    training_hours: float
    total_cost_usd: float


def score_terms(
    *,
    accuracy: float,
    p50_latency_ms: float,
    training_hours: float,
    total_cost_usd: float,
    best: Best,
    weights: Weights,
) -> dict[str, float]:
    """Each objective's term of the deployment score (module docstring): ``w_acc * acc / acc*`` and
    ``w * best / value`` for p50 latency (ms), training time (hours) and total cost (USD); the score is their
    sum. Keys: ``accuracy``, ``latency``, ``training_time``, ``cost``. :func:`select` computes the same sum in
    its inner loop from precomputed parts (a test keeps the two equal).

    Raises:
        ValueError: a p50 latency, training time or cost (or its best) is not positive.
    """
    # Accuracy may be 0; when every feasible plan's is, each is "the best" and the term is the full weight.
    out = {"accuracy": weights.accuracy * accuracy / best.accuracy if best.accuracy > 0 else weights.accuracy}
    for name, value, top in (
        ("latency", p50_latency_ms, best.p50_latency_ms),
        ("training_time", training_hours, best.training_hours),
        ("cost", total_cost_usd, best.total_cost_usd),
    ):
        if value <= 0 or top <= 0:
            raise ValueError(f"{name}: the score needs positive values (got {value}, best {top})")
        out[name] = getattr(weights, name) * top / value
    return out


@dataclass(frozen=True)
class Selection:
    """Result of :func:`select`.

    Attributes:
        chosen: the max-score plan, or ``None`` when nothing is feasible.
        frontier: Pareto-optimal plans in score order (``chosen`` first), at most ``frontier_max``.
        frontier_complete: False when the frontier had more plans than were returned.
        baselines: ``accuracy_first``, ``cost_first``, ``latency_first`` plans (empty when infeasible).
        rejected: candidates removed, by reason.
        candidates: size of the candidate space.
        feasible: candidates that pass every constraint.
        best: the score's normalisers (``None`` when infeasible).
        evaluated: candidates scored after the per-factor Pareto pruning.
        tie: how the uncertainty-aware choice went (:func:`stratos.planner.uncertainty.decide`); None straight
            out of :func:`select`, whose ``chosen`` is the max-score plan.
    """

    chosen: Plan | None
    frontier: list[Plan]
    frontier_complete: bool
    baselines: dict[str, Plan]
    rejected: dict[str, int]
    candidates: int
    feasible: int
    best: Best | None
    evaluated: int = field(default=0)
    tie: TieBreak | None = None


@dataclass(frozen=True)
class TieBreak:
    """The uncertainty-aware choice among near-equal plans (:func:`stratos.planner.uncertainty.decide`).

    Attributes:
        top_score: the max-score plan (what :func:`select` chose).
        tied: frontier plans whose score is within the band of the max-score plan's, itself included.
        band: the band of the score difference between the chosen plan and the max-score plan (0 when the
            max-score plan was kept).
        reason: one sentence: kept, or which cheaper plan won and why.
    """

    top_score: Plan
    tied: int
    band: float
    reason: str


def pareto_2d(points: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Points not strictly dominated in their first two fields (both minimised), by sort + sweep.

    Equal points are all kept. Returned in ascending order of the first field (so the second descends).
    O(n log n).
    """
    out: list[tuple[Any, ...]] = []
    for p in sorted(points, key=lambda q: (q[0], q[1], q[3])):
        if not out or p[1] < out[-1][1] or (p[1] == out[-1][1] and p[0] == out[-1][0]):
            out.append(p)
    return out


def max_runtime_seconds(budget_usd: float, serving_cost_usd: float, usd_per_hour: float, max_hours: float) -> int:
    """Training job MaxRuntimeInSeconds that enforces the budget: the hours the budget left after serving
    buys at the training price, capped by ``max_hours`` and SageMaker's 28-day limit; at least 60 s."""
    hours = min((budget_usd - serving_cost_usd) / usd_per_hour, max_hours, SAGEMAKER_MAX_RUNTIME_SECONDS / 3600.0)
    return max(60, math.floor(hours * 3600.0))


def _add(counter: dict[str, int], key: str, n: int) -> None:
    if n:
        counter[key] = counter.get(key, 0) + n


def _within_budget(costs: list[float], base: float, budget: float) -> int:
    """How many of the ascending ``costs`` satisfy ``base + cost <= budget`` (exactly that predicate)."""
    j = bisect_right(costs, budget - base)
    while j < len(costs) and base + costs[j] <= budget:
        j += 1
    while j > 0 and base + costs[j - 1] > budget:
        j -= 1
    return j


def _first_within_budget(neg_costs: list[float], costs: list[float], base: float, budget: float) -> int:
    """First index of a descending ``costs`` list from which ``base + cost <= budget`` holds."""
    j = bisect_left(neg_costs, base - budget)
    while j > 0 and base + costs[j - 1] <= budget:
        j -= 1
    while j < len(costs) and base + costs[j] > budget:
        j += 1
    return j


# Record of a scored candidate in pass 2: (score, acc, p50, hours, total, pair_mode_index, train_instance,
# serve_instance, train_cost, serve_cost, train_rate, serve_rate)
_Rec = tuple[float, float, float, float, float, int, int, int, float, float, float, float]


def select(
    problem: PlanningProblem, limits: Limits, weights: Weights, *, frontier_max: int = FRONTIER_MAX
) -> Selection:
    """Filter, score and rank the candidates of ``problem`` under ``limits`` (see the module docstring).

    Args:
        problem: the factor tables.
        limits: the hard constraints.
        weights: the deployment score's weights.
        frontier_max: Pareto-frontier plans to return (0 skips the frontier, e.g. for what-if runs).

    Returns:
        The :class:`Selection`; ``chosen`` is ``None`` when no candidate is feasible.
    """
    n_inst = len(problem.instance_types)
    rejected: dict[str, int] = {}
    allowed, unavailable = limits.allowed, limits.unavailable
    budget, p50_limit, hours_limit = limits.budget_usd, limits.p50_ms, limits.max_training_hours

    # Serving options per student: feasible ones sorted by cost (for counting) and their 2-D Pareto set.
    serve_costs: list[list[float]] = []
    serve_front: list[list[tuple[float, float, float, int]]] = []
    serve_rejects: list[dict[str, int]] = []
    for options in problem.serving:
        ok: list[tuple[float, float, float, int]] = []
        rej: dict[str, int] = {}
        for p50, cost, rate, idx, reason in options:
            if allowed is not None and idx not in allowed:
                why = SERVING_NOT_ALLOWED
            elif idx in unavailable:
                why = SERVING_UNAVAILABLE
            elif reason is not None:
                why = reason
            elif p50 > p50_limit:
                why = LATENCY
            else:
                ok.append((p50, cost, rate, idx))
                continue
            rej[why] = rej.get(why, 0) + 1
        serve_costs.append(sorted(o[1] for o in ok))
        serve_front.append([(p[0], p[1], p[2], p[3]) for p in pareto_2d(ok)])
        serve_rejects.append(rej)

    # Pass 1: count, keep each pair mode's Pareto training options, find the best value of each objective.
    feasible = 0
    best_acc, best_p50, best_hours, best_cost = -1.0, math.inf, math.inf, math.inf
    kept: list[tuple[int, list[tuple[float, float, float, int]]]] = []
    all_instances = n_inst * n_inst
    for k, pm in enumerate(problem.pair_modes):
        if pm.reason is not None:
            _add(rejected, pm.reason, all_instances)
            continue
        if pm.accuracy < limits.min_accuracy:
            _add(rejected, BELOW_MIN_ACCURACY, all_instances)
            continue
        t_ok: list[tuple[float, float, float, int]] = []
        for hours, cost, rate, idx, reason in problem.training[k]:
            if allowed is not None and idx not in allowed:
                why = TRAINING_NOT_ALLOWED
            elif idx in unavailable:
                why = TRAINING_UNAVAILABLE
            elif reason is not None:
                why = reason
            elif hours > hours_limit:
                why = TRAINING_TIME
            else:
                t_ok.append((hours, cost, rate, idx))
                continue
            _add(rejected, why, n_inst)
        if not t_ok:
            continue
        si = pm.student_index
        n_t = len(t_ok)
        for why, count in serve_rejects[si].items():
            _add(rejected, why, n_t * count)
        costs = serve_costs[si]
        if not costs:
            continue
        here = 0
        for t in t_ok:
            here += _within_budget(costs, t[1], budget)
        _add(rejected, BUDGET, n_t * len(costs) - here)
        feasible += here
        if not here:
            continue
        min_sc = costs[0]
        min_tc = min(t[1] for t in t_ok)
        best_acc = max(best_acc, pm.accuracy)
        best_cost = min(best_cost, min_tc + min_sc)
        for t in t_ok:
            if t[1] + min_sc <= budget and t[0] < best_hours:
                best_hours = t[0]
        front = serve_front[si]
        for s in front:  # ascending p50: the first affordable one has the lowest p50
            if min_tc + s[1] <= budget:
                best_p50 = min(best_p50, s[0])
                break
        kept.append((k, [(t[0], t[1], t[2], t[3]) for t in pareto_2d(t_ok)]))

    if not feasible:
        return Selection(None, [], True, {}, _sorted_counts(rejected), problem.candidates, 0, None)
    best = Best(best_acc, best_p50, best_hours, best_cost)

    # Pass 2: score the reduced candidates; track the best, the baselines and the top of the score order.
    wa, wl, wt, wc = weights.accuracy, weights.latency, weights.training_time, weights.cost
    wc_cost = wc * best_cost
    lat_terms = [[wl * best_p50 / s[0] for s in front] for front in serve_front]
    neg_costs = [[-s[1] for s in front] for front in serve_front]
    front_costs = [[s[1] for s in front] for front in serve_front]
    heap_size = max(frontier_max * 20, 1000) if frontier_max else 0
    names = _Names(problem)

    while True:
        top: list[tuple[float, int, _Rec]] = []
        chosen: _Rec | None = None
        acc_first: _Rec | None = None
        cost_first: _Rec | None = None
        lat_first: _Rec | None = None
        evaluated = 0
        seq = 0
        for k, t_front in kept:
            pm = problem.pair_modes[k]
            si = pm.student_index
            acc = pm.accuracy
            a_term = wa * acc / best_acc if best_acc > 0 else wa
            front, lterms, sneg, scost = serve_front[si], lat_terms[si], neg_costs[si], front_costs[si]
            n_front = len(front)
            for hours, tc, rate, tidx in t_front:
                base = a_term + wt * best_hours / hours
                m = _first_within_budget(sneg, scost, tc, budget)
                evaluated += n_front - m
                for j in range(m, n_front):
                    p50, sc, srate, sidx = front[j]
                    total = tc + sc
                    score = base + lterms[j] + wc_cost / total
                    rec: _Rec | None = None
                    if chosen is None or score >= chosen[0]:
                        rec = (score, acc, p50, hours, total, k, tidx, sidx, tc, sc, rate, srate)
                        if chosen is None or score > chosen[0] or names.key(rec) < names.key(chosen):
                            chosen = rec
                    if acc_first is None or acc >= acc_first[1]:
                        rec = rec or (score, acc, p50, hours, total, k, tidx, sidx, tc, sc, rate, srate)
                        if acc_first is None or names.acc_key(rec) < names.acc_key(acc_first):
                            acc_first = rec
                    if cost_first is None or total <= cost_first[4]:
                        rec = rec or (score, acc, p50, hours, total, k, tidx, sidx, tc, sc, rate, srate)
                        if cost_first is None or names.cost_key(rec) < names.cost_key(cost_first):
                            cost_first = rec
                    if lat_first is None or p50 <= lat_first[2]:
                        rec = rec or (score, acc, p50, hours, total, k, tidx, sidx, tc, sc, rate, srate)
                        if lat_first is None or names.lat_key(rec) < names.lat_key(lat_first):
                            lat_first = rec
                    if heap_size:
                        if len(top) < heap_size:
                            rec = rec or (score, acc, p50, hours, total, k, tidx, sidx, tc, sc, rate, srate)
                            seq += 1
                            heapq.heappush(top, (score, seq, rec))
                        elif score > top[0][0]:
                            rec = rec or (score, acc, p50, hours, total, k, tidx, sidx, tc, sc, rate, srate)
                            seq += 1
                            heapq.heapreplace(top, (score, seq, rec))
        assert chosen is not None and acc_first is not None and cost_first is not None and lat_first is not None
        truncated = evaluated > len(top)
        frontier_recs, complete = _skyline(top, names, frontier_max, truncated)
        if not frontier_max or len(frontier_recs) >= frontier_max or not truncated:
            break
        heap_size *= 4  # the top of the score order held too few frontier plans: look deeper

    def plan(rec: _Rec) -> Plan:
        pm = problem.pair_modes[rec[5]]
        return Plan(
            teacher=pm.teacher,
            student=pm.student,
            mode=pm.mode,
            training_instance=problem.instance_types[rec[6]],
            serving_instance=problem.instance_types[rec[7]],
            expected_accuracy=rec[1],
            p50_latency_ms=rec[2],
            training_hours=rec[3],
            training_cost_usd=rec[8],
            serving_cost_usd=rec[9],
            total_cost_usd=rec[4],
            training_usd_per_hour=rec[10],
            serving_usd_per_hour=rec[11],
            score=rec[0],
            max_runtime_seconds=max_runtime_seconds(budget, rec[9], rec[10], hours_limit),
            parallelism=problem.parallelism[rec[5]][rec[6]] if problem.parallelism else None,
            spot=problem.spot[rec[5]][rec[6]] if problem.spot else None,
            teacher_tokens=pm.teacher_tokens,
            teacher_tokens_usd=pm.teacher_tokens_usd,
            teacher_usd_per_1k=pm.teacher_usd_per_1k,
        )

    baselines = {"accuracy_first": plan(acc_first), "cost_first": plan(cost_first), "latency_first": plan(lat_first)}
    chosen_plan = plan(chosen)
    frontier = [plan(r) for r in frontier_recs] if frontier_max else [chosen_plan]
    return Selection(
        chosen=chosen_plan,
        frontier=frontier,
        frontier_complete=complete,
        baselines=baselines,
        rejected=_sorted_counts(rejected),
        candidates=problem.candidates,
        feasible=feasible,
        best=best,
        evaluated=evaluated,
    )


class _Names:
    """Tie-break keys of scored records (ids come last, so equal objectives order deterministically)."""

    def __init__(self, problem: PlanningProblem) -> None:
        self._pm = problem.pair_modes
        self._types = problem.instance_types

    def ids(self, rec: _Rec) -> tuple[str, str, str, str, str]:
        pm = self._pm[rec[5]]
        return (pm.teacher, pm.student, pm.mode, self._types[rec[6]], self._types[rec[7]])

    def key(self, rec: _Rec) -> tuple[Any, ...]:
        """Score order: higher score, then lower cost, p50, hours, higher accuracy, then ids."""
        return (-rec[0], rec[4], rec[2], rec[3], -rec[1], *self.ids(rec))

    def acc_key(self, rec: _Rec) -> tuple[Any, ...]:
        return (-rec[1], rec[4], rec[2], rec[3], *self.ids(rec))

    def cost_key(self, rec: _Rec) -> tuple[Any, ...]:
        return (rec[4], -rec[1], rec[2], rec[3], *self.ids(rec))

    def lat_key(self, rec: _Rec) -> tuple[Any, ...]:
        return (rec[2], rec[4], -rec[1], rec[3], *self.ids(rec))


def _skyline(
    top: list[tuple[float, int, _Rec]], names: _Names, frontier_max: int, truncated: bool
) -> tuple[list[_Rec], bool]:
    """Sort-filter-skyline over the best-scored records.

    A record can only be dominated by one earlier in score order, and only a frontier record needs checking
    (domination is transitive). When ``top`` is only the head of the score order, records scoring exactly
    the cut-off score are left out (an equal-score dominator may have been cut).
    """
    if not frontier_max:
        return [], not truncated
    recs = sorted((item[2] for item in top), key=names.key)
    cutoff = top[0][0] if truncated and top else -math.inf
    frontier: list[_Rec] = []
    complete = not truncated
    for rec in recs:
        if rec[0] <= cutoff:
            complete = False
            break
        _, acc, p50, hours, total = rec[:5]
        dominated = False
        for f in frontier:
            if (
                f[1] >= acc
                and f[2] <= p50
                and f[3] <= hours
                and f[4] <= total
                and (f[1] != acc or f[2] != p50 or f[3] != hours or f[4] != total)
            ):
                dominated = True
                break
        if not dominated:
            if len(frontier) == frontier_max:
                complete = False
                break
            frontier.append(rec)
    return frontier, complete


def _sorted_counts(counter: dict[str, int]) -> dict[str, int]:
    """Reasons by decreasing count, then name."""
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))
