"""External teachers through the real state machine and template: the training role may invoke the listed Bedrock
models and teacher endpoints only; a teacher the stack may not call, or an endpoint that is not serving, fails
the run at ValidateSpec before any job; an allowed one reaches CreateTrainingJob as its source, without a teacher
channel."""

from __future__ import annotations

import json
from typing import Any

from tests.functional.conftest import Run, mahjong_spec
from tests.functional.test_spot import _created

NOVA_LITE = {"kind": "bedrock", "model_id": "amazon.nova-lite-v1:0"}
TEACHER_ENDPOINT = {"kind": "sagemaker-endpoint", "endpoint_name": "gemma-teacher", "serves": "gemma-3-270m"}


def _policies(run: Run, logical: str) -> list[dict[str, Any]]:
    """The statements of ``logical``'s inline policies (a role's ``Policies`` or a function's), resolved with the
    stack's parameters as CloudFormation would."""
    resolver = run.stack._resolver()
    props = run.stack.template["Resources"][logical]["Properties"]
    statements: list[dict[str, Any]] = []
    for policy in resolver.resolve(props.get("Policies", [])):
        if isinstance(policy, dict):
            doc = policy.get("PolicyDocument", policy)
            statements += doc.get("Statement", [])
    return statements


def _teacher_spec(*teachers: dict[str, Any]) -> dict[str, Any]:
    spec = mahjong_spec()
    spec["distillation"]["mode"] = "injection"
    spec["candidates"] = {"external_teachers": list(teachers), "students": ["smollm2-135m-instruct-l15"]}
    return spec


def test_the_training_role_invokes_the_listed_teachers_only(make_stack):
    run = make_stack(
        BedrockTeacherModelIds="amazon.nova-lite-v1:0,meta.llama3-1-8b-instruct-v1:0",
        TeacherEndpointNames="gemma-teacher",
    )
    statements = {s.get("Sid"): s for s in _policies(run, "SageMakerExecutionRole")}
    bedrock = statements["InvokeBedrockTeachers"]
    assert bedrock["Action"] == "bedrock:InvokeModel"
    assert bedrock["Resource"] == [
        "arn:aws:bedrock:*::foundation-model/amazon.nova-lite-v1:0",
        "arn:aws:bedrock:*::foundation-model/meta.llama3-1-8b-instruct-v1:0",
    ]
    endpoints = statements["InvokeTeacherEndpoints"]
    assert endpoints["Resource"] == ["arn:aws:sagemaker:*:*:endpoint/gemma-teacher"]
    validate = [s for s in _policies(run, "ValidateSpecFunction") if s.get("Action") == "sagemaker:DescribeEndpoint"]
    assert [s["Resource"] for s in validate] == [["arn:aws:sagemaker:*:*:endpoint/gemma-teacher"]]


def test_without_listed_teachers_no_role_may_call_bedrock_or_a_teacher_endpoint(make_stack):
    run = make_stack()
    for logical, resource in run.stack.template["Resources"].items():
        if resource["Type"] not in ("AWS::IAM::Role", "AWS::Serverless::Function"):
            continue
        for statement in _policies(run, logical):
            actions = statement.get("Action")
            actions = [actions] if isinstance(actions, str) else actions or []
            assert not any(a.startswith("bedrock:") for a in actions), logical
            assert statement.get("Sid") != "InvokeTeacherEndpoints", logical


def test_a_teacher_the_stack_may_not_call_fails_validation_before_any_job(make_stack):
    run = make_stack(BedrockTeacherModelIds="amazon.nova-micro-v1:0")
    described = run.upload_and_wait(_teacher_spec(NOVA_LITE))
    assert (described["status"], described["error"]) == ("FAILED", "SpecValidationError")
    assert "candidates.external_teachers[0].model_id" in described["cause"]
    assert "BedrockTeacherModelIds: amazon.nova-micro-v1:0" in described["cause"]
    assert _created(run, described["executionArn"]) == []


def test_an_endpoint_teacher_that_is_not_serving_fails_validation_with_its_name(make_stack):
    run = make_stack(TeacherEndpointNames="gemma-teacher")
    described = run.upload_and_wait(_teacher_spec(TEACHER_ENDPOINT))
    assert (described["status"], described["error"]) == ("FAILED", "SpecValidationError")
    assert "candidates.external_teachers[0].endpoint_name" in described["cause"]
    assert "no such endpoint in this region" in described["cause"]
    visited = run.stack.visited(described["executionArn"])
    assert "LookUpPrices" not in visited and _created(run, described["executionArn"]) == []


def test_an_allowed_bedrock_teacher_reaches_the_training_job_as_its_source(make_stack):
    run = make_stack(BedrockTeacherModelIds="amazon.nova-lite-v1:0")
    described = run.upload_and_wait(_teacher_spec(NOVA_LITE))
    assert described["status"] == "SUCCEEDED", described
    [job] = _created(run, described["executionArn"])
    hp = job["HyperParameters"]
    assert hp["teacher"] == "bedrock:amazon.nova-lite-v1:0" and hp["teacher_rationales"] == "true"
    assert float(hp["teacher_usd_per_1k_input"]) == 0.00006
    assert [c["ChannelName"] for c in job["InputDataConfig"]] == ["student"]
    assert json.loads(hp["parallelism"])["teacher_placement"] == "external"
    tags = {t["Key"]: t["Value"] for t in job["Tags"]}
    assert tags["stratos:teacher"] == "bedrock:amazon.nova-lite-v1:0"


def test_candidates_the_planner_does_not_know_fail_validation_before_prices_are_read(make_stack):
    run = make_stack(BedrockTeacherModelIds="amazon.nova-lite-v1:0")
    spec = _teacher_spec(NOVA_LITE)
    spec["candidates"]["students"] = ["no-such-student"]
    spec["candidates"]["external_teachers"].append({**TEACHER_ENDPOINT, "serves": "no-such-model"})
    described = run.upload_and_wait(spec)
    assert (described["status"], described["error"]) == ("FAILED", "SpecValidationError")
    assert (
        "candidates.students[0]" in described["cause"]
        and "candidates.external_teachers[1].serves" in described["cause"]
    )
    visited = run.stack.visited(described["executionArn"])
    assert "LookUpPrices" not in visited and _created(run, described["executionArn"]) == []
