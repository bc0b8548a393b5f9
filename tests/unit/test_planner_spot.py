"""Managed spot training in the planner: the catalog's dated figures, the estimator, and constraints.spot
(auto | on | off) choosing spot or on-demand per training option."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest
from pydantic import ValidationError

from stratos.errors import NoFeasiblePlanError
from stratos.payloads import S3Pointer
from stratos.planner import estimators as est
from stratos.planner.catalog import load_catalog, parse_spot, spot_figures, spot_savings, spot_snapshot
from stratos.planner.plan import fallback_plan_ref, plan, summary
from stratos.planner.pricing import snapshot_price_table
from stratos.planner.selection import TRAINING_NO_SPOT, TRAINING_TIME
from stratos.spec import validate_spec_document
from tests.conftest import SPECS

CATALOG = load_catalog()
TEACHER, STUDENT = "qwen2.5-3b-instruct", "smollm2-135m-instruct-l10"
POINTER = S3Pointer(uri="s3://stratos-artifacts/runs/r1/plan/frontier.json", bytes=1, sha256="0" * 64)


def mahjong(**constraints: Any) -> dict[str, Any]:
    """The mahjong example spec, one pair, trained on ml.g5.xlarge and served on ml.c7i.xlarge (unless the
    allow-list is overridden), with ``constraints`` changed."""
    doc: dict[str, Any] = json.loads((SPECS / "mahjong-winning-tiles.json").read_text(encoding="utf-8"))
    doc["candidates"] = {"teachers": [TEACHER], "students": [STUDENT]}
    doc["distillation"]["mode"] = "injection"
    doc["constraints"]["instance_allowlist"] = ["ml.g5.xlarge", "ml.c7i.xlarge"]
    doc["constraints"].update(constraints)
    return doc


def planned(doc: dict[str, Any], catalog: Any = CATALOG) -> Any:
    spec = validate_spec_document(doc)
    return plan(spec, snapshot_price_table(spec.constraints.region, catalog), catalog=catalog)


# --------------------------------------------------------------------------------------------------------
# The catalog's figures.


def test_spot_figures_are_a_dated_snapshot_per_family_with_a_source():
    snapshot = spot_snapshot()
    families = {i.family for i in CATALOG.instances}
    assert set(snapshot) <= families and {"g5", "g6", "c7i"} <= set(snapshot)
    for family, figures in snapshot.items():
        assert 0 < figures.savings < 1 and figures.interruptions_per_hour >= 0, family
        assert figures.source.snapshot_date == "2026-12-04" and "planning figure" in figures.source.text
    # Every instance carries its family's figures (the local harness reads the same ones by type).
    for inst in CATALOG.instances:
        assert inst.spot == snapshot.get(inst.family) and inst.spot_savings == spot_savings(inst.instance_type)
    assert spot_savings("ml.g5.xlarge") == pytest.approx(0.7)
    assert spot_figures("ml.p6-b200.48xlarge") is None and spot_savings("ml.p6-b200.48xlarge") is None
    assert spot_savings("not-an-instance") is None


def test_the_spot_file_is_validated():
    good = {
        "schema_version": 1,
        "snapshot_date": "2026-12-04",
        "description": "x",
        "sources": {"s": "a source"},
        "families": {"g5": {"savings": 0.5, "interruptions_per_hour": 0.1, "source": "s"}},
    }
    assert parse_spot(good)["g5"].savings == 0.5
    with pytest.raises(ValidationError):
        parse_spot({**good, "families": {"g5": {"savings": 1.0, "interruptions_per_hour": 0.1, "source": "s"}}})
    with pytest.raises(ValueError, match="unknown source key"):
        parse_spot({**good, "families": {"g5": {"savings": 0.5, "interruptions_per_hour": 0.1, "source": "t"}}})


# --------------------------------------------------------------------------------------------------------
# The estimator.


def test_spot_overhead_is_lost_work_plus_restart_per_interruption():
    # 0.05 interruptions/h x (10 min / 2 + 5 min) / 60 = 0.00833: 0.8 % longer.
    assert est.spot_overhead_fraction(0.05) == pytest.approx(0.05 * 10 / 60)
    assert est.spot_overhead_fraction(0.05, nodes=4) == pytest.approx(4 * 0.05 * 10 / 60)  # any node stops the job
    assert est.spot_overhead_fraction(0.2, checkpoint_interval_minutes=30, restart_minutes=0) == pytest.approx(0.05)
    assert est.spot_overhead_fraction(0.0) == 0.0
    with pytest.raises(ValueError):
        est.spot_overhead_fraction(-0.1)
    with pytest.raises(ValueError):
        est.spot_overhead_fraction(0.1, nodes=0)


def test_spot_estimate_is_longer_and_cheaper_by_the_stated_formula():
    spot = est.spot_estimate(10.0, 4.0, savings=0.7, interruptions_per_hour=0.06, nodes=2)
    overhead = 2 * 0.06 * 10 / 60
    assert spot.overhead_fraction == pytest.approx(overhead)
    assert spot.hours == pytest.approx(10.0 * (1 + overhead))
    assert spot.cost_usd == pytest.approx(4.0 * 0.3 * spot.hours) and spot.usd_per_hour == pytest.approx(1.2)
    assert (spot.on_demand_hours, spot.on_demand_cost_usd, spot.on_demand_usd_per_hour) == (10.0, 40.0, 4.0)
    assert spot.saving_usd == pytest.approx(40.0 - spot.cost_usd) and spot.cheaper
    # A saving smaller than the overhead costs more than on-demand.
    assert not est.spot_estimate(10.0, 4.0, savings=0.01, interruptions_per_hour=1.0).cheaper
    with pytest.raises(ValueError, match="savings must be a fraction"):
        est.spot_estimate(1.0, 1.0, savings=1.5, interruptions_per_hour=0.0)


# --------------------------------------------------------------------------------------------------------
# constraints.spot.


def test_the_spec_defaults_to_auto_and_refuses_other_values():
    assert validate_spec_document(mahjong()).constraints.spot == "auto"
    with pytest.raises(Exception, match="constraints.spot"):
        validate_spec_document(mahjong(spot="always"))


def test_off_trains_on_demand_and_on_and_auto_price_the_same_job_on_spot():
    off = planned(mahjong(spot="off")).chosen
    on = planned(mahjong(spot="on")).chosen
    auto = planned(mahjong(spot="auto")).chosen
    assert off.spot is None and on.spot is not None and auto.spot == on.spot
    spot, figures = on.spot, CATALOG.instance("ml.g5.xlarge").spot
    assert (spot.on_demand_hours, spot.on_demand_cost_usd) == pytest.approx((off.training_hours, off.training_cost_usd))
    assert spot.savings_fraction == figures.savings
    assert on.training_hours == pytest.approx(off.training_hours * (1 + est.spot_overhead_fraction(0.05)))
    assert on.training_cost_usd == pytest.approx(off.training_usd_per_hour * (1 - 0.7) * on.training_hours)
    assert on.training_usd_per_hour == pytest.approx(off.training_usd_per_hour * 0.3)
    # The state payload carries the choice and what people need to judge it.
    s = summary(on)
    assert s.spot is True and s.on_demand_usd_per_hour == pytest.approx(off.training_usd_per_hour)
    assert s.on_demand_training_cost_usd == pytest.approx(off.training_cost_usd, abs=1e-4)
    assert s.spot_saving_usd == pytest.approx(off.training_cost_usd - on.training_cost_usd, abs=1e-4)
    plain = summary(off)
    assert (plain.spot, plain.spot_saving_usd) == (False, 0.0)
    assert plain.on_demand_training_cost_usd == pytest.approx(off.training_cost_usd, abs=1e-4)


def test_auto_keeps_on_demand_when_the_interruption_overhead_breaks_max_training_hours():
    off = planned(mahjong(spot="off")).chosen
    spot_hours = planned(mahjong(spot="on")).chosen.training_hours
    limit = (off.training_hours + spot_hours) / 2  # on-demand fits, spot does not
    auto = planned(mahjong(spot="auto", max_training_hours=limit)).chosen
    assert auto.training_instance == "ml.g5.xlarge" and auto.spot is None
    assert auto.training_hours == pytest.approx(off.training_hours)
    with pytest.raises(NoFeasiblePlanError) as err:  # 'on' insists on spot: too slow for the limit
        planned(mahjong(spot="on", max_training_hours=limit))
    assert err.value.rejected[TRAINING_TIME] > 0


def test_a_family_without_a_spot_figure_trains_on_demand_under_auto_and_is_infeasible_under_on():
    no_g5 = CATALOG.replace(
        instances=[dataclasses.replace(i, spot=None) if i.family == "g5" else i for i in CATALOG.instances]
    )
    auto = planned(mahjong(spot="auto"), no_g5).chosen
    assert auto.training_instance == "ml.g5.xlarge" and auto.spot is None
    with pytest.raises(NoFeasiblePlanError) as err:
        planned(mahjong(spot="on"), no_g5)
    assert err.value.rejected[TRAINING_NO_SPOT] > 0
    message = str(err.value)
    assert "constraints.spot is 'on'" in message and "set constraints.spot to 'auto' or 'off'" in message
    assert "g6" in message and "families with one" in message


def test_auto_prefers_spot_only_where_it_is_cheaper():
    """A family whose saving the overhead eats keeps on-demand under auto (and costs more under on)."""
    figures = dataclasses.replace(CATALOG.instance("ml.g5.xlarge").spot, savings=0.001, interruptions_per_hour=2.0)
    dear = CATALOG.replace(
        instances=[dataclasses.replace(i, spot=figures) if i.family == "g5" else i for i in CATALOG.instances]
    )
    off = planned(mahjong(spot="off"), dear).chosen
    assert planned(mahjong(spot="auto"), dear).chosen.spot is None
    on = planned(mahjong(spot="on"), dear).chosen
    assert on.training_cost_usd > off.training_cost_usd and on.as_dict()["spot_saving_usd"] < 0


def test_a_multi_node_spot_job_counts_every_nodes_interruptions():
    doc = json.loads((SPECS / "gsm8k.json").read_text())
    doc["candidates"] = {"teachers": ["qwen2.5-14b-instruct"], "students": ["qwen2.5-7b-instruct"]}
    doc["constraints"].update(
        instance_allowlist=["ml.g5.48xlarge", "ml.g5.xlarge"],
        budget_usd=100_000,
        max_training_hours=100,
        latency={**doc["constraints"]["latency"], "p50_ms": 100_000},
        spot="on",
    )
    chosen = planned(doc).chosen
    nodes = chosen.parallelism.nodes
    assert nodes > 1 and chosen.spot is not None
    assert chosen.spot.overhead_fraction == pytest.approx(est.spot_overhead_fraction(0.05, nodes))
    price = float(CATALOG.instance("ml.g5.48xlarge").snapshot_prices[("us-east-1", "Training")])
    assert chosen.spot.on_demand_usd_per_hour == pytest.approx(nodes * price)


def test_every_frontier_plan_obeys_the_policy_and_the_document_says_so():
    result = planned(mahjong(spot="on", instance_allowlist=None, instance_families=["g5", "g6", "c7i", "m7i"]))
    doc = result.frontier_document()
    assert doc["constraints"]["spot"] == "on" and doc["spot"]["policy"] == "on"
    assert doc["spot"]["checkpoint_interval_minutes"] == est.SPOT_CHECKPOINT_INTERVAL_MINUTES
    assert all(p["spot"] for p in doc["frontier"]) and len(doc["frontier"]) > 1
    for entry in doc["frontier"]:
        assert entry["training_cost_usd"] < entry["on_demand_training_cost_usd"]
        assert entry["spot_saving_usd"] == pytest.approx(
            entry["on_demand_training_cost_usd"] - entry["training_cost_usd"]
        )
    # A quota fallback reads its next plan from the document: the spot choice travels with it.
    ref = result.plan_ref(POINTER)
    nxt = fallback_plan_ref(ref, doc, [result.chosen.training_instance])
    assert nxt.plan.spot is True and nxt.plan.on_demand_usd_per_hour is not None
    off = planned(mahjong(spot="off", instance_allowlist=None, instance_families=["g5", "g6", "c7i", "m7i"]))
    assert not any(p["spot"] for p in off.frontier_document()["frontier"])


def test_spot_never_makes_max_runtime_shorter_than_the_planned_spot_hours():
    chosen = planned(mahjong(spot="on", budget_usd=157)).chosen  # a budget that binds the runtime
    assert chosen.spot is not None and chosen.max_runtime_seconds < 6 * 3600  # the budget, not the 6 h limit
    # What the budget left after serving buys at the spot rate (the plan's training_usd_per_hour).
    left = 157 - chosen.serving_cost_usd
    assert chosen.max_runtime_seconds == math.floor(left / chosen.training_usd_per_hour * 3600)
    assert chosen.max_runtime_seconds >= math.floor(chosen.training_hours * 3600)
