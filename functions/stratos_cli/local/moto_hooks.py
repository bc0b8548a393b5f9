"""Version-pinned hooks into moto's internals that make the embedded AWS behave like AWS where Stratos needs it.

moto 5.2.5 executes Step Functions definitions but (a) never runs Lambda code without Docker, (b) does not
deliver EventBridge events to Step Functions, (c) finishes every training job at once and has no
UpdateEndpoint, no quotas and no "already exists" on SageMaker creates, (d) spells SDK-integration error
names with the lowercase service id (``sagemaker.X`` where Step Functions says ``SageMaker.X``), and (e)
checks DynamoDB conditions and writes in two steps, so concurrent conditional writes can both succeed.
Each hook below fixes one of these, touching as little as it can:

========================== ====================================================================
hook                       moto internal patched
========================== ====================================================================
:class:`InProcessLambdas`  ``moto.awslambda_simple.models.LambdaSimpleBackend.invoke``
:class:`RulesToExecutions` ``moto.events.models.Rule.send_to_targets``
:class:`SimulatedSageMaker` ``moto.sagemaker.models.SageMakerModelBackend`` (training jobs, models,
                           endpoint configs, endpoints; adds ``update_endpoint`` / ``stop_training_job``),
                           ``FakeEndpointConfig.validate_instance_type``, ``SageMakerResponse``
:class:`SdkErrorNames`     ``..state_task_service_aws_sdk._SERVICE_ERROR_NAMES``
:class:`AtomicDynamoDB`    ``moto.dynamodb.models.DynamoDBBackend.put_item`` / ``update_item``
========================== ====================================================================

:func:`check_moto` refuses any other moto version, and ``tests/unit/test_moto_hooks.py`` fails loudly when
a patched internal changes shape. Every hook is undone on exit.
"""

from __future__ import annotations

import importlib
import inspect
import json
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

from stratos_cli.local.training import TERMINAL, TrainingJobSpec, TrainingRunner

#: The moto version these hooks were written against (pyproject pins it).
PINNED_MOTO_VERSION = "5.2.5"


class MotoHookError(RuntimeError):
    """moto is not the version (or shape) the hooks were written for."""


def check_moto() -> None:
    """Raise :class:`MotoHookError` unless moto is exactly :data:`PINNED_MOTO_VERSION`."""
    import moto

    if moto.__version__ != PINNED_MOTO_VERSION:
        raise MotoHookError(
            f"stratos_cli.local hooks are written for moto {PINNED_MOTO_VERSION}, found {moto.__version__}: re-check "
            "every hook in stratos_cli/local/moto_hooks.py against the new moto, then update the pin"
        )


class _Patches:
    """setattr with undo."""

    def __init__(self) -> None:
        self._undo: list[tuple[Any, str, Any, bool]] = []

    def set(self, owner: Any, name: str, value: Any) -> None:
        had = name in vars(owner) if isinstance(owner, type) else hasattr(owner, name)
        self._undo.append((owner, name, getattr(owner, name, None), had))
        setattr(owner, name, value)

    def undo(self) -> None:
        for owner, name, old, had in reversed(self._undo):
            if had:
                setattr(owner, name, old)
            else:
                delattr(owner, name)
        self._undo.clear()


# --------------------------------------------------------------------------------------------------------
# Lambda: run the real handler in-process.


