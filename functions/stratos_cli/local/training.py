"""The training-runner interface: what a "SageMaker training job" does in the embedded AWS.

The simulated SageMaker (:class:`~stratos_cli.local.moto_hooks.sagemaker.SimulatedSageMaker`) hands every
CreateTrainingJob to a :class:`TrainingRunner` and asks it for the job's status on every
DescribeTrainingJob. :class:`~stratos_cli.local.process_runner.ProcessTrainingRunner` runs the real training
container as a local process; the tests' scripted runner (``tests/doubles.py``) replays a status sequence. On
``Completed`` a runner has written what a real job does: ``model.tar.gz`` and ``output.tar.gz`` (with
``metrics.json``) under ``<S3OutputPath>/<job>/output/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Status = Literal["InProgress", "Completed", "Failed", "Stopping", "Stopped"]
TERMINAL: frozenset[str] = frozenset({"Completed", "Failed", "Stopped"})


@dataclass(frozen=True)
class TrainingJobSpec:
    """What CreateTrainingJob asked for (the fields a runner needs).

    Attributes:
        name: the job name.
        hyperparameters: string values, as the container reads them.
        channels: input channel name -> S3 URI.
        output_s3_uri: ``OutputDataConfig.S3OutputPath``.
        instance_type: ``ResourceConfig.InstanceType``.
        max_runtime_seconds: ``StoppingCondition.MaxRuntimeInSeconds``.
        checkpoint_s3_uri: ``CheckpointConfig.S3Uri`` (``""`` when none).
        managed_spot: ``EnableManagedSpotTraining``.
        max_wait_seconds: ``StoppingCondition.MaxWaitTimeInSeconds`` (managed spot only; None when absent).
    """

    name: str
    hyperparameters: Mapping[str, str]
    channels: Mapping[str, str]
    output_s3_uri: str
    instance_type: str
    max_runtime_seconds: int
    checkpoint_s3_uri: str = ""
    managed_spot: bool = False
    max_wait_seconds: int | None = None

    @classmethod
    def from_request(cls, request: Mapping[str, Any]) -> TrainingJobSpec:
        """From CreateTrainingJob's parameters (API field names)."""
        channels = {
            c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request.get("InputDataConfig") or []
        }
        return cls(
            name=request["TrainingJobName"],
            hyperparameters=dict(request.get("HyperParameters") or {}),
            channels=channels,
            output_s3_uri=request["OutputDataConfig"]["S3OutputPath"],
            instance_type=request["ResourceConfig"]["InstanceType"],
            max_runtime_seconds=int(request["StoppingCondition"]["MaxRuntimeInSeconds"]),
            checkpoint_s3_uri=(request.get("CheckpointConfig") or {}).get("S3Uri", ""),
            managed_spot=bool(request.get("EnableManagedSpotTraining")),
            max_wait_seconds=(
                int(request["StoppingCondition"]["MaxWaitTimeInSeconds"])
                if request["StoppingCondition"].get("MaxWaitTimeInSeconds")
                else None
            ),
        )

    def output_uri(self, name: str) -> str:
        """``<S3OutputPath>/<job>/output/<name>`` (where SageMaker puts model.tar.gz and output.tar.gz)."""
        return f"{self.output_s3_uri.rstrip('/')}/{self.name}/output/{name}"


@dataclass(frozen=True)
class TrainingStatus:
    """A job's status as DescribeTrainingJob reports it.

    Attributes:
        status: TrainingJobStatus.
        secondary_status: SecondaryStatus (``Training``, ``Completed``, ``MaxRuntimeExceeded``, ...).
        failure_reason: FailureReason (Failed / Stopped only).
        training_seconds: TrainingTimeInSeconds so far.
        billable_seconds: BillableTimeInSeconds so far.
    """

    status: Status
    secondary_status: str
    failure_reason: str = ""
    training_seconds: int = 0
    billable_seconds: int = 0


class TrainingRunner(Protocol):
    """Runs the training jobs the embedded SageMaker is asked for."""

    def start(self, job: TrainingJobSpec) -> None:
        """A job was created (called once per job name)."""

    def poll(self, name: str) -> TrainingStatus:
        """The job's status now (called on every DescribeTrainingJob); terminal statuses must stick."""

    def stop(self, name: str) -> None:
        """StopTrainingJob was called."""
