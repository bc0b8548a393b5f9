"""SageMaker (and CloudWatch alarm) adapter for the evaluation gate, deploy and run-record steps.

Idempotency by name: SageMaker never reuses a name, and every name a run uses is derived from the spec
identity (:mod:`stratos.naming`), so "already exists" on a create means an earlier attempt of the same step
created it: success. A service quota refusal (``ResourceLimitExceeded``) becomes
:class:`~stratos.errors.QuotaExceededError` naming the instance type; throttling becomes
:class:`~stratos.errors.ThrottlingError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stratos.aws.clients import client, error_code, error_message, throttling_as_retryable
from stratos.errors import DeploymentError, QuotaExceededError

#: Message fragments SageMaker uses for a create whose name is taken (ValidationException / ResourceInUse).
_ALREADY_EXISTS = ("already existing", "already exists", "ResourceInUse")
#: Fragments of "no such resource" ValidationExceptions.
_NOT_FOUND = ("Could not find", "does not exist", "not found")


def _already_exists(exc: BaseException) -> bool:
    return error_code(exc) == "ResourceInUse" or any(s in error_message(exc) for s in _ALREADY_EXISTS)


def _not_found(exc: BaseException) -> bool:
    return error_code(exc) in ("ValidationException", "ResourceNotFound") and any(
        s in error_message(exc) for s in _NOT_FOUND
    )


class SageMaker:
    """The SageMaker calls the pipeline's Lambdas make.

    Args:
        sagemaker_client, cloudwatch_client: boto3 clients; the shared lazy ones when omitted.
    """

    def __init__(self, sagemaker_client: Any = None, cloudwatch_client: Any = None) -> None:
        self._sm = sagemaker_client
        self._cw = cloudwatch_client

    @property
    def sm(self) -> Any:
        """The boto3 SageMaker client."""
        if self._sm is None:
            self._sm = client("sagemaker")
        return self._sm

    @property
    def cw(self) -> Any:
        """The boto3 CloudWatch client."""
        if self._cw is None:
            self._cw = client("cloudwatch")
        return self._cw

    # Training jobs.

    def describe_training_job(self, name: str) -> dict[str, Any]:
        """DescribeTrainingJob.

        Raises:
            ThrottlingError: throttled.
            botocore ClientError: anything else (the job must exist: the state machine created it).
        """
        with throttling_as_retryable(f"sagemaker:DescribeTrainingJob {name}"):
            out: dict[str, Any] = self.sm.describe_training_job(TrainingJobName=name)
        return out

    # Endpoints.

    def _describe(self, operation: str, **kwargs: str) -> dict[str, Any] | None:
        """A Describe* call, or ``None`` when SageMaker says there is no such resource."""
        from botocore.exceptions import ClientError

        api = "".join(part.title() for part in operation.split("_"))
        try:
            with throttling_as_retryable(f"sagemaker:{api} {next(iter(kwargs.values()))}"):
                out: dict[str, Any] = getattr(self.sm, operation)(**kwargs)
        except ClientError as exc:
            if _not_found(exc):
                return None
            raise
        return out

    def describe_endpoint(self, name: str) -> dict[str, Any] | None:
        """DescribeEndpoint, or ``None`` when there is no endpoint of that name."""
        return self._describe("describe_endpoint", EndpointName=name)

    def describe_endpoint_config(self, name: str) -> dict[str, Any] | None:
        """DescribeEndpointConfig, or ``None`` when absent."""
        return self._describe("describe_endpoint_config", EndpointConfigName=name)

    def create_model(
        self, name: str, role_arn: str, image: str, model_data_url: str, env: Mapping[str, str], tags: Sequence[Any]
    ) -> bool:
        """CreateModel; ``False`` when a model of that name already exists (an earlier attempt made it)."""
        from botocore.exceptions import ClientError

        try:
            with throttling_as_retryable(f"sagemaker:CreateModel {name}"):
                self.sm.create_model(
                    ModelName=name,
                    ExecutionRoleArn=role_arn,
                    PrimaryContainer={"Image": image, "ModelDataUrl": model_data_url, "Environment": dict(env)},
                    Tags=list(tags),
                )
        except ClientError as exc:
            if _already_exists(exc):
                return False
            raise DeploymentError(f"CreateModel {name} failed: {error_code(exc)}: {error_message(exc)}") from exc
        return True

    def create_endpoint_config(self, name: str, variants: Sequence[Mapping[str, Any]], tags: Sequence[Any]) -> bool:
        """CreateEndpointConfig; ``False`` when it already exists."""
        from botocore.exceptions import ClientError

        try:
            with throttling_as_retryable(f"sagemaker:CreateEndpointConfig {name}"):
                self.sm.create_endpoint_config(
                    EndpointConfigName=name, ProductionVariants=[dict(v) for v in variants], Tags=list(tags)
                )
        except ClientError as exc:
            if _already_exists(exc):
                return False
            raise DeploymentError(
                f"CreateEndpointConfig {name} failed: {error_code(exc)}: {error_message(exc)}"
            ) from exc
        return True

    def create_endpoint(self, name: str, config_name: str, instance_type: str, tags: Sequence[Any]) -> bool:
        """CreateEndpoint; ``False`` when an endpoint of that name already exists.

        Raises:
            QuotaExceededError: the account's endpoint quota for ``instance_type`` is exhausted.
            DeploymentError: any other refusal.
        """
        from botocore.exceptions import ClientError

        try:
            with throttling_as_retryable(f"sagemaker:CreateEndpoint {name}"):
                self.sm.create_endpoint(EndpointName=name, EndpointConfigName=config_name, Tags=list(tags))
        except ClientError as exc:
            self._raise_quota(exc, instance_type, "endpoint")
            if _already_exists(exc):
                return False
            raise DeploymentError(f"CreateEndpoint {name} failed: {error_code(exc)}: {error_message(exc)}") from exc
        return True

    def update_endpoint(
        self, name: str, config_name: str, instance_type: str, deployment_config: Mapping[str, Any]
    ) -> None:
        """UpdateEndpoint to ``config_name`` with a blue/green ``deployment_config``.

        Raises:
            QuotaExceededError: the green fleet's ``instance_type`` is over quota.
            DeploymentError: any other refusal.
        """
        from botocore.exceptions import ClientError

        try:
            with throttling_as_retryable(f"sagemaker:UpdateEndpoint {name}"):
                self.sm.update_endpoint(
                    EndpointName=name, EndpointConfigName=config_name, DeploymentConfig=dict(deployment_config)
                )
        except ClientError as exc:
            self._raise_quota(exc, instance_type, "endpoint")
            raise DeploymentError(f"UpdateEndpoint {name} failed: {error_code(exc)}: {error_message(exc)}") from exc

    def delete_endpoint_and_wait(self, name: str, max_wait_seconds: int = 240) -> bool:
        """DeleteEndpoint, then the ``endpoint_deleted`` waiter; ``True`` once it is gone.

        ``False`` when it is still deleting after ``max_wait_seconds`` (the caller retries later).
        """
        from botocore.exceptions import ClientError, WaiterError

        try:
            with throttling_as_retryable(f"sagemaker:DeleteEndpoint {name}"):
                self.sm.delete_endpoint(EndpointName=name)
        except ClientError as exc:
            if not _not_found(exc):
                raise
        delay = 10
        try:
            self.sm.get_waiter("endpoint_deleted").wait(
                EndpointName=name, WaiterConfig={"Delay": delay, "MaxAttempts": max(1, max_wait_seconds // delay)}
            )
        except WaiterError:
            return False
        return True

    def delete_endpoint_config(self, name: str) -> bool:
        """DeleteEndpointConfig; ``False`` when it was already gone."""
        from botocore.exceptions import ClientError

        try:
            with throttling_as_retryable(f"sagemaker:DeleteEndpointConfig {name}"):
                self.sm.delete_endpoint_config(EndpointConfigName=name)
        except ClientError as exc:
            if _not_found(exc):
                return False
            raise
        return True

    def delete_model(self, name: str) -> bool:
        """DeleteModel; ``False`` when it was already gone."""
        from botocore.exceptions import ClientError

        try:
            with throttling_as_retryable(f"sagemaker:DeleteModel {name}"):
                self.sm.delete_model(ModelName=name)
        except ClientError as exc:
            if _not_found(exc):
                return False
            raise
        return True

    def describe_model(self, name: str) -> dict[str, Any] | None:
        """DescribeModel, or ``None`` when absent."""
        return self._describe("describe_model", ModelName=name)

    def tags(self, arn: str) -> dict[str, str]:
        """Every tag of the resource ``arn`` (ListTags, all pages), a later duplicate key winning."""
        out: dict[str, str] = {}
        with throttling_as_retryable(f"sagemaker:ListTags {arn}"):
            for page in self.sm.get_paginator("list_tags").paginate(ResourceArn=arn):
                out.update({str(t["Key"]): str(t["Value"]) for t in page.get("Tags", [])})
        return out

    def add_tags(self, arn: str, tags: Sequence[Mapping[str, str]]) -> None:
        """AddTags (a key already present gets the new value)."""
        with throttling_as_retryable(f"sagemaker:AddTags {arn}"):
            self.sm.add_tags(ResourceArn=arn, Tags=[dict(t) for t in tags])

    def put_alarm(self, alarm: Mapping[str, Any]) -> None:
        """PutMetricAlarm (creates or replaces the alarm of that name)."""
        with throttling_as_retryable(f"cloudwatch:PutMetricAlarm {alarm.get('AlarmName')}"):
            self.cw.put_metric_alarm(**alarm)

    @staticmethod
    def _raise_quota(exc: BaseException, instance_type: str, usage: str) -> None:
        if error_code(exc) == "ResourceLimitExceeded":
            raise QuotaExceededError(
                f"{instance_type}: the account's quota for {usage} usage is exhausted "
                f"({error_message(exc)}); request an increase in Service Quotas"
            ) from exc
