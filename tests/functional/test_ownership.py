"""Stratos changes only the SageMaker resources its own stack made for the same task (issue: endpoint
takeover). Under the embedded AWS with the real ASL and handlers; moto does not evaluate IAM, so these test
the code's own checks (tests/unit/test_template.py checks the IAM tag conditions that back them on AWS)."""

from __future__ import annotations

import json
import time
from typing import Any

from stratos.events import RunRequest
from stratos.naming import SpecIdentity
from tests.functional.conftest import Run, mahjong_spec

ROLE = "arn:aws:iam::123456789012:role/someone-elses"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/fraud:7"


def _foreign_endpoint(run: Run, name: str, tags: list[dict[str, str]]) -> None:
    """An endpoint, config and model made outside this stack (by hand, or by another stack's tags)."""
    sm = run.stack.client("sagemaker")
    sm.create_model(
        ModelName="fraud-model-v7",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://fraud-models/v7/model.tar.gz"},
        Tags=tags,
    )
    variant = {"VariantName": "AllTraffic", "ModelName": "fraud-model-v7", "InstanceType": "ml.m5.large"}
    sm.create_endpoint_config(
        EndpointConfigName="fraud-config-v7", ProductionVariants=[{**variant, "InitialInstanceCount": 1}], Tags=tags
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName="fraud-config-v7", Tags=tags)


def _tags(run: Run, endpoint: str) -> dict[str, str]:
    sm = run.stack.client("sagemaker")
    arn = sm.describe_endpoint(EndpointName=endpoint)["EndpointArn"]
    return {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}


def _assert_untouched(run: Run, endpoint: str) -> None:
    sm = run.stack.client("sagemaker")
    assert sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"] == "fraud-config-v7"
    assert [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]] == ["fraud-config-v7"]
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["fraud-model-v7"]
    assert run.sagemaker.update_requests == []


def test_an_endpoint_made_outside_stratos_is_never_taken_over(make_stack):
    """The reported takeover: a valid spec naming someone's production endpoint fails at Deploy, naming the
    endpoint and its owner, before any model or config is created; the endpoint, its config and model stay."""
    run = make_stack()
    _foreign_endpoint(run, "prod-fraud-detector", [{"Key": "team", "Value": "fraud"}])
    described = run.upload_and_wait(mahjong_spec(**{"deployment.endpoint_name": "prod-fraud-detector"}))
    assert (described["status"], described["error"]) == ("FAILED", "EndpointOwnershipError")
    assert "endpoint prod-fraud-detector is not managed by Stratos" in described["cause"]
    assert "choose another deployment.endpoint_name" in described["cause"]
    _assert_untouched(run, "prod-fraud-detector")


def test_another_stacks_endpoint_is_refused_naming_that_stack(make_stack):
    run = make_stack()
    other = [{"Key": "stratos:managed-by", "Value": "stratos-prod"}, {"Key": "stratos:task-id", "Value": "fraud"}]
    _foreign_endpoint(run, "prod-fraud-detector", other)
    described = run.upload_and_wait(mahjong_spec(**{"deployment.endpoint_name": "prod-fraud-detector"}))
    assert (described["status"], described["error"]) == ("FAILED", "EndpointOwnershipError")
    assert "is stack 'stratos-prod', task 'fraud'" in described["cause"]
    _assert_untouched(run, "prod-fraud-detector")


