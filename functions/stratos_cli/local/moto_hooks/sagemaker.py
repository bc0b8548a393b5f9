"""SageMaker: moto's backend plus the training jobs, endpoint state changes and refusals Stratos relies on.

moto 5.2.5 finishes every training job at once, has no UpdateEndpoint / StopTrainingJob, no quotas, no "already
exists" on creates, and an instance-type list that predates ml.g5/ml.g6. This hook patches
``moto.sagemaker.models.SageMakerModelBackend`` (training jobs, models, endpoint configs, endpoints; adds
``update_endpoint`` / ``stop_training_job``), ``FakeEndpointConfig.validate_instance_type`` and
``SageMakerResponse`` (the two new actions).

What moto cannot know about the account (its quotas, refused at create time and listed by Service Quotas; how long
an endpoint change takes and how it ends; how an endpoint answers an invocation) is asked of a
:class:`SageMakerAccount`; :class:`DefaultAccount` has every quota, lists none, brings every endpoint InService after
one DescribeEndpoint and lets the endpoint's own model answer (:mod:`~stratos_cli.local.moto_hooks.sagemaker_runtime`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from unittest.mock import patch

from stratos_cli.local.moto_hooks.pin import Patch
from stratos_cli.local.training import TERMINAL, TrainingJobSpec, TrainingRunner

#: The quota a request draws on (SageMaker quotas are per instance type and usage).
Usage = Literal["training", "endpoint"]
#: The endpoint change a :class:`EndpointCourse` is asked for.
Change = Literal["create", "update"]


@dataclass(frozen=True)
class EndpointCourse:
    """How one CreateEndpoint or UpdateEndpoint goes.

    Attributes:
        polls: DescribeEndpoint calls the endpoint stays ``Creating`` / ``Updating``.
        outcome: ``InService`` (an update: on the new config), ``RolledBack`` (an update: InService on the old
            config) or ``Failed``.
    """

    polls: int = 1
    outcome: str = "InService"


@dataclass(frozen=True)
class EndpointInvocation:
    """One InvokeEndpoint request, resolved to what the endpoint serves now
    (:mod:`~stratos_cli.local.moto_hooks.sagemaker_runtime`).

    Attributes:
        endpoint_name, config_name, model_name: the endpoint, its current config and that config's model.
        model_data_url: the model's ``ModelDataUrl`` (``s3://.../model.tar.gz``).
        body: the request body as sent; content_type: its ``Content-Type``.
        received_at: when the embedded AWS received it (``time.monotonic()``, s).
    """

    endpoint_name: str
    config_name: str
    model_name: str
    model_data_url: str
    body: bytes
    content_type: str
    received_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class ContainerAnswer:
    """What the serving container answered: its HTTP status and body (>= 400 becomes SageMaker's ModelError)."""

    status: int
    body: bytes


class SageMakerAccount(Protocol):
    """What the embedded account decides that moto does not model."""

    def refuses(self, usage: Usage, instance_type: str) -> bool:
        """True: the account's quota of ``instance_type`` for ``usage`` is 0 (``ResourceLimitExceeded``)."""

    def endpoint_course(self, change: Change) -> EndpointCourse:
        """How a CreateEndpoint (``create``) or UpdateEndpoint (``update``) goes."""

    def service_quotas(self) -> Mapping[str, float] | None:
        """The SageMaker quotas the Service Quotas API lists as applied, ``{quota name: value}`` (e.g.
        ``{"ml.g5.xlarge for training job usage": 0}``), or ``None`` when it refuses the caller
        (``AccessDeniedException``); served by :mod:`~stratos_cli.local.moto_hooks.servicequotas`."""

    def invoke_endpoint(self, invocation: EndpointInvocation) -> ContainerAnswer | None:
        """How the endpoint's container answers ``invocation``, or ``None``: the model it serves answers, from a
        local server (:mod:`~stratos_cli.local.moto_hooks.sagemaker_runtime`)."""


class DefaultAccount:
    """Every instance type within quota and no quota listed; every endpoint change InService after one
    DescribeEndpoint; every endpoint answered by its model, served locally."""

    def refuses(self, usage: Usage, instance_type: str) -> bool:
        return False

    def endpoint_course(self, change: Change) -> EndpointCourse:
        return EndpointCourse()

    def service_quotas(self) -> Mapping[str, float] | None:
        return {}

    def invoke_endpoint(self, invocation: EndpointInvocation) -> ContainerAnswer | None:
        return None


@dataclass
class _EndpointState:
    status: str
    polls_left: int
    target: str
    next_config: str | None = None
    previous_config: str | None = None
    outcome: str = "InService"


def _client_error(code: str, message: str) -> Exception:
    from moto.sagemaker.exceptions import SagemakerClientError

    return SagemakerClientError(code, message)


class SimulatedSageMaker:
    """moto's SageMaker plus what Stratos relies on:

    * training jobs: ``ResourceInUse`` for a taken name, ``ResourceLimitExceeded`` for a type the
      :attr:`account` refuses, and the status the :class:`~stratos_cli.local.training.TrainingRunner` reports;
    * models and endpoint configs: "already existing" ValidationExceptions, any ``ml.*`` instance type;
    * endpoints: Creating -> InService (or Failed) as the :attr:`account` says; ``UpdateEndpoint`` (Updating ->
      InService on the new config, rolled back, or Failed); quotas; :meth:`hold` keeps an endpoint in a state
      for some polls.

    Args:
        runner: what a training job does.
        account: quotas and endpoint courses (default: :class:`DefaultAccount`).
    """

    def __init__(self, runner: TrainingRunner, account: SageMakerAccount | None = None) -> None:
        self.runner = runner
        self.account: SageMakerAccount = account or DefaultAccount()
        self.training_requests: list[dict[str, Any]] = []
        self.update_requests: list[dict[str, Any]] = []
        self._endpoints: dict[str, _EndpointState] = {}
        self._lock = threading.RLock()

    def hold(self, endpoint_name: str, status: str, polls: int) -> None:
        """Keep ``endpoint_name`` in ``status`` for ``polls`` DescribeEndpoint calls, then InService on its
        current config (e.g. ``Updating``: another run's update is in flight)."""
        with self._lock:
            self._endpoints[endpoint_name] = _EndpointState(status, polls, "InService")

    def patches(self) -> list[Patch]:
        """The backend's creates and describes, the two actions moto lacks, and the instance-type check."""
        from moto.core.responses import ActionResult, EmptyResult
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
            if sim.account.refuses("training", instance):
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
                "EnableManagedSpotTraining": bool(kwargs.get("enable_managed_spot_training")),
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
                if sim.account.refuses("endpoint", instance):
                    raise _client_error(
                        "ResourceLimitExceeded",
                        f"The account-level service limit '{instance} for endpoint usage' is 0 Instances, with current "
                        "utilization of 0 Instances and a request delta of 1 Instances. Please use AWS Service Quotas "
                        "to request an increase for this quota.",
                    )
            endpoint = orig["create_endpoint"](self, endpoint_name, endpoint_config_name, tags)
            course = sim.account.endpoint_course("create")
            with sim._lock:
                endpoint.endpoint_status = "Creating"
                sim._endpoints[endpoint_name] = _EndpointState(
                    "Creating", course.polls, "InService", outcome=course.outcome
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
            if sim.account.refuses("endpoint", instance):
                raise _client_error(
                    "ResourceLimitExceeded",
                    f"The account-level service limit '{instance} for endpoint usage' is 0 Instances. Please use AWS "
                    "Service Quotas to request an increase for this quota.",
                )
            course = sim.account.endpoint_course("update")
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
                    course.polls,
                    "InService",
                    next_config=endpoint_config_name,
                    previous_config=endpoint.endpoint_config_name,
                    outcome=course.outcome,
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

        replaced: list[Patch] = [
            patch.object(Backend, name, fn)
            for name, fn in (
                ("create_training_job", create_training_job),
                ("describe_training_job", describe_training_job),
                ("create_model", create_model),
                ("create_endpoint_config", create_endpoint_config),
                ("create_endpoint", create_endpoint),
                ("describe_endpoint", describe_endpoint),
                ("delete_endpoint", delete_endpoint),
            )
        ]
        # moto lacks these actions: create=True adds them, and stopping the patch removes them again.
        added: list[Patch] = [
            patch.object(Backend, "update_endpoint", update_endpoint, create=True),
            patch.object(Backend, "stop_training_job", stop_training_job, create=True),
            patch.object(SageMakerResponse, "update_endpoint", update_endpoint_response, create=True),
            patch.object(SageMakerResponse, "stop_training_job", stop_training_job_response, create=True),
        ]
        return [*replaced, *added, patch.object(sm.FakeEndpointConfig, "validate_instance_type", _any_ml_instance)]

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
