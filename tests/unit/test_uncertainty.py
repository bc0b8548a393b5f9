"""Uncertainty-aware choice (:mod:`stratos.planner.uncertainty`): score bands over the estimates two plans do not
share, ties broken by hourly price then accelerators, and the issue's gold-plated plan no longer chosen."""

from __future__ import annotations

import math

import pytest

from stratos.planner.calibration import DEFAULT_ACCURACY_BAND, DEFAULT_TRAINING_HOURS_BAND
from stratos.planner.catalog import load_catalog
from stratos.planner.plan import plan
from stratos.planner.pricing import snapshot_price_table
from stratos.planner.selection import Best, Limits, PairMode, Plan, PlanningProblem, Weights, select
from stratos.planner.uncertainty import Uncertainty, decide, score_band
from stratos.spec import parse_spec
from tests.conftest import SPECS

WEIGHTS = Weights(accuracy=0.4, latency=0.2, training_time=0.1, cost=0.3)
LOOSE = Limits(budget_usd=1e6, p50_ms=1e6, min_accuracy=0.0, max_training_hours=100.0)


def _problem(training: list[tuple[float, float]], accuracies: tuple[float, ...] = (0.5,)) -> PlanningProblem:
    """One student served on ml.s0 (100 ms, 100 USD); per pair mode (teacher t<k>) the given training options
    ``(hours, USD/hour)`` on ml.t0, ml.t1, ..."""
    n = len(training) + 1
    types = ("ml.s0.large", *(f"ml.t{i}.large" for i in range(len(training))))
    pms = [PairMode(f"t{k}", "s", "alignment", acc, 0) for k, acc in enumerate(accuracies)]
    train = [
        [(math.inf, math.inf, 0.0, 0, "training-price-unknown")]
        + [(hours, hours * rate, rate, i + 1, None) for i, (hours, rate) in enumerate(training)]
        for _ in pms
    ]
    serve = [
        [(100.0, 100.0, 100.0 / 730, 0, None)] + [(math.inf, math.inf, 0.0, i, "serving-memory") for i in range(1, n)]
    ]
    return PlanningProblem(types, pms, train, serve)


def test_a_faster_dearer_training_instance_inside_the_band_loses_to_the_cheaper_one():
    # 5 % less time for 7x the price per hour: the max-score plan, but a tie within the training-time band.
    problem = _problem([(0.172, 7.09), (0.182, 0.98)])
    sel = select(problem, LOOSE, WEIGHTS)
    assert sel.chosen is not None and sel.chosen.training_instance == "ml.t0.large"
    decided = decide(sel, problem, WEIGHTS, accelerators_per_instance={"ml.t0.large": 4, "ml.t1.large": 1})
    assert decided.chosen is not None and decided.chosen.training_instance == "ml.t1.large"
    assert decided.frontier[0] == decided.chosen and decided.frontier[1].training_instance == "ml.t0.large"
    tie = decided.tie
    assert tie is not None and tie.top_score.training_instance == "ml.t0.large" and tie.tied == 2
    assert tie.top_score.score - decided.chosen.score <= tie.band
    assert "lower hourly price" in tie.reason
    # Every returned plan now carries its bands (defaults: nothing calibrated).
    band = decided.chosen.training_hours_band
    assert band is not None and band.runs == 0 and band.band == pytest.approx(0.182 * DEFAULT_TRAINING_HOURS_BAND)
    assert decided.chosen.accuracy_band is not None and decided.chosen.accuracy_band.band == DEFAULT_ACCURACY_BAND


def test_a_clear_winner_outside_the_band_is_kept():
    problem = _problem([(0.1, 7.0), (1.0, 1.0)])  # 10x faster: far outside a 30 % band
    sel = select(problem, LOOSE, WEIGHTS)
    decided = decide(sel, problem, WEIGHTS)
    assert decided.chosen is not None and sel.chosen is not None
    assert decided.chosen.ids() == sel.chosen.ids() and decided.tie is not None
    assert decided.tie.reason.startswith("max-score plan kept")