def test_two_tasks_sharing_an_endpoint_name_need_an_explicit_takeover(make_stack):
    """Last writer no longer wins: task B's run fails naming task A; with ``replaces_tasks: [A]`` it deploys,
    blue/green, and the endpoint's tags then name task B."""
    run = make_stack()
    shared = {"deployment.endpoint_name": "shared-endpoint"}
    first = run.upload_and_wait(mahjong_spec(**shared, task_id="task-a"), key="specs/a.json")
    assert first["status"] == "SUCCEEDED", first
    before = run.endpoints()[0]["EndpointConfigName"]
    second = run.upload_and_wait(mahjong_spec(**shared, task_id="task-b"), key="specs/b.json")
    assert (second["status"], second["error"]) == ("FAILED", "EndpointOwnershipError")
    assert "endpoint shared-endpoint serves task 'task-a'" in second["cause"]
    assert "lists 'task-a' in deployment.replaces_tasks" in second["cause"]
    assert run.endpoints()[0]["EndpointConfigName"] == before and _tags(run, "shared-endpoint")["stratos:task-id"] == (
        "task-a"
    )
    takeover = mahjong_spec(
        **shared, task_id="task-b", **{"deployment.replaces_tasks": ["task-a"]}, description="takes over task-a"
    )
    third = run.upload_and_wait(takeover, key="specs/b.json")
    assert third["status"] == "SUCCEEDED", third
    assert run.endpoints()[0]["EndpointConfigName"] != before
    tags = _tags(run, "shared-endpoint")
    assert tags["stratos:task-id"] == "task-b" and tags["stratos:managed-by"] == "stratos"
    assert tags["stratos:run-id"] == json.loads(third["output"])["run"]["names"]["run_id"]


def test_a_late_run_of_an_older_spec_version_never_replaces_a_newer_deployment(make_stack):
    run = make_stack()
    stack = run.stack
    first = run.upload_and_wait(mahjong_spec(description="v1"))
    assert first["status"] == "SUCCEEDED", first
    v1: dict[str, Any] = json.loads(first["output"])["run"]["spec"]
    time.sleep(1.1)  # S3 LastModified has whole seconds: v2 must be visibly newer
    second = run.upload_and_wait(mahjong_spec(description="v2"))
    assert second["status"] == "SUCCEEDED", second
    serving = run.endpoints()[0]["EndpointConfigName"]
    # v1 finishing late (a re-run of that version): its student must not replace v2's.
    request = RunRequest(
        kind="stratos.run-request",
        spec=SpecIdentity.model_validate(v1).with_revision("force-1"),
        reason="late older run",
    )
    arn = stack.start(request.model_dump(mode="json"), "late-v1")
    late = stack.wait(arn)
    assert (late["status"], late["error"]) == ("FAILED", "DeploymentSupersededError")
    assert "from a newer version of task 'mahjong-winning-tiles'" in late["cause"]
    assert run.endpoints()[0]["EndpointConfigName"] == serving
    sm = stack.client("sagemaker")
    assert len(sm.list_endpoint_configs()["EndpointConfigs"]) == 1  # nothing left behind by the refused run
    # A re-run of the NEWEST version is as new as the deployment: it deploys.
    v2 = json.loads(second["output"])["run"]["spec"]
    again = RunRequest(
        kind="stratos.run-request", spec=SpecIdentity.model_validate(v2).with_revision("force-1"), reason="rerun"
    )
    rerun = stack.wait(stack.start(again.model_dump(mode="json"), "rerun-v2"))
    assert rerun["status"] == "SUCCEEDED", rerun


def test_cleanup_deletes_only_configs_and_models_this_stack_made(make_stack):
    """FinishDeployment's stale list can name a config this stack did not make (here: a Stratos config whose
    tags were stripped, standing in for one adopted from elsewhere): it is kept and listed, never deleted."""
    run = make_stack()
    first = run.upload_and_wait(mahjong_spec(description="v1"))
    assert first["status"] == "SUCCEEDED", first
    old = json.loads(first["output"])["deployment"]
    sm = run.stack.client("sagemaker")
    for arn in (
        sm.describe_endpoint_config(EndpointConfigName=old["endpoint_config_name"])["EndpointConfigArn"],
        sm.describe_model(ModelName=old["model_name"])["ModelArn"],
    ):
        sm.delete_tags(ResourceArn=arn, TagKeys=["stratos:managed-by"])
    second = run.upload_and_wait(mahjong_spec(description="v2"))
    assert second["status"] == "SUCCEEDED", second
    configs = {c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]}
    assert old["endpoint_config_name"] in configs and len(configs) == 2
    record = run.stack.run_record(json.loads(second["output"])["run"]["names"]["run_id"])
    assert record["deployment"]["deleted_configs"] == []
    assert record["deployment"]["kept_not_ours"] == [old["endpoint_config_name"]]
