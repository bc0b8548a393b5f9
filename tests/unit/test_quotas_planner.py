"""Service quotas in the planner (:mod:`stratos.planner.quotas`): a training or serving option whose quota is below
what the plan needs is rejected under the quota's name; unknown or unreadable quotas change nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from stratos.aws.quotas import InstanceQuotas
from stratos.errors import NoFeasiblePlanError
from stratos.payloads import S3Pointer
from stratos.planner.catalog import load_catalog
from stratos.planner.plan import PlanResult, build_problem, plan
from stratos.planner.pricing import PriceTable, snapshot_price_table
from stratos.planner.quotas import SERVING_QUOTA, SPOT_TRAINING_QUOTA, TRAINING_QUOTA, apply_quotas
from stratos.spec import validate_spec_document
from tests.conftest import SPECS

CATALOG = load_catalog()
FETCHED = datetime(2026, 12, 1, tzinfo=UTC)
POINTER = S3Pointer(uri="s3://stratos-artifacts/runs/r1/prices.json", bytes=1, sha256="0" * 64)


def example(name: str = "mahjong-winning-tiles.json", **constraints: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SPECS / name).read_text(encoding="utf-8"))
    doc["constraints"].update(constraints)
    return doc


def quotas(region: str = "us-east-1", source: str = "live", **tables: dict[str, int]) -> InstanceQuotas:
    return InstanceQuotas(region=region, source=source, fetched_at=FETCHED, **tables)  # type: ignore[arg-type]


def planned(doc: dict[str, Any], limits: InstanceQuotas | None = None) -> PlanResult:
    spec = validate_spec_document(doc)
    table = snapshot_price_table(spec.constraints.region, CATALOG)
    if limits is not None:
        table = table.model_copy(update={"quotas": limits.model_copy(update={"region": spec.constraints.region})})
    return plan(spec, table, catalog=CATALOG)


def frontier_types(result: PlanResult, which: str) -> set[str]:
    return {getattr(p, which) for p in result.selection.frontier}


def test_live_quotas_that_list_nothing_change_nothing():
    doc = example()
    before, after = planned(doc), planned(doc, quotas())
    assert after.chosen == before.chosen
    assert after.selection.rejected == before.selection.rejected
    assert after.context.warnings == before.context.warnings


def test_a_training_quota_of_0_excludes_the_type_under_the_quotas_name():
    doc = example(spot="off")
    first = planned(doc).chosen.training_instance
    result = planned(doc, quotas(training={first: 0}))
    assert result.chosen.training_instance != first
    assert first not in frontier_types(result, "training_instance")
    assert result.selection.rejected[TRAINING_QUOTA] > 0
    assert any(f"'{first} for training job usage' = 0 < 1" in w for w in result.context.warnings)
    # A quota that holds the job's nodes excludes nothing.
    assert planned(doc, quotas(training={first: 1})).chosen == planned(doc).chosen


def test_a_spot_quota_under_auto_trains_the_same_type_on_demand():
    doc = example(instance_allowlist=["ml.g5.xlarge", "ml.c7i.xlarge"])
    doc["candidates"] = {"teachers": ["qwen2.5-3b-instruct"], "students": ["smollm2-135m-instruct-l10"]}
    doc["distillation"]["mode"] = "injection"
    spot = planned(doc).chosen
    assert spot.training_instance == "ml.g5.xlarge" and spot.spot is not None
    result = planned(doc, quotas(spot_training={"ml.g5.xlarge": 0}))
    chosen = result.chosen
    assert (chosen.training_instance, chosen.spot) == ("ml.g5.xlarge", None)
    assert chosen.training_hours == pytest.approx(spot.spot.on_demand_hours)
    assert chosen.training_cost_usd == pytest.approx(spot.spot.on_demand_cost_usd)
    assert any("train on-demand instead of managed spot on ml.g5.xlarge" in w for w in result.context.warnings)
    # Neither quota holds the job: the type is rejected under the spot quota's name.
    both = quotas(spot_training={"ml.g5.xlarge": 0}, training={"ml.g5.xlarge": 0})
    with pytest.raises(NoFeasiblePlanError) as caught:
        planned(doc, both)  # ml.c7i.xlarge, the other allowed type, trains too slowly
    assert caught.value.rejected[SPOT_TRAINING_QUOTA] > 0


def test_a_spot_quota_under_on_rejects_the_type():
    doc = example(instance_allowlist=["ml.g5.xlarge", "ml.c7i.xlarge"], spot="on")
    zero = {"ml.g5.xlarge": 0, "ml.c7i.xlarge": 0}
    with pytest.raises(NoFeasiblePlanError) as caught:
        planned(doc, quotas(spot_training=zero))
    assert caught.value.rejected[SPOT_TRAINING_QUOTA] > 0
    assert "spot-training-job-usage-quota" in str(caught.value)


def test_an_endpoint_quota_below_the_instance_count_excludes_the_serving_type():
    doc = example()
    doc["deployment"] = {**doc.get("deployment", {}), "instance_count": 2}
    served = planned(doc).chosen.serving_instance
    result = planned(doc, quotas(endpoint={served: 1}))
    assert result.chosen.serving_instance != served
    assert served not in frontier_types(result, "serving_instance")
    assert result.selection.rejected[SERVING_QUOTA] > 0
    assert any(f"'{served} for endpoint usage' = 1 < 2" in w for w in result.context.warnings)
    assert planned(doc, quotas(endpoint={served: 2})).chosen.serving_instance == served


def test_a_multi_node_job_needs_a_quota_of_its_nodes():
    doc = example("gsm8k.json")
    doc["candidates"] = {"teachers": ["qwen2.5-14b-instruct"], "students": ["qwen2.5-7b-instruct"]}
    doc["constraints"].update(
        instance_allowlist=["ml.g5.48xlarge", "ml.g5.xlarge"],
        budget_usd=100_000,
        max_training_hours=100,
        latency={**doc["constraints"]["latency"], "p50_ms": 100_000},
        spot="off",
    )
    chosen = planned(doc).chosen
    assert chosen.parallelism is not None and chosen.parallelism.nodes > 1
    nodes = chosen.parallelism.nodes
    # One node short on ml.g5.48xlarge: the pair trains over many more ml.g5.xlarge nodes instead ...
    wider = planned(doc, quotas(training={"ml.g5.48xlarge": nodes - 1})).chosen
    assert wider.training_instance == "ml.g5.xlarge" and wider.parallelism is not None
    assert wider.parallelism.nodes > nodes
    # ... unless that quota is short of its nodes too.
    short = {"ml.g5.48xlarge": nodes - 1, "ml.g5.xlarge": wider.parallelism.nodes - 1}
    with pytest.raises(NoFeasiblePlanError) as caught:
        planned(doc, quotas(training=short))
    assert caught.value.rejected[TRAINING_QUOTA] > 0
    assert planned(doc, quotas(training={"ml.g5.48xlarge": nodes})).chosen == chosen


def test_unreadable_quotas_plan_as_before_under_the_allow_list_with_a_warning():
    doc = example(instance_allowlist=["ml.g6.xlarge", "ml.g6.2xlarge", "ml.c7i.xlarge"])
    before = planned(doc)
    unreadable = quotas(source="unreadable", note="AccessDeniedException: no servicequotas:ListServiceQuotas")
    after = planned(doc, unreadable)
    assert after.chosen == before.chosen
    assert after.selection.rejected == before.selection.rejected
    assert {after.chosen.training_instance, after.chosen.serving_instance} <= {
        "ml.g6.xlarge",
        "ml.g6.2xlarge",
        "ml.c7i.xlarge",
    }
    assert any("service quotas unreadable" in w and "AccessDeniedException" in w for w in after.context.warnings)


def test_apply_quotas_leaves_the_problem_it_was_given_alone():
    spec = validate_spec_document(example(spot="off"))
    table = snapshot_price_table(spec.constraints.region, CATALOG)
    problem, _, _, _ = build_problem(spec, table, CATALOG)
    training = [list(row) for row in problem.training]
    serving = [list(row) for row in problem.serving]
    every = {t: 0 for t in problem.instance_types}
    warnings: list[str] = []
    changed = apply_quotas(problem, quotas(training=every, endpoint=every), spec, warnings)
    assert problem.training == training and problem.serving == serving
    reasons = {o[4] for row in changed.training for o in row}
    assert reasons - {None} and None not in reasons
    assert {o[4] for row in changed.serving for o in row} <= {SERVING_QUOTA, *{o[4] for row in serving for o in row}}
    assert len(warnings) == 2 and all("and " in w and "more" in w for w in warnings)  # long lists are cut


def test_the_price_table_keeps_the_quotas_and_its_ref_summarises_them():
    base = snapshot_price_table("us-east-1", CATALOG)
    assert (base.to_ref(POINTER).quotas, base.to_ref(POINTER).zero_quota_types) == (None, 0)
    limits = quotas(training={"ml.g5.xlarge": 0, "ml.g6.xlarge": 4}, endpoint={"ml.g5.xlarge": 0, "ml.c7i.large": 0})
    table = base.model_copy(update={"quotas": limits})
    ref = table.to_ref(POINTER)
    assert (ref.quotas, ref.zero_quota_types) == ("live", 2)
    assert PriceTable.model_validate_json(table.model_dump_json()) == table
    ref.to_state()  # within PriceTableRef's size budget
    unreadable = base.model_copy(update={"quotas": quotas(source="unreadable")}).to_ref(POINTER)
    assert (unreadable.quotas, unreadable.zero_quota_types) == ("unreadable", 0)