@dataclass
class FakeLambdaContext:
    """What a handler reads from its Lambda context (powertools' ``inject_lambda_context`` included)."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    timeout_ms: int = 300_000

    def get_remaining_time_in_millis(self) -> int:
        return self.timeout_ms


@dataclass(frozen=True)
class Invocation:
    """One handler call: function, handler path, event, and its result or error type."""

    function_name: str
    handler: str
    event: Any
    result: Any
    error_type: str | None


class InProcessLambdas:
    """Every Lambda invoke (Step Functions tasks, ``lambda:Invoke``) imports the function's ``Handler``
    (``module.function``, importable because ``functions/lambda/`` is on ``sys.path``) and calls it with the decoded
    payload. An exception becomes ``x-amz-function-error: Unhandled`` with ``{"errorType": <class name>,
    "errorMessage", "stackTrace"}``, exactly what Step Functions routes ``Catch``/``Retry`` on.
    """

    def __init__(self) -> None:
        self.invocations: list[Invocation] = []
        self._lock = threading.Lock()

    def install(self, patches: _Patches) -> None:
        from moto.awslambda_simple.models import LambdaSimpleBackend

        hook = self

        def invoke(
            self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
        ) -> bytes:
            fn = self.get_function(function_name, qualifier)
            return hook.call(
                fn.function_name, fn.function_arn, str(fn.handler), int(fn.timeout or 300), body, response_headers
            )

        patches.set(LambdaSimpleBackend, "invoke", invoke)

    def call(
        self, name: str, arn: str, handler: str, timeout_s: int, body: Any, response_headers: dict[str, str]
    ) -> bytes:
        """Run ``handler`` on ``body``; the bytes Lambda would return."""
        event = json.loads(body) if body else {}
        module_name, func_name = handler.rsplit(".", 1)
        context = FakeLambdaContext(name, arn, timeout_ms=timeout_s * 1000)
        try:
            func = getattr(importlib.import_module(module_name), func_name)
            result = func(event, context)
        except Exception as exc:
            response_headers["x-amz-function-error"] = "Unhandled"
            payload = {
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_exception(exc)[-4:],
            }
            self._record(Invocation(name, handler, event, None, type(exc).__name__))
            return json.dumps(payload).encode("utf-8")
        self._record(Invocation(name, handler, event, result, None))
        return json.dumps(result, default=str).encode("utf-8")

    def _record(self, invocation: Invocation) -> None:
        with self._lock:
            self.invocations.append(invocation)

    def of(self, handler_suffix: str) -> list[Invocation]:
        """The invocations of handlers whose path ends with ``handler_suffix``."""
        with self._lock:
            return [i for i in self.invocations if i.handler.endswith(handler_suffix)]


# --------------------------------------------------------------------------------------------------------
# EventBridge -> Step Functions.


def normalise_s3_event(event: dict[str, Any]) -> dict[str, Any]:
    """moto's S3 EventBridge events differ from AWS's: ``eTag`` (AWS: ``etag``) and a raw key (AWS
    URL-encodes it, form style). Return the event as AWS would send it."""
    detail = event.get("detail")
    if event.get("source") != "aws.s3" or not isinstance(detail, dict):
        return event
    obj = dict(detail.get("object") or {})
    if "eTag" not in obj:
        return event
    obj["etag"] = obj.pop("eTag")
    obj["key"] = quote_plus(str(obj.get("key", "")), safe="/")
    return {**event, "detail": {**detail, "object": obj}}


def _is_state_machine(arn: str) -> bool:
    return ":states:" in arn and ":stateMachine:" in arn


def _is_function(arn: str) -> bool:
    return ":lambda:" in arn and ":function:" in arn


class RulesToExecutions:
    """An EventBridge rule whose target is a state machine starts an execution (as EventBridge does, with
    a generated name), with the event as input; a Lambda target is invoked with the event; everything else
    moto delivers as before."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str, dict[str, Any], str]] = []
        self._lock = threading.RLock()

    def install(self, patches: _Patches) -> None:
        from moto.events.models import Rule

        original = Rule.send_to_targets
        hook = self

        def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
            # moto raises NotImplementedError for state-machine and Lambda targets: hand it only the others.
            ours = [t for t in self.targets if _is_state_machine(t["Arn"]) or _is_function(t["Arn"])]
            if not ours:
                original(self, original_event, transform_input)
                return
            with hook._lock:
                everything = self.targets
                self.targets = [t for t in everything if t not in ours]
                try:
                    if self.targets:
                        original(self, original_event, transform_input)
                finally:
                    self.targets = everything
            if self.state != "ENABLED" or not self.event_pattern.matches_event(original_event):
                return
            event = normalise_s3_event(dict(original_event))
            for target in ours:
                if _is_state_machine(target["Arn"]):
                    hook.start(self.account_id, self.region_name, target["Arn"], event)
                else:
                    hook.invoke(self.account_id, self.region_name, target["Arn"], event)

        patches.set(Rule, "send_to_targets", send_to_targets)

    def invoke(self, account: str, region: str, function_arn: str, event: dict[str, Any]) -> None:
        """Invoke a Lambda target with the event (EventBridge invokes asynchronously; here it runs at once)."""
        from moto.awslambda.utils import get_backend

        headers: dict[str, str] = {}
        body = json.dumps(event, default=str)
        get_backend(account, region).invoke(function_arn, None, body, {}, headers)
        with self._lock:
            self.deliveries.append((function_arn, event, headers.get("x-amz-function-error", "")))

    def start(self, account: str, region: str, state_machine_arn: str, event: dict[str, Any]) -> str:
        """Start an execution of ``state_machine_arn`` with ``event`` (a fresh uuid name, like EventBridge)."""
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        backend = stepfunctions_parser_backends[account][region]
        execution = backend.start_execution(
            state_machine_arn, name=str(uuid.uuid4()), execution_input=json.dumps(event, default=str)
        )
        with self._lock:
            self.deliveries.append((state_machine_arn, event, execution.execution_arn))
        return str(execution.execution_arn)


