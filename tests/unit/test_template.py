"""template.yaml: storage hardening, the trigger, least privilege, defaults; and the resolver the embedded
stack builds from it."""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest

from stratos_cli.local.template import (
    Resolver,
    TemplateError,
    load_template,
    parameter_values,
    substitute_definition,
)
from tests.conftest import REPO

T = load_template(REPO / "template.yaml")
R: dict[str, Any] = T["Resources"]


def _of_type(kind: str) -> dict[str, Any]:
    return {k: v for k, v in R.items() if v["Type"] == kind}


@pytest.mark.parametrize("bucket", ["SpecsBucket", "ArtifactsBucket"])
def test_buckets_encrypted_private_and_tls_only(bucket):
    props = R[bucket]["Properties"]
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert all(props["PublicAccessBlockConfiguration"].values()) and len(props["PublicAccessBlockConfiguration"]) == 4
    [policy] = [p for p in _of_type("AWS::S3::BucketPolicy").values() if p["Properties"]["Bucket"] == {"Ref": bucket}]
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_specs_bucket_is_versioned_and_notifies_eventbridge():
    props = R["SpecsBucket"]["Properties"]
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    assert props["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True


def test_rule_starts_the_state_machine_on_object_created_under_specs_only():
    events = R["DistillationStateMachine"]["Properties"]["Events"]
    [rule] = events.values()
    pattern = rule["Properties"]["Pattern"]
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": "SpecsBucket"}]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "specs/"}]
    assert rule["Properties"]["DeadLetterConfig"]["Type"] == "SQS"


def test_nothing_the_pipeline_writes_is_under_the_specs_bucket():
    text = (REPO / "template.yaml").read_text(encoding="utf-8")
    for name, fn in _of_type("AWS::Serverless::Function").items():
        for statement in fn["Properties"].get("Policies", [{}])[0].get("Statement", []):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if any(a in ("s3:PutObject", "s3:DeleteObject") for a in actions):
                assert "SpecsBucket" not in json.dumps(statement["Resource"]), name
    assert "SpecsBucket.Arn}/runs" not in text


def test_table_has_point_in_time_recovery_and_the_index_the_code_queries():
    props = R["RunsTable"]["Properties"]
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    from stratos.aws.records import KIND_INDEX

    assert [i["IndexName"] for i in props["GlobalSecondaryIndexes"]] == [KIND_INDEX]


def _statements() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, role in _of_type("AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            out += [(name, s) for s in policy["PolicyDocument"]["Statement"]]
    for name, fn in _of_type("AWS::Serverless::Function").items():
        for policy in fn["Properties"].get("Policies", []):
            out += [(name, s) for s in policy["Statement"]]
    return out


def test_least_privilege_no_wildcard_actions():
    statements = _statements()
    assert statements
    for name, s in statements:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        assert all("*" not in a for a in actions), (name, actions)
        if s.get("Resource") == "*":  # only actions that have no resource-level permissions
            assert set(actions) <= {
                "pricing:GetProducts",
                "ecr:GetAuthorizationToken",
                "cloudwatch:PutMetricData",
                "logs:CreateLogDelivery",
                "logs:DeleteLogDelivery",
                "logs:DescribeLogGroups",
                "logs:DescribeResourcePolicies",
                "logs:GetLogDelivery",
                "logs:ListLogDeliveries",
                "logs:PutResourcePolicy",
                "logs:UpdateLogDelivery",
            }, (name, actions)
    passes = [s for _, s in statements if s["Action"] == "iam:PassRole"]
    assert passes and all(
        s["Condition"]["StringEquals"]["iam:PassedToService"] == "sagemaker.amazonaws.com" for s in passes
    )


def test_functions_share_one_code_uri_and_their_handlers_exist():
    assert T["Globals"]["Function"]["CodeUri"] == "functions/lambda/"
    assert T["Globals"]["Function"]["Runtime"] == "python3.11"
    for name, fn in _of_type("AWS::Serverless::Function").items():
        assert "CodeUri" not in fn["Properties"], name
        module, func = fn["Properties"]["Handler"].rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), func)), name


