"""Live quotas through the real state machine: LookUpPrices reads the embedded account's SageMaker quotas (Service
Quotas API, served by :mod:`stratos_cli.local.moto_hooks.servicequotas`) and SelectPlan excludes an instance type
whose quota is below what the plan needs, before any training job or endpoint is created; an account whose quotas
cannot be read plans as before (the allow-lists only)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from stratos.aws.quotas import quotas_from_listing
from stratos.planner.catalog import load_catalog
from stratos.planner.plan import PlanResult, plan
from stratos.planner.pricing import snapshot_price_table
from stratos.planner.quotas import SERVING_QUOTA, SPOT_TRAINING_QUOTA, TRAINING_QUOTA
from stratos.spec import validate_spec_document
from tests.doubles import Quotas
from tests.functional.conftest import Run, mahjong_spec
from tests.functional.test_pipeline import planned


def planned_with(spec_doc: dict[str, Any], listed: dict[str, float]) -> PlanResult:
    """The plan SelectPlan makes for ``spec_doc`` when the account lists ``listed`` (snapshot prices, as the
    functional stacks use)."""
    spec = validate_spec_document(spec_doc)
    region = spec.constraints.region
    entries = [{"QuotaName": name, "Value": value} for name, value in listed.items()]
    quotas = quotas_from_listing(region, [], entries, fetched_at=datetime.now(UTC))
    table = snapshot_price_table(region, load_catalog()).model_copy(update={"quotas": quotas})
    return plan(spec, table)


def created_training_types(run: Run, execution_arn: str) -> list[str]:
    """The instance type of every CreateTrainingJob the execution scheduled (refused ones included)."""
    out = []
    for event in run.stack.history(execution_arn):
        details = event.get("taskScheduledEventDetails") or {}
        if details.get("resource", "").endswith("createTrainingJob"):
            out.append(json.loads(details["parameters"])["ResourceConfig"]["InstanceType"])
    return out


def state_output(run: Run, execution_arn: str, state: str) -> dict[str, Any]:
    [output] = [out for name, out, _ in run.outputs(execution_arn) if name == state]
    return output


def test_a_training_quota_of_0_removes_the_type_before_any_job(make_stack):
    spec = mahjong_spec()
    first = planned(spec).chosen.training_instance
    listed = {f"{first} for training job usage": 0, f"{first} for spot training job usage": 0}
    expected = planned_with(spec, listed).chosen
    assert expected.training_instance != first
    # The account would refuse the type at CreateTrainingJob too: only the plan keeps the run from trying.
    run = make_stack(quotas=Quotas(training={first}, listed=listed))
    described = run.upload_and_wait(spec)
    assert described["status"] == "SUCCEEDED", described
    arn = described["executionArn"]

    assert created_training_types(run, arn) == [expected.training_instance]
    visited = run.stack.visited(arn)
    assert "TrainingQuotaExceeded" not in visited and "FallBackToNextPlan" not in visited
    prices = state_output(run, arn, "LookUpPrices")["prices"]
    assert (prices["quotas"], prices["zero_quota_types"]) == ("live", 1)
    rejected = state_output(run, arn, "SelectPlan")["plan"]["rejected"]
    assert rejected.get(TRAINING_QUOTA, 0) + rejected.get(SPOT_TRAINING_QUOTA, 0) > 0
    [request] = run.sagemaker.training_requests
    assert request["ResourceConfig"]["InstanceType"] == expected.training_instance
    assert run.stack.hooks is not None and run.stack.hooks.quotas.requests  # ListServiceQuotas was asked


def test_an_endpoint_quota_of_0_removes_the_serving_type_before_any_endpoint(make_stack):
    spec = mahjong_spec()
    chosen = planned(spec).chosen.serving_instance
    listed = {f"{chosen} for endpoint usage": 0}
    expected = planned_with(spec, listed).chosen
    assert expected.serving_instance != chosen
    run = make_stack(quotas=Quotas(endpoint={chosen}, listed=listed))
    described = run.upload_and_wait(spec)
    assert described["status"] == "SUCCEEDED", described
    arn = described["executionArn"]

    visited = run.stack.visited(arn)
    assert "ServingQuotaExceeded" not in visited and "FallBackToNextPlan" not in visited
    assert state_output(run, arn, "SelectPlan")["plan"]["rejected"][SERVING_QUOTA] > 0
    sm = run.stack.client("sagemaker")
    served = {
        variant["InstanceType"]
        for config in sm.list_endpoint_configs()["EndpointConfigs"]
        for variant in sm.describe_endpoint_config(EndpointConfigName=config["EndpointConfigName"])[
            "ProductionVariants"
        ]
    }
    assert served == {expected.serving_instance}


def test_unreadable_quotas_plan_with_the_allow_list_and_never_fail_the_run(make_stack):
    spec = mahjong_spec()
    allowed = ("ml.g6.xlarge", "ml.g6.2xlarge", "ml.c7i.xlarge")
    expected = planned(
        spec, unavailable=tuple(t.instance_type for t in load_catalog().instances if t.instance_type not in allowed)
    ).chosen
    run = make_stack(quotas=Quotas(readable=False), InstanceAllowList=",".join(allowed))
    described = run.upload_and_wait(spec)
    assert described["status"] == "SUCCEEDED", described
    arn = described["executionArn"]
    prices = state_output(run, arn, "LookUpPrices")["prices"]
    assert (prices["quotas"], prices["zero_quota_types"]) == ("unreadable", 0)
    [request] = run.sagemaker.training_requests
    assert request["ResourceConfig"]["InstanceType"] == expected.training_instance in allowed
