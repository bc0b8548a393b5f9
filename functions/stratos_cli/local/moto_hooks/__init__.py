"""Version-pinned hooks into moto's internals that make the embedded AWS behave like AWS where Stratos needs it.

moto 5.2.5 executes Step Functions definitions but (a) never runs Lambda code without Docker, (b) does not
deliver EventBridge events to Step Functions, (c) finishes every training job at once and has no
UpdateEndpoint, no quotas and no "already exists" on SageMaker creates, (d) spells SDK-integration error
names with the lowercase service id (``sagemaker.X`` where Step Functions says ``SageMaker.X``), (e)
checks DynamoDB conditions and writes in two steps, so concurrent conditional writes can both succeed, (f)
has no Service Quotas ``ListServiceQuotas`` (nor SageMaker's default quotas), and (g) answers SageMaker Runtime's
InvokeEndpoint with canned bodies, whatever the endpoint.
Each hook fixes one of these, touching as little as it can, in a module of its own (hook: moto internal patched):

* :mod:`.lambdas` — :class:`InProcessLambdas`: ``moto.awslambda_simple.models.LambdaSimpleBackend.invoke``;
* :mod:`.eventbridge` — :class:`RulesToExecutions`: ``moto.events.models.Rule.send_to_targets``;
* :mod:`.sagemaker` — :class:`SimulatedSageMaker`: ``moto.sagemaker.models.SageMakerModelBackend`` (training jobs,
  models, endpoint configs, endpoints; adds ``update_endpoint`` / ``stop_training_job``),
  ``FakeEndpointConfig.validate_instance_type``, ``SageMakerResponse``;
* :mod:`.sagemaker_runtime` — :class:`SimulatedRuntime`: ``SageMakerRuntimeResponse.invoke_endpoint`` (the
  endpoint's model answers, served locally, or the account's scripted answer);
* :mod:`.servicequotas` — :class:`ServiceQuotasApi`: ``moto.servicequotas.models.ServiceQuotasBackend`` (adds
  ``list_service_quotas``; SageMaker's ``list_aws_default_service_quotas``), ``ServiceQuotasResponse``;
* :mod:`.sdk_errors` — :class:`SdkErrorNames`: ``..state_task_service_aws_sdk._SERVICE_ERROR_NAMES``;
* :mod:`.dynamodb` — :class:`AtomicDynamoDB`: ``moto.dynamodb.models.DynamoDBBackend.put_item`` / ``update_item``
  / ``delete_item``.

Each hook lists its patches (``unittest.mock.patch.object``); :func:`installed` starts them all together and
stops them all on exit. :func:`check_moto` (:mod:`.pin`) refuses any other moto version, and
``tests/unit/test_moto_hooks.py`` fails loudly when a patched internal changes shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from stratos_cli.local.moto_hooks.dynamodb import AtomicDynamoDB
from stratos_cli.local.moto_hooks.eventbridge import RulesToExecutions, normalise_s3_event
from stratos_cli.local.moto_hooks.lambdas import FakeLambdaContext, InProcessLambdas, Invocation
from stratos_cli.local.moto_hooks.pin import PINNED_MOTO_VERSION, MotoHookError, Patch, check_moto, signature_of
from stratos_cli.local.moto_hooks.sagemaker import (
    ContainerAnswer,
    DefaultAccount,
    EndpointCourse,
    EndpointInvocation,
    SageMakerAccount,
    SimulatedSageMaker,
)
from stratos_cli.local.moto_hooks.sagemaker_runtime import SimulatedRuntime
from stratos_cli.local.moto_hooks.sdk_errors import SdkErrorNames
from stratos_cli.local.moto_hooks.servicequotas import ServiceQuotasApi
from stratos_cli.local.training import TrainingRunner

__all__ = [
    "PINNED_MOTO_VERSION",
    "AtomicDynamoDB",
    "ContainerAnswer",
    "DefaultAccount",
    "EndpointCourse",
    "EndpointInvocation",
    "FakeLambdaContext",
    "Hooks",
    "InProcessLambdas",
    "Invocation",
    "MotoHookError",
    "Patch",
    "RulesToExecutions",
    "SageMakerAccount",
    "SdkErrorNames",
    "ServiceQuotasApi",
    "SimulatedRuntime",
    "SimulatedSageMaker",
    "check_moto",
    "installed",
    "normalise_s3_event",
    "signature_of",
]


@dataclass
class Hooks:
    """Every hook, installed together by :func:`installed`."""

    lambdas: InProcessLambdas
    rules: RulesToExecutions
    sagemaker: SimulatedSageMaker
    sdk_errors: SdkErrorNames
    dynamodb: AtomicDynamoDB
    quotas: ServiceQuotasApi
    runtime: SimulatedRuntime

    def patches(self) -> list[Patch]:
        """Every hook's patches, in installation order."""
        return [
            *self.lambdas.patches(),
            *self.rules.patches(),
            *self.sagemaker.patches(),
            *self.sdk_errors.patches(),
            *self.dynamodb.patches(),
            *self.quotas.patches(),
            *self.runtime.patches(),
        ]


@contextmanager
def installed(runner: TrainingRunner, account: SageMakerAccount | None = None) -> Iterator[Hooks]:
    """Install every hook (moto must be :data:`PINNED_MOTO_VERSION`); undo them on exit.

    Args:
        runner: what a training job does.
        account: the embedded account's quotas (refused and listed), endpoint courses and endpoint answers
            (default: :class:`~stratos_cli.local.moto_hooks.sagemaker.DefaultAccount`).

    Raises:
        MotoHookError: moto is another version.
    """
    check_moto()
    sagemaker = SimulatedSageMaker(runner, account)
    hooks = Hooks(
        InProcessLambdas(),
        RulesToExecutions(),
        sagemaker,
        SdkErrorNames(),
        AtomicDynamoDB(),
        ServiceQuotasApi(sagemaker.account),
        SimulatedRuntime(sagemaker.account),
    )
    with ExitStack() as patched:
        for patcher in hooks.patches():
            patched.enter_context(patcher)
        yield hooks
