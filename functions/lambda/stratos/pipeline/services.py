"""The adapters a step uses, built lazily from the settings (one set per Lambda container)."""

from __future__ import annotations

import functools
from functools import cached_property
from typing import TYPE_CHECKING, Any

from stratos.pipeline.settings import Settings, get_settings

if TYPE_CHECKING:
    from stratos.aws.artifacts import ArtifactStore
    from stratos.aws.records import RunRecords
    from stratos.aws.sagemaker import SageMaker
    from stratos.aws.stepfunctions import StepFunctions


class Services:
    """Adapters over AWS, each created on first use.

    Args:
        settings: where the buckets, table and state machine are.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def artifacts(self) -> ArtifactStore:
        """The artifacts bucket (``runs/<run_id>/...``)."""
        from stratos.aws.artifacts import ArtifactStore

        return ArtifactStore(self.settings.require("artifacts_bucket"))

    @cached_property
    def records(self) -> RunRecords:
        """Run and task records."""
        from stratos.aws.records import RunRecords

        return RunRecords(self.settings.require("runs_table"))

    @cached_property
    def sagemaker(self) -> SageMaker:
        """SageMaker and CloudWatch alarms."""
        from stratos.aws.sagemaker import SageMaker

        return SageMaker()

    @cached_property
    def stepfunctions(self) -> StepFunctions:
        """The distillation state machine (the sweep starts runs on it)."""
        from stratos.aws.stepfunctions import StepFunctions

        return StepFunctions(self.settings.require("state_machine_arn"))

    @cached_property
    def planner_store(self) -> Any:
        """:class:`stratos.planner.store.PlannerStore` over the shared S3 client."""
        from stratos.aws.clients import client
        from stratos.planner.store import PlannerStore

        return PlannerStore(client("s3"))


@functools.cache
def get_services() -> Services:
    """The process's adapters (built from :func:`~stratos.pipeline.settings.get_settings`)."""
    return Services(get_settings())


def reset_services() -> None:
    """Forget the adapters and settings (the local harness rebuilds its embedded AWS between stacks)."""
    from stratos.aws.clients import reset_clients
    from stratos.pipeline.settings import reset_settings

    get_services.cache_clear()
    reset_settings()
    reset_clients()