def test_equal_prices_break_on_fewer_accelerators():
    problem = _problem([(0.5, 2.0), (0.5, 2.0)])  # the same figures on two instance types
    sel = select(problem, LOOSE, WEIGHTS)
    many = decide(sel, problem, WEIGHTS, accelerators_per_instance={"ml.t0.large": 4, "ml.t1.large": 1})
    few = decide(sel, problem, WEIGHTS, accelerators_per_instance={"ml.t0.large": 1, "ml.t1.large": 4})
    assert many.chosen is not None and many.chosen.training_instance == "ml.t1.large"
    assert few.chosen is not None and few.chosen.training_instance == "ml.t0.large"


def _plan(teacher: str = "t", training: str = "ml.t0.large", serving: str = "ml.s0.large", **figures: float) -> Plan:
    values = {"accuracy": 0.5, "p50": 100.0, "hours": 1.0, "train_usd": 2.0, "serve_usd": 100.0} | figures
    plan = Plan(
        teacher=teacher,
        student="s",
        mode="alignment",
        training_instance=training,
        serving_instance=serving,
        expected_accuracy=values["accuracy"],
        p50_latency_ms=values["p50"],
        training_hours=values["hours"],
        training_cost_usd=values["train_usd"],
        serving_cost_usd=values["serve_usd"],
        total_cost_usd=values["train_usd"] + values["serve_usd"],
        training_usd_per_hour=values["train_usd"] / values["hours"],
        serving_usd_per_hour=values["serve_usd"] / 730,
        score=0.9,
        max_runtime_seconds=3600,
    )
    return Uncertainty().annotate(plan)


def test_shared_estimates_do_not_widen_the_band():
    best = Best(accuracy=0.5, p50_latency_ms=100.0, training_hours=1.0, total_cost_usd=102.0)
    p = _plan()
    assert score_band(p, p, best, WEIGHTS) == 0.0  # one plan: every estimate shared
    other_instance = _plan(training="ml.t1.large", hours=1.2, train_usd=1.0)
    other_serving = _plan(serving="ml.s1.large", p50=150.0)
    other_teacher = _plan(teacher="u", accuracy=0.45)

    # Only the training estimates differ: time and the training share of the cost, default 30 % each.
    def time_sigma(x: Plan) -> float:
        time_term = WEIGHTS.training_time * best.training_hours / x.training_hours
        cost_share = WEIGHTS.cost * best.total_cost_usd / x.total_cost_usd * x.training_cost_usd / x.total_cost_usd
        return (time_term + cost_share) * DEFAULT_TRAINING_HOURS_BAND

    assert score_band(p, other_instance, best, WEIGHTS) == pytest.approx(
        math.hypot(time_sigma(p), time_sigma(other_instance))
    )
    # Only the serving instance differs: the latency estimates (30 %).
    lat = [WEIGHTS.latency * best.p50_latency_ms / x.p50_latency_ms * 0.30 for x in (p, other_serving)]
    assert score_band(p, other_serving, best, WEIGHTS) == pytest.approx(math.hypot(*lat))
    # Another teacher: its accuracy AND its training estimates differ (the serving one is shared).
    acc = WEIGHTS.accuracy * DEFAULT_ACCURACY_BAND / best.accuracy
    assert score_band(p, other_teacher, best, WEIGHTS) == pytest.approx(
        math.hypot(acc, acc, time_sigma(p), time_sigma(other_teacher))
    )


def test_the_demo_spec_no_longer_gold_plates_its_training():
    """``make demo``'s plan (issue 16): ml.g5.12xlarge (4 GPUs) for a 5 % shorter estimate at ~7x the price."""
    catalog = load_catalog()
    spec = parse_spec((SPECS / "mahjong-local.json").read_bytes(), "mahjong-local.json")
    result = plan(spec, snapshot_price_table(spec.constraints.region, catalog), catalog=catalog)
    tie = result.selection.tie
    assert tie is not None
    chosen = result.chosen
    assert catalog.instance(chosen.training_instance).accelerator_count == 1  # type: ignore[union-attr]
    top = tie.top_score
    if top.ids() != chosen.ids():
        assert chosen.training_usd_per_hour < top.training_usd_per_hour
        assert chosen.score >= top.score - tie.band
    document = result.frontier_document()
    assert document["tie"]["reason"] == tie.reason and document["plan"]["training_hours_band"]["runs"] == 0