# --------------------------------------------------------------------------------------------------------
# Step Functions SDK-integration error names.


class SdkErrorNames:
    """``SageMaker.ResourceLimitExceededException``, as Step Functions names it (moto: ``sagemaker.``)."""

    def install(self, patches: _Patches) -> None:
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
            state_task_service_aws_sdk as sdk,
        )

        names = dict(sdk._SERVICE_ERROR_NAMES)
        names.update({"sagemaker": "SageMaker", "s3": "S3", "lambda": "Lambda"})
        patches.set(sdk, "_SERVICE_ERROR_NAMES", names)


# --------------------------------------------------------------------------------------------------------
# DynamoDB: a condition check and its write happen atomically, as in DynamoDB.


class AtomicDynamoDB:
    """Serialise moto's DynamoDB writes so a conditional put is atomic across threads (executions)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def install(self, patches: _Patches) -> None:
        from moto.dynamodb.models import DynamoDBBackend

        for name in ("put_item", "update_item", "delete_item"):
            original = getattr(DynamoDBBackend, name)
            patches.set(DynamoDBBackend, name, self._locked(original))

    def _locked(self, original: Callable[..., Any]) -> Callable[..., Any]:
        lock = self._lock

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return original(*args, **kwargs)

        return wrapper


# --------------------------------------------------------------------------------------------------------
# SageMaker.


@dataclass
class EndpointScript:
    """How the embedded endpoints change state.

    Attributes:
        creating_polls: DescribeEndpoint calls an endpoint stays Creating.
        updating_polls: calls an update stays Updating.
        create_outcome: ``InService`` or ``Failed`` once created.
        update_outcome: ``InService`` (new config), ``RolledBack`` (InService on the old config), ``Failed``.
    """

    creating_polls: int = 1
    updating_polls: int = 1
    create_outcome: str = "InService"
    update_outcome: str = "InService"


@dataclass
class _EndpointState:
    status: str
    polls_left: int
    target: str
    next_config: str | None = None
    previous_config: str | None = None
    outcome: str = "InService"


@dataclass
class Quotas:
    """Instance types the embedded account cannot get (``ResourceLimitExceeded``), per usage."""

    training: set[str] = field(default_factory=set)
    endpoint: set[str] = field(default_factory=set)


def _client_error(code: str, message: str) -> Exception:
    from moto.sagemaker.exceptions import SagemakerClientError

    return SagemakerClientError(code, message)


class SimulatedSageMaker:
    """moto's SageMaker plus what Stratos relies on:

    * training jobs: ``ResourceInUse`` for a taken name, ``ResourceLimitExceeded`` for a type in
      :attr:`quotas`, and the status the :class:`~stratos_cli.local.training.TrainingRunner` reports;
    * models and endpoint configs: "already existing" ValidationExceptions, any ``ml.*`` instance type;
    * endpoints: Creating -> InService (or Failed) after :attr:`script` polls; ``UpdateEndpoint`` (Updating ->
      InService on the new config, rolled back, or Failed); quotas; :meth:`hold` keeps an endpoint in a state
      (another deployment in flight).
    """

    def __init__(
        self, runner: TrainingRunner, quotas: Quotas | None = None, script: EndpointScript | None = None
    ) -> None:
        self.runner = runner
        self.quotas = quotas or Quotas()
        self.script = script or EndpointScript()
        self.training_requests: list[dict[str, Any]] = []
        self.update_requests: list[dict[str, Any]] = []
        self._endpoints: dict[str, _EndpointState] = {}
        self._lock = threading.RLock()

    def hold(self, endpoint_name: str, status: str, polls: int) -> None:
        """Keep ``endpoint_name`` in ``status`` for ``polls`` DescribeEndpoint calls, then InService on its
        current config (e.g. ``Updating``: another run's update is in flight)."""
        with self._lock:
            self._endpoints[endpoint_name] = _EndpointState(status, polls, "InService")

    def install(self, patches: _Patches) -> None:
        from moto.sagemaker import models as sm
        from moto.sagemaker.responses import SageMakerResponse

        Backend = sm.SageMakerModelBackend
        sim = self
        orig = {
            name: getattr(Backend, name)
            for name in (
                "create_training_job",
                "describe_training_job",
                "create_model",
                "create_endpoint_config",
                "create_endpoint",
                "describe_endpoint",
                "delete_endpoint",
            )
        }

        def create_training_job(self: Any, training_job_name: str, **kwargs: Any) -> Any:
            if training_job_name in self.training_jobs:
                raise _client_error(
                    "ResourceInUse",
                    "Training job names must be unique within an AWS account and region, and a training job with "
                    f"this name already exists ({self.training_jobs[training_job_name].arn})",
                )
            for key, value in (kwargs.get("hyper_parameters") or {}).items():
                # SageMaker's HyperParameters is a map of strings (values up to 2,500 characters): a JSON null
                # or a number is refused at the API, so the embedded AWS refuses it too.
                if not isinstance(value, str) or len(value) > 2500:
                    shown = "null" if value is None else json.dumps(value)[:40]
                    raise _client_error(
                        "ValidationException",
                        f"1 validation error detected: Value {shown} at 'hyperParameters.{key}' failed to satisfy "
                        "constraint: Member must be a string of at most 2500 characters",
                    )
            instance = kwargs["resource_config"]["InstanceType"]
            if instance in sim.quotas.training:
                raise _client_error(
                    "ResourceLimitExceeded",
                    f"The account-level service limit '{instance} for training job usage' is 0 Instances, with current "
                    "utilization of 0 Instances and a request delta of 1 Instances. Please use AWS Service Quotas to "
                    "request an increase for this quota.",
                )
            job = orig["create_training_job"](self, training_job_name=training_job_name, **kwargs)
            job.training_job_status, job.secondary_status = "InProgress", "Starting"
            request = {
                "TrainingJobName": training_job_name,
                "HyperParameters": kwargs.get("hyper_parameters"),
                "InputDataConfig": kwargs.get("input_data_config"),
                "OutputDataConfig": kwargs.get("output_data_config"),
                "ResourceConfig": kwargs.get("resource_config"),
                "StoppingCondition": kwargs.get("stopping_condition"),
                "CheckpointConfig": kwargs.get("checkpoint_config"),
                "Tags": kwargs.get("tags"),
                "RoleArn": kwargs.get("role_arn"),
                "AlgorithmSpecification": kwargs.get("algorithm_specification"),
            }
            with sim._lock:
                sim.training_requests.append(request)
            sim.runner.start(TrainingJobSpec.from_request(request))
            return job

        def describe_training_job(self: Any, training_job_name: str) -> Any:
            job = self.training_jobs.get(training_job_name)
            if job is not None and job.training_job_status not in TERMINAL:
                status = sim.runner.poll(training_job_name)
                job.training_job_status, job.secondary_status = status.status, status.secondary_status
                job.failure_reason = status.failure_reason or None
                job.training_time_in_seconds = status.training_seconds
                job.billable_time_in_seconds = status.billable_seconds
            response = orig["describe_training_job"](self, training_job_name)
            if job is not None:
                response["TrainingJobStatus"], response["SecondaryStatus"] = (
                    job.training_job_status,
                    job.secondary_status,
                )
                for key, attr in (
                    ("FailureReason", "failure_reason"),
                    ("TrainingTimeInSeconds", "training_time_in_seconds"),
                    ("BillableTimeInSeconds", "billable_time_in_seconds"),
                ):
                    value = getattr(job, attr, None)
                    if value:
                        response[key] = value
            return response

        def stop_training_job(self: Any, training_job_name: str) -> None:
            if training_job_name not in self.training_jobs:
                raise _client_error("ValidationException", f"Could not find training job '{training_job_name}'.")
            sim.runner.stop(training_job_name)

        def create_model(self: Any, model_name: str, **kwargs: Any) -> Any:
            if model_name in self._models:
                raise _client_error(
                    "ValidationException", f'Cannot create already existing model "{self._models[model_name].arn}".'
                )
            return orig["create_model"](self, model_name=model_name, **kwargs)

        def create_endpoint_config(self: Any, endpoint_config_name: str, **kwargs: Any) -> Any:
            if endpoint_config_name in self.endpoint_configs:
                raise _client_error(
                    "ValidationException",
                    f'Cannot create already existing endpoint configuration "{endpoint_config_name}".',
                )
            return orig["create_endpoint_config"](self, endpoint_config_name=endpoint_config_name, **kwargs)

        def _instance_of(backend: Any, config_name: str) -> str:
            config = backend.endpoint_configs[config_name]
            return str(config.production_variants[0].get("InstanceType", ""))

        def create_endpoint(self: Any, endpoint_name: str, endpoint_config_name: str, tags: Any) -> Any:
            if endpoint_name in self.endpoints:
                raise _client_error(
                    "ValidationException",
                    f'Cannot create already existing endpoint "{self.endpoints[endpoint_name].arn}".',
                )
            if endpoint_config_name in self.endpoint_configs:
                instance = _instance_of(self, endpoint_config_name)
                if instance in sim.quotas.endpoint:
                    raise _client_error(
                        "ResourceLimitExceeded",
                        f"The account-level service limit '{instance} for endpoint usage' is 0 Instances, with current "
                        "utilization of 0 Instances and a request delta of 1 Instances. Please use AWS Service Quotas "
                        "to request an increase for this quota.",
                    )
            endpoint = orig["create_endpoint"](self, endpoint_name, endpoint_config_name, tags)
            with sim._lock:
                endpoint.endpoint_status = "Creating"
                sim._endpoints[endpoint_name] = _EndpointState(
                    "Creating", sim.script.creating_polls, "InService", outcome=sim.script.create_outcome
                )
            return endpoint

        def update_endpoint(
            self: Any, endpoint_name: str, endpoint_config_name: str, deployment_config: Any = None
        ) -> Any:
            endpoint = self.endpoints.get(endpoint_name)
            if endpoint is None:
                raise _client_error("ValidationException", f'Could not find endpoint "{endpoint_name}".')
            if endpoint.endpoint_status != "InService" and endpoint.endpoint_status != "UpdateRollbackFailed":
                raise _client_error("ValidationException", f'Cannot update in-progress endpoint "{endpoint.arn}".')
            if endpoint_config_name not in self.endpoint_configs:
                raise _client_error(
                    "ValidationException", f'Could not find endpoint configuration "{endpoint_config_name}".'
                )
            instance = _instance_of(self, endpoint_config_name)
            if instance in sim.quotas.endpoint:
                raise _client_error(
                    "ResourceLimitExceeded",
                    f"The account-level service limit '{instance} for endpoint usage' is 0 Instances. Please use AWS "
                    "Service Quotas to request an increase for this quota.",
                )
            with sim._lock:
                sim.update_requests.append(
                    {
                        "EndpointName": endpoint_name,
                        "EndpointConfigName": endpoint_config_name,
                        "DeploymentConfig": deployment_config,
                    }
                )
                endpoint.endpoint_status = "Updating"
                sim._endpoints[endpoint_name] = _EndpointState(
                    "Updating",
                    sim.script.updating_polls,
                    "InService",
                    next_config=endpoint_config_name,
                    previous_config=endpoint.endpoint_config_name,
                    outcome=sim.script.update_outcome,
                )
            return endpoint

        def describe_endpoint(self: Any, endpoint_name: str) -> Any:
            endpoint = self.endpoints.get(endpoint_name)
            if endpoint is not None:
                sim._advance(endpoint_name, endpoint)
            response = orig["describe_endpoint"](self, endpoint_name)
            state = sim._endpoints.get(endpoint_name)
            if state is not None and state.status == "Updating" and state.next_config:
                response["PendingDeploymentSummary"] = {"EndpointConfigName": state.next_config}
            return response

        def delete_endpoint(self: Any, endpoint_name: str) -> Any:
            with sim._lock:
                sim._endpoints.pop(endpoint_name, None)
            return orig["delete_endpoint"](self, endpoint_name)

        for name, fn in (
            ("create_training_job", create_training_job),
            ("describe_training_job", describe_training_job),
            ("create_model", create_model),
            ("create_endpoint_config", create_endpoint_config),
            ("create_endpoint", create_endpoint),
            ("describe_endpoint", describe_endpoint),
            ("delete_endpoint", delete_endpoint),
        ):
            patches.set(Backend, name, fn)
        patches.set(Backend, "update_endpoint", update_endpoint)
        patches.set(Backend, "stop_training_job", stop_training_job)
        patches.set(sm.FakeEndpointConfig, "validate_instance_type", _any_ml_instance)

        from moto.core.responses import ActionResult, EmptyResult

        def update_endpoint_response(self: Any) -> Any:
            endpoint = self.sagemaker_backend.update_endpoint(
                endpoint_name=self._get_param("EndpointName"),
                endpoint_config_name=self._get_param("EndpointConfigName"),
                deployment_config=self._get_param("DeploymentConfig"),
            )
            return ActionResult({"EndpointArn": endpoint.arn})

        def stop_training_job_response(self: Any) -> Any:
            self.sagemaker_backend.stop_training_job(self._get_param("TrainingJobName"))
            return EmptyResult()

        patches.set(SageMakerResponse, "update_endpoint", update_endpoint_response)
        patches.set(SageMakerResponse, "stop_training_job", stop_training_job_response)

    def _advance(self, name: str, endpoint: Any) -> None:
        with self._lock:
            state = self._endpoints.get(name)
            if state is None:
                return
            if state.polls_left > 0:
                state.polls_left -= 1
                endpoint.endpoint_status = state.status
                return
            if state.status == "Updating" and state.next_config:
                if state.outcome == "InService":
                    endpoint.endpoint_config_name = state.next_config
                    endpoint.endpoint_status = "InService"
                elif state.outcome == "RolledBack":
                    endpoint.endpoint_status = "InService"
                else:
                    endpoint.endpoint_status = "Failed"
            else:
                endpoint.endpoint_status = "Failed" if state.outcome == "Failed" else state.target
            del self._endpoints[name]


def _any_ml_instance(self: Any, instance_type: str) -> None:
    """moto's instance list predates g5/g6: accept any ``ml.*`` type, as current SageMaker does."""
    if not str(instance_type).startswith("ml."):
        raise _client_error(
            "ValidationException", f"Value '{instance_type}' at 'instanceType' failed to satisfy constraint"
        )


# --------------------------------------------------------------------------------------------------------


@dataclass
class Hooks:
    """Every hook, installed together by :func:`installed`."""

    lambdas: InProcessLambdas
    rules: RulesToExecutions
    sagemaker: SimulatedSageMaker
    sdk_errors: SdkErrorNames
    dynamodb: AtomicDynamoDB


@contextmanager
def installed(
    runner: TrainingRunner, quotas: Quotas | None = None, script: EndpointScript | None = None
) -> Iterator[Hooks]:
    """Install every hook (moto must be :data:`PINNED_MOTO_VERSION`); undo them on exit."""
    check_moto()
    hooks = Hooks(
        InProcessLambdas(),
        RulesToExecutions(),
        SimulatedSageMaker(runner, quotas, script),
        SdkErrorNames(),
        AtomicDynamoDB(),
    )
    patches = _Patches()
    try:
        for hook in (hooks.lambdas, hooks.rules, hooks.sagemaker, hooks.sdk_errors, hooks.dynamodb):
            hook.install(patches)
        yield hooks
    finally:
        patches.undo()


def signature_of(obj: Any) -> list[str]:
    """Parameter names of a callable (for the tests that guard the patched internals)."""
    return list(inspect.signature(obj).parameters)
