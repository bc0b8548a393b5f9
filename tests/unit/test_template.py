"""template.yaml: storage hardening, the trigger, least privilege, ownership tags in IAM, the split SageMaker
roles, lifecycle, logs, the dead-letter alarm, KMS and network isolation; and the resolver the embedded stack
builds from it.

moto does not evaluate IAM conditions, so ownership is tested here, on the template: each rule is a function
returning its violations, run on the template (none) and on mutated copies (some), so that the rule can fail."""

from __future__ import annotations

import copy
import fnmatch
import importlib
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from stratos_cli.local.stack import StackLayout
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
    assert rule["Properties"]["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}


def test_nothing_the_pipeline_writes_is_under_the_specs_bucket():
    text = (REPO / "template.yaml").read_text(encoding="utf-8")
    for case in CASES:
        for name, statement in _statements(**case):
            if any(a in ("s3:PutObject", "s3:DeleteObject") for a in _actions(statement)):
                assert "SpecsBucket" not in json.dumps(statement["Resource"]), name
    assert "SpecsBucket.Arn}/runs" not in text


def test_table_has_point_in_time_recovery_and_the_index_the_code_queries():
    props = R["RunsTable"]["Properties"]
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    from stratos.aws.records import KIND_INDEX

    assert [i["IndexName"] for i in props["GlobalSecondaryIndexes"]] == [KIND_INDEX]


STACK = "stk"
KEY_ARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
TOPIC_ARN = "arn:aws:sns:eu-west-1:111122223333:stratos-alarms"
#: The rules SAM generates from the EventBridgeRule events (<owner logical id><event name>).
GENERATED_RULES = ["DistillationStateMachineSpecUploaded", "RecordAbandonedFunctionExecutionEnded"]
#: Parameter values the IAM rules are checked under: both branches of every condition the policies use.
CASES: list[dict[str, str]] = [
    {},
    {"InstanceAllowList": "ml.g5.xlarge,ml.c7i.xlarge", "KmsKeyArn": KEY_ARN, "DataBucketName": "data"},
]


def _resolver(template: dict[str, Any] | None = None, **overrides: str) -> Resolver:
    template = T if template is None else template
    values = parameter_values(template, {"TrainingImageUri": "img", "InferenceImageUri": "img2", **overrides})
    names = [*template["Resources"], *GENERATED_RULES]
    refs = {k: f"phys-{k}" for k in names}
    attrs = {f"{k}.{a}": f"{a.lower()}:{k}" for k in names for a in ("Arn", "QueueName")}
    pseudo = {"AWS::Region": "eu-west-1", "AWS::AccountId": "1", "AWS::Partition": "aws", "AWS::StackName": STACK}
    return Resolver(template, values, refs, attrs, pseudo)


def _statements(template: dict[str, Any] | None = None, **overrides: str) -> list[tuple[str, dict[str, Any]]]:
    """``(owner logical id, statement)`` of every IAM policy statement: explicit roles, managed policies and the
    functions' inline ``Policies``, with the intrinsics resolved under the parameter ``overrides``."""
    template = T if template is None else template
    res = _resolver(template, **overrides)
    out = []
    for name, resource in template["Resources"].items():
        if "Condition" in resource and not res.condition(resource["Condition"]):
            continue
        props = res.resolve(resource.get("Properties") or {})
        if resource["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                out += [(name, s) for s in policy["PolicyDocument"]["Statement"]]
        elif resource["Type"] == "AWS::IAM::ManagedPolicy":
            out += [(name, s) for s in props["PolicyDocument"]["Statement"]]
        elif resource["Type"] == "AWS::Serverless::Function":
            for policy in props.get("Policies", []):
                if isinstance(policy, dict):  # a managed policy (a Ref) is listed under its own resource
                    out += [(name, s) for s in policy["Statement"]]
    return out


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def _resources(statement: dict[str, Any]) -> list[str]:
    resource = statement["Resource"]
    return resource if isinstance(resource, list) else [resource]


def _sagemaker(statement: dict[str, Any], verbs: tuple[str, ...]) -> list[str]:
    return [a for a in _actions(statement) if a.startswith(tuple(f"sagemaker:{v}" for v in verbs))]


def _condition(statement: dict[str, Any], operator: str, key: str) -> Any:
    return statement.get("Condition", {}).get(operator, {}).get(key)


def _owned(statement: dict[str, Any], key: str = "aws:ResourceTag") -> bool:
    return bool(_condition(statement, "StringEquals", f"{key}/stratos:managed-by") == STACK)


def _arn_kind(resource: str) -> str:
    """``endpoint-config`` of ``arn:aws:sagemaker:eu-west-1:1:endpoint-config/*``."""
    return resource.split(":", 5)[5].split("/", 1)[0]


def ownership_violations(template: dict[str, Any]) -> list[str]:
    """Why the template's SageMaker permissions would let the stack touch a resource it does not own.

    Create* needs the request tag ``stratos:managed-by=<stack>`` (CreateEndpoint, authorized on the config as
    well, needs the config to carry it); Update*/Delete*/Stop* need the resource to carry it, on every resource
    they are authorized on (UpdateEndpoint: the endpoint and the new config). AddTags is allowed only as part of
    a create (``sagemaker:TaggingAction``), or on a resource already carrying the tag without touching that
    tag: the stack can never claim a foreign resource by tagging it.
    """
    out = []
    for case in CASES:
        for name, s in _statements(template, **case):
            if s["Effect"] != "Allow":
                continue
            for action in _sagemaker(s, ("Update", "Delete", "Stop")):
                if not _owned(s):
                    out.append(f"{name}: {action} without aws:ResourceTag/stratos:managed-by")
            for action in _sagemaker(s, ("Create",)):
                if not _owned(s, "aws:RequestTag"):
                    out.append(f"{name}: {action} without aws:RequestTag/stratos:managed-by")
                configs = [r for r in _resources(s) if _arn_kind(r) == "endpoint-config"]
                if action == "sagemaker:CreateEndpoint" and configs and not _owned(s):
                    out.append(f"{name}: CreateEndpoint from a config the stack may not own")
            if "sagemaker:AddTags" in _actions(s):
                tagging = _condition(s, "StringEquals", "sagemaker:TaggingAction")
                on_create = bool(tagging) and all(
                    str(t).startswith("Create") for t in (tagging if isinstance(tagging, list) else [tagging])
                )
                keys = _condition(s, "ForAllValues:StringNotEquals", "aws:TagKeys") or []
                retag = _owned(s) and "stratos:managed-by" in keys
                if _actions(s) != ["sagemaker:AddTags"] or not (on_create or retag):
                    out.append(f"{name}: AddTags outside a create on a resource the stack may not own")
    return out


def _mutated(edit: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    template = copy.deepcopy(T)
    edit(template)
    return template


def _fn_statement(template: dict[str, Any], function: str, sid: str) -> dict[str, Any]:
    policies = template["Resources"][function]["Properties"]["Policies"]
    statements = [s for p in policies if isinstance(p, dict) and "Statement" in p for s in p["Statement"]]
    return next(s for s in statements if s.get("Sid") == sid)


def _role_statement(template: dict[str, Any], role: str, sid: str) -> dict[str, Any]:
    [policy] = template["Resources"][role]["Properties"]["Policies"]
    return next(s for s in policy["PolicyDocument"]["Statement"] if isinstance(s, dict) and s.get("Sid") == sid)


def test_every_sagemaker_change_is_limited_to_resources_the_stack_owns():
    assert ownership_violations(T) == []
    verbs = ("Create", "Update", "Delete", "AddTags")
    found = {a for case in CASES for _, s in _statements(**case) for a in _sagemaker(s, verbs)}
    assert found == {
        "sagemaker:CreateTrainingJob",
        "sagemaker:CreateModel",
        "sagemaker:CreateEndpointConfig",
        "sagemaker:CreateEndpoint",
        "sagemaker:UpdateEndpoint",
        "sagemaker:DeleteEndpoint",
        "sagemaker:DeleteEndpointConfig",
        "sagemaker:DeleteModel",
        "sagemaker:AddTags",
    }
    update_on = {
        _arn_kind(r)
        for _, s in _statements()
        if "sagemaker:UpdateEndpoint" in _actions(s) and _owned(s)
        for r in _resources(s)
    }
    assert update_on == {"endpoint", "endpoint-config"}


def _without(key: str, where: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[dict[str, Any]], Any]:
    return lambda template: where(template)["Condition"]["StringEquals"].pop(key)


MANAGED = "stratos:managed-by"


@pytest.mark.parametrize(
    "edit",
    [
        _without(f"aws:ResourceTag/{MANAGED}", lambda t: _fn_statement(t, "DeployFunction", "ChangeOwnEndpoints")),
        _without(f"aws:ResourceTag/{MANAGED}", lambda t: _fn_statement(t, "DeployFunction", "UpdateToOwnConfigs")),
        _without(
            f"aws:ResourceTag/{MANAGED}", lambda t: _fn_statement(t, "FinishDeploymentFunction", "DeleteOwnModels")
        ),
        _without(f"aws:RequestTag/{MANAGED}", lambda t: _fn_statement(t, "DeployFunction", "CreateModels")),
        _without(f"aws:RequestTag/{MANAGED}", lambda t: _role_statement(t, "StateMachineRole", "StartTraining")),
        _without(
            f"aws:ResourceTag/{MANAGED}", lambda t: _fn_statement(t, "DeployFunction", "CreateEndpointsFromOwnConfigs")
        ),
        _without(
            "sagemaker:TaggingAction", lambda t: _role_statement(t, "StateMachineRole", "TagTrainingJobsOnCreate")
        ),
        _without(f"aws:ResourceTag/{MANAGED}", lambda t: _fn_statement(t, "DeployFunction", "RetagOwnEndpoints")),
        lambda t: _fn_statement(t, "DeployFunction", "RetagOwnEndpoints")["Condition"].pop(
            "ForAllValues:StringNotEquals"
        ),
        lambda t: _fn_statement(t, "DeployFunction", "TagOnCreate").update(
            Action=["sagemaker:AddTags", "sagemaker:DeleteModel"]
        ),
        lambda t: _fn_statement(t, "DeployFunction", "TagOnCreate")["Condition"]["StringEquals"].update(
            {"sagemaker:TaggingAction": ["CreateModel", "AddTags"]}
        ),
    ],
)
def test_the_ownership_rule_catches_a_missing_condition(edit):
    assert ownership_violations(_mutated(edit))


def test_tag_conditions_keep_the_instance_allow_list():
    """Both keys in one Condition block (ANDed): the request tag and, with an allow-list, the instance types."""
    for owner, sid in (("StateMachineRole", "StartTraining"), ("DeployFunction", "CreateEndpointConfigs")):
        for case, allowed in ((CASES[0], None), (CASES[1], ["ml.g5.xlarge", "ml.c7i.xlarge"])):
            [s] = [s for name, s in _statements(**case) if name == owner and s.get("Sid") == sid]
            assert _owned(s, "aws:RequestTag")
            assert _condition(s, "ForAllValues:StringEquals", "sagemaker:InstanceTypes") == allowed


def test_least_privilege_no_wildcard_actions():
    statements = [s for case in CASES for s in _statements(**case)]
    assert statements
    for name, s in statements:
        actions = _actions(s)
        assert all("*" not in a for a in actions), (name, actions)
        if s.get("Resource") == "*":  # only actions that have no resource-level permissions
            assert set(actions) <= {
                "pricing:GetProducts",
                "servicequotas:ListServiceQuotas",
                "servicequotas:ListAWSDefaultServiceQuotas",
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


# ----------------------------------------------------------------------------------------------------------
# The two SageMaker roles.

ASL = json.loads((REPO / "statemachine" / "distillation.asl.json").read_text(encoding="utf-8"))
START = ASL["States"]["StartTrainingJob"]["Parameters"]
S3_WRITES = {"s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:PutObjectAcl", "s3:RestoreObject"}
MODEL_ARCHIVES = "arn:ArtifactsBucket/runs/*/training/*/output/model.tar.gz"


def _role(role: str, **overrides: str) -> list[dict[str, Any]]:
    return [s for name, s in _statements(**overrides) if name == role]


def _asl_key(parameter: str) -> str:
    """The S3 key an ASL ``States.Format('s3://${ArtifactsBucket}/...{}...', ...)`` builds (``{}`` filled in)."""
    [fmt] = re.findall(r"s3://\$\{ArtifactsBucket\}/([^']*)'", parameter)
    return str(fmt).replace("{}", "run-x1")


def serving_violations(template: dict[str, Any]) -> list[str]:
    """What the serving role may do in S3 beyond reading the training jobs' model archives."""
    out = []
    for case in CASES:
        for name, s in _statements(template, **case):
            s3 = {a for a in _actions(s) if a.startswith("s3:")}
            if name != "SageMakerServingRole" or not s3:
                continue
            if s3 != {"s3:GetObject"}:
                out.append(f"serving role: {sorted(s3)}")
            if _resources(s) != [MODEL_ARCHIVES]:
                out.append(f"serving role reads {_resources(s)}")
    return out


def test_serving_role_reads_only_the_model_archives():
    assert serving_violations(T) == []
    key = MODEL_ARCHIVES.removeprefix("arn:ArtifactsBucket/")
    # CreateModel's ModelDataUrl is the job's S3ModelArtifacts: <S3OutputPath>/<job>/output/model.tar.gz. The
    # container's output.tar.gz beside it (metrics, samples) is the evaluation gate's, not the endpoint's.
    output = _asl_key(START["OutputDataConfig"]["S3OutputPath.$"])
    assert fnmatch.fnmatchcase(f"{output}/job-a1/output/model.tar.gz", key)
    for other in (
        f"{output}/job-a1/output/output.tar.gz",
        "runs/run-x1/spec.json",
        _asl_key(START["CheckpointConfig"]["S3Uri.$"]) + "/model-cache/model.safetensors",
        "models/smollm2-135m-instruct/config.json",
        "data/words/train.jsonl",
    ):
        assert not fnmatch.fnmatchcase(other, key), other


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: _role_statement(t, "SageMakerServingRole", "ReadModelArchives").update(
            Action=["s3:GetObject", "s3:PutObject"]
        ),
        lambda t: _role_statement(t, "SageMakerServingRole", "ReadModelArchives").update(
            Resource={"Fn::Sub": "${ArtifactsBucket.Arn}/runs/*"}
        ),
    ],
)
def test_the_serving_rule_catches_a_wider_role(edit):
    assert serving_violations(_mutated(edit))


def test_training_role_writes_only_run_outputs_and_checkpoints():
    allowed = {"arn:ArtifactsBucket/runs/*", "arn:ArtifactsBucket/checkpoints/*"}
    for case in CASES:
        writes = [s for s in _role("SageMakerExecutionRole", **case) if set(_actions(s)) & S3_WRITES]
        assert writes and {r for s in writes for r in _resources(s)} == allowed
    # ... which is where the ASL sends the job's output and its checkpoints.
    for parameter in (START["OutputDataConfig"]["S3OutputPath.$"], START["CheckpointConfig"]["S3Uri.$"]):
        key = _asl_key(parameter) + "/x"
        assert any(fnmatch.fnmatchcase(key, a.removeprefix("arn:ArtifactsBucket/")) for a in allowed), key


def test_each_sagemaker_role_is_passed_only_by_the_step_that_uses_it():
    for case in CASES:
        passes = {name: s["Resource"] for name, s in _statements(**case) if "iam:PassRole" in _actions(s)}
        assert passes == {
            "StateMachineRole": "arn:SageMakerExecutionRole",  # CreateTrainingJob's RoleArn
            "DeployFunction": "arn:SageMakerServingRole",  # CreateModel's ExecutionRoleArn
        }
    env = T["Globals"]["Function"]["Environment"]["Variables"]
    assert env["STRATOS_SERVING_ROLE_ARN"] == {"Fn::GetAtt": ["SageMakerServingRole", "Arn"]}
    subs = R["DistillationStateMachine"]["Properties"]["DefinitionSubstitutions"]
    assert subs["TrainingRoleArn"] == {"Fn::GetAtt": ["SageMakerExecutionRole", "Arn"]}
    assert START["RoleArn"] == "${TrainingRoleArn}"


# ----------------------------------------------------------------------------------------------------------
# Buckets, logs, the dead-letter alarm.


def test_artifacts_bucket_is_versioned_and_expires_checkpoints_and_old_versions():
    props = R["ArtifactsBucket"]["Properties"]
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert all(r["Status"] == "Enabled" for r in rules.values())
    assert rules["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] > 0
    checkpoints = rules["expire-checkpoints"]
    assert checkpoints["ExpirationInDays"] == {"Ref": "CheckpointExpirationDays"}
    # Lifecycle prefixes have no wildcards: the ASL's checkpoints, and nothing else it writes, start with it.
    assert _asl_key(START["CheckpointConfig"]["S3Uri.$"]).startswith(checkpoints["Prefix"])
    assert not _asl_key(START["OutputDataConfig"]["S3OutputPath.$"]).startswith(checkpoints["Prefix"])
    noncurrent = rules["expire-noncurrent-versions"]
    assert noncurrent["NoncurrentVersionExpiration"]["NoncurrentDays"] == {"Ref": "NoncurrentVersionExpirationDays"}
    assert "Prefix" not in noncurrent
    for name in ("CheckpointExpirationDays", "NoncurrentVersionExpirationDays"):
        assert T["Parameters"][name]["Type"] == "Number" and T["Parameters"][name]["MinValue"] >= 1


#: CloudWatch Logs' retention periods, days (PutRetentionPolicy accepts no other).
CLOUDWATCH_RETENTION_DAYS = {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192}
CLOUDWATCH_RETENTION_DAYS |= {2557, 2922, 3288, 3653}


def test_every_function_and_the_state_machine_log_with_a_retention():
    groups = {json.dumps(g["Properties"]["LogGroupName"]): g for g in _of_type("AWS::Logs::LogGroup").values()}
    for fn in _of_type("AWS::Serverless::Function"):
        group = groups.get(json.dumps({"Fn::Sub": f"/aws/lambda/${{{fn}}}"}))
        assert group, f"{fn} has no log group"
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, fn
    assert R["StateMachineLogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    param = T["Parameters"]["LogRetentionDays"]
    assert set(param["AllowedValues"]) == CLOUDWATCH_RETENTION_DAYS and param["Default"] in CLOUDWATCH_RETENTION_DAYS


def _async_functions() -> set[str]:
    """Functions invoked asynchronously (by an EventBridge rule or a schedule); the state machine's are sync."""
    ruled = {name for name, fn in _of_type("AWS::Serverless::Function").items() if fn["Properties"].get("Events")}
    schedules = _of_type("AWS::Scheduler::Schedule").values()
    return ruled | {s["Properties"]["Target"]["Arn"]["Fn::GetAtt"][0] for s in schedules}


def test_every_asynchronous_failure_lands_in_the_dead_letter_queue_and_raises_the_alarm():
    dlq = {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert _async_functions() == {"RecordAbandonedFunction", "RedistillSweepFunction"}
    for name in _async_functions():  # .checkov.yaml skips CKV_AWS_116 (Lambda DLQ) for the synchronous ones
        assert R[name]["Properties"]["DeadLetterQueue"] == {"Type": "SQS", "TargetArn": dlq}, name
    rules = {
        f"{owner}{event_name}": event
        for owner, resource in R.items()
        for event_name, event in (resource.get("Properties") or {}).get("Events", {}).items()
    }
    assert sorted(rules) == sorted(GENERATED_RULES)
    assert all(
        e["Type"] == "EventBridgeRule" and e["Properties"]["DeadLetterConfig"] == {"Arn": dlq} for e in rules.values()
    )
    for schedule in _of_type("AWS::Scheduler::Schedule").values():
        assert schedule["Properties"]["Target"]["DeadLetterConfig"] == {"Arn": dlq}
    # EventBridge may send to the queue from those rules only; the schedule sends as the Scheduler role.
    [allow] = [
        s for s in R["DeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"
    ]
    assert allow["Condition"]["ArnEquals"]["aws:SourceArn"] == [{"Fn::GetAtt": [r, "Arn"]} for r in GENERATED_RULES]
    assert any(
        s["Action"] == "sqs:SendMessage" and s["Resource"] == "arn:DeadLetterQueue" for s in _role("SchedulerRole")
    )
    alarm = R["DeadLetterQueueAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"], alarm["EvaluationPeriods"]) == (
        "GreaterThanThreshold",
        0,
        1,
    )
    assert "AlarmActions" not in _resolver().resolve(alarm)
    assert _resolver(AlarmTopicArn=TOPIC_ARN).resolve(alarm)["AlarmActions"] == [TOPIC_ARN]


# ----------------------------------------------------------------------------------------------------------
# KMS and network isolation.


def _training_job(**parameters: str) -> dict[str, Any]:
    """StartTrainingJob's Parameters in the definition as deployed with ``parameters`` (the embedded stack's
    rendering: the same DefinitionSubstitutions)."""
    definition = json.loads(StackLayout(parameters=parameters).rendered_definition())
    params: dict[str, Any] = definition["States"]["StartTrainingJob"]["Parameters"]
    return params


def _string_to_json(expression: str) -> Any:
    match = re.fullmatch(r"States\.StringToJson\('(.*)'\)", expression)
    assert match, expression
    return json.loads(match.group(1))


def _kms_grants(**overrides: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, s in _statements(**overrides):
        if any(a.startswith("kms:") for a in _actions(s)):
            assert _resources(s) == [KEY_ARN], name
            out.setdefault(name, set()).update(_actions(s))
    return out


def test_kms_key_encrypts_the_buckets_and_the_training_output():
    for bucket in ("SpecsBucket", "ArtifactsBucket"):
        [rule] = R[bucket]["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert _resolver().resolve(rule) == {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
        assert _resolver(KmsKeyArn=KEY_ARN).resolve(rule) == {
            "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY_ARN},
            "BucketKeyEnabled": True,
        }
    assert _training_job()["OutputDataConfig"]["KmsKeyId"] == ""
    assert _training_job(KmsKeyArn=KEY_ARN)["OutputDataConfig"]["KmsKeyId"] == KEY_ARN
    # SageMaker refuses a VolumeKmsKeyId on instance types with local NVMe storage (every catalog GPU type).
    assert "VolumeKmsKeyId" not in _training_job(KmsKeyArn=KEY_ARN)["ResourceConfig"]
    pattern = T["Parameters"]["KmsKeyArn"]["AllowedPattern"]
    assert re.fullmatch(pattern, KEY_ARN) and re.fullmatch(pattern, "")
    assert not re.fullmatch(pattern, "alias/aws/s3")  # IAM statements need the key ARN


def test_every_role_that_touches_the_buckets_may_use_the_kms_key():
    assert _kms_grants() == {}
    granted = _kms_grants(KmsKeyArn=KEY_ARN)
    assert granted.pop("SageMakerExecutionRole") == {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"}
    assert granted.pop("SageMakerServingRole") == {"kms:Decrypt"}
    assert granted == {"KmsKeyUsePolicy": {"kms:Decrypt", "kms:GenerateDataKey"}}
    s3_users = {
        name
        for name, s in _statements(KmsKeyArn=KEY_ARN)
        if R[name]["Type"] == "AWS::Serverless::Function" and any(a.startswith("s3:") for a in _actions(s))
    }
    policy_users = {
        name
        for name, fn in _of_type("AWS::Serverless::Function").items()
        if "phys-KmsKeyUsePolicy" in _resolver(KmsKeyArn=KEY_ARN).resolve(fn["Properties"]["Policies"])
    }
    assert s3_users and policy_users == s3_users
    assert R["KmsKeyUsePolicy"]["Condition"] == "HasKmsKey"


def test_training_network_isolation_flows_to_the_training_job():
    param = T["Parameters"]["TrainingNetworkIsolation"]
    assert param["Default"] == "true" and set(param["AllowedValues"]) == {"true", "false"}
    assert _string_to_json(_training_job()["EnableNetworkIsolation.$"]) is True
    assert _string_to_json(_training_job(TrainingNetworkIsolation="false")["EnableNetworkIsolation.$"]) is False


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
    assert "ForAllValues:StringEquals" not in start["Condition"]  # AWS::NoValue removed without an allow-list
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