def test_parameters_and_defaults():
    params = T["Parameters"]
    assert {"TrainingImageUri", "InstanceAllowList", "RedistillScheduleEnabled"} <= set(params)
    assert params["RedistillScheduleEnabled"]["Default"] == "false"
    assert params["InstanceAllowList"]["Type"] == "CommaDelimitedList"
    schedule = R["RedistillSchedule"]["Properties"]
    assert schedule["State"] == {"Fn::If": ["ScheduleOn", "ENABLED", "DISABLED"]}
    assert '"kind": "stratos.redistill-sweep"' in schedule["Target"]["Input"]["Fn::Sub"]
    assert {"SpecsBucketName", "StateMachineArn", "RunsTableName"} <= set(T["Outputs"])


def test_schedule_input_parses_as_the_sweep_event():
    from stratos.events import parse_sweep_event

    text = R["RedistillSchedule"]["Properties"]["Target"]["Input"]["Fn::Sub"].replace("${RedistillMaxRuns}", "10")
    filled = text.replace("<aws.scheduler.scheduled-time>", "2026-11-30T03:00:00Z")
    event = parse_sweep_event(json.loads(filled))
    assert event.max_runs == 10 and not event.dry_run


def _resolver(**overrides: str) -> Resolver:
    values = parameter_values(T, {"TrainingImageUri": "img", "InferenceImageUri": "img2", **overrides})
    refs = {k: f"phys-{k}" for k in R}
    attrs = {f"{k}.Arn": f"arn:{k}" for k in R}
    return Resolver(
        T,
        values,
        refs,
        attrs,
        {"AWS::Region": "eu-west-1", "AWS::AccountId": "1", "AWS::Partition": "aws", "AWS::StackName": "st"},
    )


def test_resolver_evaluates_the_template_intrinsics():
    res = _resolver()
    env = res.resolve(T["Globals"]["Function"]["Environment"]["Variables"])
    assert env["STRATOS_SPECS_BUCKET"] == "phys-SpecsBucket"
    assert env["STRATOS_MODELS_S3_URI"] == "s3://phys-ArtifactsBucket/models/"
    assert env["STRATOS_INSTANCE_ALLOWLIST"] == ""
    assert res.condition("ScheduleOn") is False and res.condition("HasAllowList") is False
    res2 = _resolver(InstanceAllowList="ml.g5.xlarge,ml.g6.xlarge", RedistillScheduleEnabled="true")
    assert res2.resolve(T["Globals"]["Function"]["Environment"]["Variables"])["STRATOS_INSTANCE_ALLOWLIST"] == (
        "ml.g5.xlarge,ml.g6.xlarge"
    )
    assert res2.resolve(R["RedistillSchedule"]["Properties"]["State"]) == "ENABLED"
    role = res.resolve(R["StateMachineRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"])
    start = next(s for s in role if s["Sid"] == "StartTraining")
    assert "Condition" not in start  # AWS::NoValue removed without an allow-list
    role2 = res2.resolve(R["StateMachineRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"])
    start2 = next(s for s in role2 if s["Sid"] == "StartTraining")
    assert start2["Condition"]["ForAllValues:StringEquals"]["sagemaker:InstanceTypes"] == [
        "ml.g5.xlarge",
        "ml.g6.xlarge",
    ]


def test_resolver_refuses_what_it_cannot_resolve():
    with pytest.raises(TemplateError, match="NoSuchThing"):
        _resolver().resolve({"Ref": "NoSuchThing"})
    with pytest.raises(TemplateError, match="Fn::ImportValue"):
        _resolver().resolve({"Fn::ImportValue": "x"})
    with pytest.raises(TemplateError, match="has no default"):
        parameter_values(T, {})
    with pytest.raises(TemplateError, match="Missing"):
        substitute_definition('{"a": "${Missing}"}', {})
