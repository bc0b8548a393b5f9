"""Guards on the moto internals stratos_cli.local hooks into: if moto changes any of them, these fail loudly and
name the hook to re-check (moto is pinned ==5.2.5 in pyproject)."""

from __future__ import annotations

import importlib.metadata
import inspect

import pytest

from stratos_cli.local import moto_hooks
from stratos_cli.local.moto_hooks import PINNED_MOTO_VERSION, check_moto, normalise_s3_event, signature_of
from tests.conftest import REPO

pytest.importorskip("moto")


def test_moto_is_the_pinned_version():
    assert importlib.metadata.version("moto") == PINNED_MOTO_VERSION
    check_moto()
    assert f"=={PINNED_MOTO_VERSION}" in (REPO / "pyproject.toml").read_text(encoding="utf-8")


def test_lambda_simple_backend_invoke_shape():
    from moto.awslambda.models import LambdaBackend
    from moto.awslambda_simple.models import LambdaSimpleBackend

    assert signature_of(LambdaSimpleBackend.invoke) == [
        "self", "function_name", "qualifier", "body", "headers", "response_headers",
    ]  # fmt: skip
    assert signature_of(LambdaBackend.get_function)[:3] == ["self", "function_name_or_arn", "qualifier"]


def test_events_rule_delivery_shape():
    from moto.awslambda.utils import get_backend
    from moto.events.models import EventPattern, Rule

    assert signature_of(get_backend) == ["account_id", "region"]  # the Lambda backend use_docker selects

    assert signature_of(Rule.send_to_targets) == ["self", "original_event", "transform_input"]
    assert "matches_event" in vars(EventPattern)
    source = inspect.getsource(Rule.send_to_targets)
    # moto still cannot deliver to Step Functions (else the hook would start executions twice).
    assert ":states:" not in source and 'arn.service == "states"' not in source
    assert "NotImplementedError" in source


def test_s3_eventbridge_events_still_need_normalising():
    from moto.s3 import notifications

    source = inspect.getsource(notifications._send_event_bridge_message)
    assert '"eTag"' in source and "key.name" in source  # moto sends eTag and the raw key
    event = {"source": "aws.s3", "detail": {"object": {"key": "specs/a b+c.json", "eTag": "e"}}}
    normal = normalise_s3_event(event)
    assert normal["detail"]["object"] == {"key": "specs/a+b%2Bc.json", "etag": "e"}
    from stratos.events import identity_from_s3_event

    full = {
        "version": "0", "id": "1", "detail-type": "Object Created", "source": "aws.s3", "account": "1",
        "time": "2026-01-01T00:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"version": "0", "bucket": {"name": "bucket"}, "object": {"key": "specs/a b+c.json", "eTag": "e",
                   "size": 1, "version-id": "v"}, "request-id": "r", "requester": "x", "reason": "PutObject"},
    }  # fmt: skip
    assert identity_from_s3_event(normalise_s3_event(full)).key == "specs/a b+c.json"


def test_sagemaker_backend_shape():
    from moto.sagemaker import models
    from moto.sagemaker.responses import SageMakerResponse

    backend = models.SageMakerModelBackend
    params = signature_of(backend.create_training_job)
    assert params[:2] == ["self", "training_job_name"]
    assert {"resource_config", "hyper_parameters", "input_data_config", "output_data_config"} <= set(params)
    assert signature_of(backend.describe_training_job) == ["self", "training_job_name"]
    assert signature_of(backend.create_endpoint) == ["self", "endpoint_name", "endpoint_config_name", "tags"]
    assert signature_of(backend.describe_endpoint) == ["self", "endpoint_name"]
    assert signature_of(backend.create_model)[:2] == ["self", "model_name"]
    assert signature_of(backend.create_endpoint_config)[:2] == ["self", "endpoint_config_name"]
    assert signature_of(models.FakeEndpointConfig.validate_instance_type) == ["self", "instance_type"]
    # What moto still lacks (if it gains these, re-check SimulatedSageMaker rather than shadowing them).
    assert not hasattr(backend, "update_endpoint") and not hasattr(backend, "stop_training_job")
    assert not hasattr(SageMakerResponse, "update_endpoint")
    init = inspect.getsource(backend.__init__)
    for attribute in ("training_jobs", "endpoints", "endpoint_configs", "_models"):
        assert f"self.{attribute}" in init, attribute
    training = inspect.getsource(models.FakeTrainingJob.__init__)
    assert 'self.training_job_status = "Completed"' in training  # why the runner drives the status


def test_sdk_error_names_and_dynamodb_writes_shape():
    from moto.dynamodb.models import DynamoDBBackend
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_aws_sdk as sdk,
    )

    assert isinstance(sdk._SERVICE_ERROR_NAMES, dict) and "sagemaker" not in sdk._SERVICE_ERROR_NAMES
    assert "_SERVICE_ERROR_NAMES" in inspect.getsource(sdk.StateTaskServiceAwsSdk._normalise_service_error_name)
    for name in ("put_item", "update_item", "delete_item"):
        assert callable(getattr(DynamoDBBackend, name))


def test_parser_backend_start_execution_shape():
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    assert signature_of(StepFunctionsParserBackend.start_execution)[:4] == [
        "self", "state_machine_arn", "name", "execution_input",
    ]  # fmt: skip


def test_hooks_are_undone_on_exit():
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.events.models import Rule
    from moto.sagemaker.models import SageMakerModelBackend

    from tests.doubles import ScriptedTrainingRunner

    before = (LambdaSimpleBackend.invoke, Rule.send_to_targets, SageMakerModelBackend.create_training_job)
    with moto_hooks.installed(ScriptedTrainingRunner(lambda b, k, d: None)):
        assert LambdaSimpleBackend.invoke is not before[0]
        assert hasattr(SageMakerModelBackend, "update_endpoint")
    assert (LambdaSimpleBackend.invoke, Rule.send_to_targets, SageMakerModelBackend.create_training_job) == before
    assert not hasattr(SageMakerModelBackend, "update_endpoint")


def test_hooks_are_undone_when_the_body_raises():
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse

    from tests.doubles import ScriptedTrainingRunner

    with pytest.raises(RuntimeError, match="boom"), moto_hooks.installed(ScriptedTrainingRunner(lambda b, k, d: None)):
        assert hasattr(SageMakerResponse, "stop_training_job")
        raise RuntimeError("boom")
    assert not hasattr(SageMakerModelBackend, "update_endpoint")
    assert not hasattr(SageMakerResponse, "update_endpoint") and not hasattr(SageMakerResponse, "stop_training_job")
