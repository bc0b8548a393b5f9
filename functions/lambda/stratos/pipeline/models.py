"""The state document the state machine carries, and the payloads its steps add (see
``statemachine/distillation.asl.json``).

Every Lambda task receives ``{"state": <the whole document>, "execution_arn": <$$.Execution.Id>}``
(:class:`StepEvent`) and returns one payload that the ASL puts under its own key (``ResultPath``). The keys,
in the order a run adds them:

================ ============================================ =========================================
key              model                                        written by
================ ============================================ =========================================
``trigger``      the raw starting event (dropped after it)    ``ReadTrigger`` (Pass)
``timing``       :class:`Timing`                              ``ReadTrigger`` (DefinitionSubstitutions)
``run``          :class:`~stratos.payloads.RunContext`        ``ValidateSpec``
``prices``       :class:`~stratos.payloads.PriceTableRef`     ``LookUpPrices``
``plan``         :class:`~stratos.payloads.PlanRef`           ``SelectPlan`` / ``FallBackToNextPlan``
``fallback``     :class:`FallbackInfo`                        ``FallBackToNextPlan``
``job``          :class:`TrainingRequest`                     ``PrepareTrainingJob``
``training``     :class:`~stratos.payloads.TrainingJobRef`    ``DescribeTrainingJob`` (ResultSelector)
``evaluation``   :class:`~stratos.payloads.EvaluationResult`  ``EvaluationGate``
``deployment``   :class:`~stratos.payloads.DeploymentRef`     ``Deploy`` / ``FinishDeployment``
``endpoint``     :class:`EndpointPoll`                        ``DescribeEndpoint`` (ResultSelector)
``latency``      :class:`LatencyCheck`                        ``CheckLatency``
``rollback``     :class:`RollbackRef`                         ``RollBackDeployment``
``waits``        :class:`WaitCounter`                         ``CountEndpointWait`` (Pass)
``quota``        :class:`QuotaHit`                            ``*QuotaExceeded`` (Pass)
``busy``         :class:`StateError`                          ``Deploy`` (Catch ResourceBusyError)
``error``        :class:`StateError`                          any ``Catch``
``record``       :class:`RunSummary`                          ``RecordSuccess`` / ``RecordFailure``
================ ============================================ =========================================

Each model is bounded (:func:`stratos.payloads.size_upper_bound`); the document without ``trigger`` stays far
below Step Functions' 256 KiB limit, and the raw trigger is capped by :data:`MAX_TRIGGER_BYTES`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BeforeValidator, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from stratos.errors import PayloadTooLargeError
from stratos.loadtest import DEFAULT_MAX_SECONDS, LoadTestResult
from stratos.payloads import (
    DeploymentRef,
    EvaluationResult,
    Payload,
    PlanRef,
    PriceTableRef,
    RunContext,
    TrainingJobRef,
)
from stratos.types import OwnUri, SafeAscii, Short
from stratos_contract.hyperparameters import HYPERPARAMETER_VALUE_MAX as HYPERPARAMETER_VALUE_MAX
from stratos_contract.hyperparameters import HyperparameterError, TrainingHyperparameters, parse_hyperparameters

#: Largest starting event accepted, bytes (an S3 EventBridge event is ~1.5 KB; a RunRequest less).
MAX_TRIGGER_BYTES = 16 * 1024
#: Revisions the re-distillation sweep gives its runs start with this (ValidateSpec reads the trigger from it).
REDISTILL_REVISION_PREFIX = "redistill-"
#: Characters of an error cause kept in payloads (a Lambda's cause carries its stack trace; the head says why).
MAX_CAUSE_CHARS = 4096


def _truncate_cause(value: object) -> object:
    if isinstance(value, str) and len(value) > MAX_CAUSE_CHARS:
        return value[: MAX_CAUSE_CHARS - 3] + "..."
    return value


Long = Annotated[str, Field(max_length=1024)]
#: An execution ARN (Step Functions: at most 2048 characters; ours are ~150).
ExecutionArn = Annotated[str, Field(max_length=2048, pattern=r"^arn:aws[a-z-]*:states:"), SafeAscii()]


LatencyCheckAction = Literal["roll-back", "report"]
"""What CheckLatency's verdict does to a deployment that missed its limit (:class:`Timing`)."""


class Timing(Payload):
    """Poll intervals and the post-deploy load test's time cap, from the template's parameters through
    DefinitionSubstitutions (tests set them to 0)."""

    MAX_BYTES: ClassVar[int] = 256

    training_poll_seconds: int = Field(ge=0, le=86_400, description="Wait between DescribeTrainingJob calls, s.")
    endpoint_poll_seconds: int = Field(ge=0, le=86_400, description="Wait between DescribeEndpoint calls, s.")
    max_endpoint_waits: int = Field(
        ge=1, le=100_000, description="Endpoint polls (ours or another run's update) before giving up, count."
    )
    latency_check_seconds: int = Field(
        default=int(DEFAULT_MAX_SECONDS),
        ge=1,
        le=600,
        description="How long CheckLatency's load test may keep issuing requests, s (template LatencyCheckSeconds).",
    )
    latency_check_action: LatencyCheckAction = Field(
        default="roll-back",
        description="What a missed latency limit does (template LatencyCheckAction): 'roll-back' the deployment "
        "and fail the run, or 'report' it in the run record and keep the endpoint.",
    )


class StateError(Payload):
    """What a ``Catch`` puts at ``$.error`` (Step Functions' own field names)."""

    MAX_BYTES: ClassVar[int] = 26 * 1024

    Error: Short = Field(description="Error name: a Stratos error class, States.*, Lambda.*, SageMaker.*.")
    Cause: Annotated[str, BeforeValidator(_truncate_cause), Field(max_length=MAX_CAUSE_CHARS)] = Field(
        default="", description="The cause (a Lambda's is a JSON document), cut to MAX_CAUSE_CHARS."
    )


class QuotaHit(Payload):
    """Which instance type a quota refused, written by the ASL at the catch site."""

    MAX_BYTES: ClassVar[int] = 27 * 1024

    component: Literal["training", "serving"]
    instance_type: Short
    error: StateError


class FallbackInfo(Payload):
    """Why and how the run moved to a later frontier plan."""

    MAX_BYTES: ClassVar[int] = 4 * 1024

    blocked: list[Short] = Field(max_length=6, description="Instance types refused so far, in order.")
    retrain: bool = Field(description="The new plan needs a new training job (else: redeploy the trained model).")
    reason: str = Field(max_length=512, description="What was refused and which plan replaces it.")


class S3DataSource(Payload):
    """CreateTrainingJob's ``S3DataSource`` (API field names, so the ASL passes it through unchanged)."""

    MAX_BYTES: ClassVar[int] = 2 * 1024

    S3DataType: Literal["S3Prefix"] = "S3Prefix"
    S3Uri: Annotated[str, Field(max_length=1024, pattern=r"^s3://"), SafeAscii()]
    S3DataDistributionType: Literal["FullyReplicated"] = "FullyReplicated"


class DataSource(Payload):
    """CreateTrainingJob's ``DataSource``."""

    MAX_BYTES: ClassVar[int] = 2 * 1024

    S3DataSource: S3DataSource


class Channel(Payload):
    """One training input channel (``InputDataConfig`` entry): an S3 prefix copied to
    ``/opt/ml/input/data/<ChannelName>`` before the container starts."""

    MAX_BYTES: ClassVar[int] = 2 * 1024

    ChannelName: Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z0-9\.\-_]+$"), SafeAscii()]
    DataSource: DataSource
    InputMode: Literal["File"] = "File"

    @classmethod
    def s3_prefix(cls, name: str, uri: str) -> Channel:
        """A File-mode channel copying every object under ``uri``."""
        return cls(ChannelName=name, DataSource=DataSource(S3DataSource=S3DataSource(S3Uri=uri)))


class Tag(Payload):
    """A SageMaker resource tag."""

    MAX_BYTES: ClassVar[int] = 512

    Key: Short
    Value: Short


_Numeral = Annotated[str, Field(max_length=24, pattern=r"^-?[0-9][0-9.e+-]*$"), SafeAscii()]
_Flag = Literal["true", "false"]


class Hyperparameters(Payload):
    """What CreateTrainingJob carries as ``HyperParameters``: the subset of the contract's
    :class:`~stratos_contract.hyperparameters.TrainingHyperparameters` that PrepareTrainingJob sets, every value
    a string as SageMaker delivers them, each with a byte bound (so the state's size stays provable); ``None``
    fields are left to the job's defaults. Names, types and ranges are the contract's: every instance is
    decoded and validated by it (an unknown name or a bad value fails here, not in the training job)."""

    MAX_BYTES: ClassVar[int] = 25 * 1024

    task: Short
    task_options: Annotated[str, Field(max_length=1024)] = Field(default="{}", description="JSON object.")
    train_size: _Numeral | None = None
    eval_size: _Numeral | None = None
    seed: _Numeral
    teacher: Short = Field(description="Model source, e.g. channel:teacher.")
    student: Short = Field(
        description="Model source, e.g. channel:student, or channel:student@layers=15 for a depth-pruned "
        "catalog student (the channel holds its base)."
    )
    teacher_id: Short | None = Field(default=None, description="Catalog id of the teacher (model card).")
    student_id: Short | None = Field(default=None, description="Catalog id of the student (model card).")
    mode: Literal["auto", "alignment", "injection"]
    max_new_tokens: _Numeral
    bf16: _Flag
    lora: _Flag
    teacher_rationales: _Flag
    domain_notes: Annotated[str, Field(max_length=HYPERPARAMETER_VALUE_MAX)] = ""
    eval_batch_size: _Numeral | None = Field(
        default=None, description="Sequences generated together: the plan's generation batch (fits its memory)."
    )
    parallelism: Annotated[str, Field(max_length=384)] | None = Field(
        default=None, description="The plan's ParallelismPlan as one JSON object (stratos_contract.parallelism)."
    )
    teacher_topk: _Numeral | None = Field(
        default=None, description="Top-k alignment from an endpoint teacher: log-probabilities per token."
    )
    teacher_prompt_format: Literal["text", "chat"] | None = Field(
        default=None, description="An endpoint teacher's prompt format (the spec's prompt_format)."
    )
    teacher_usd_per_1k_input: Annotated[str, Field(max_length=32)] | None = Field(
        default=None, description="An external teacher's price per 1,000 input tokens, USD."
    )
    teacher_usd_per_1k_output: Annotated[str, Field(max_length=32)] | None = Field(
        default=None, description="An external teacher's price per 1,000 output tokens, USD."
    )

    @model_validator(mode="after")
    def _valid_for_the_job(self) -> Hyperparameters:
        try:
            parse_hyperparameters(self.to_api(), TrainingHyperparameters)
        except HyperparameterError as exc:
            raise ValueError(str(exc)) from exc
        return self

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Unset fields are left out of every dump: the state machine passes this map to CreateTrainingJob as
        it stands, and SageMaker's ``HyperParameters`` takes strings only (a JSON null is rejected)."""
        return {k: v for k, v in handler(self).items() if v is not None}

    def to_api(self) -> dict[str, str]:
        """The ``HyperParameters`` map (unset fields omitted)."""
        return dict(self.model_dump(mode="json"))


#: SageMaker's ceiling on a training job's MaxRuntimeInSeconds (and the bound Stratos keeps for MaxWaitTimeInSeconds):
#: 28 days, s.
MAX_TRAINING_SECONDS = 28 * 24 * 3600


class StoppingCondition(Payload):
    """CreateTrainingJob's ``StoppingCondition`` (API field names, so the ASL passes it through unchanged).

    SageMaker requires ``MaxWaitTimeInSeconds`` for a managed spot job (``EnableManagedSpotTraining``), at least
    ``MaxRuntimeInSeconds``, and refuses it for an on-demand job; it is left out of the dump when unset.
    """

    MAX_BYTES: ClassVar[int] = 256

    MaxRuntimeInSeconds: int = Field(
        ge=60, le=MAX_TRAINING_SECONDS, description="Longest time the job may train (spot: running time only), s."
    )
    MaxWaitTimeInSeconds: int | None = Field(
        default=None,
        ge=60,
        le=MAX_TRAINING_SECONDS,
        description="Managed spot only: longest wall time from the job's start, waits for spot capacity "
        "included, s (>= MaxRuntimeInSeconds).",
    )

    @model_validator(mode="after")
    def _wait_covers_runtime(self) -> StoppingCondition:
        if self.MaxWaitTimeInSeconds is not None and self.MaxWaitTimeInSeconds < self.MaxRuntimeInSeconds:
            raise ValueError(
                f"MaxWaitTimeInSeconds {self.MaxWaitTimeInSeconds} < MaxRuntimeInSeconds {self.MaxRuntimeInSeconds}"
                " (SageMaker requires the wait to cover the runtime)"
            )
        return self

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """An on-demand job's condition has no ``MaxWaitTimeInSeconds`` key at all (SageMaker refuses one,
        and a JSON null with it)."""
        return {k: v for k, v in handler(self).items() if v is not None}


class TrainingRequest(Payload):
    """Everything CreateTrainingJob needs that is not in DefinitionSubstitutions, already in API shapes."""

    MAX_BYTES: ClassVar[int] = 38 * 1024

    job_name: Short
    attempt: int = Field(ge=0, le=99, description="Plan attempt (fallback index) this job trains.")
    instance_type: Short
    instance_count: int = Field(ge=1, le=64)
    volume_size_gb: int = Field(ge=1, le=16_384, description="EBS volume per instance, GB.")
    enable_managed_spot_training: bool = Field(
        default=False, description="EnableManagedSpotTraining: the plan runs the job on managed spot capacity."
    )
    stopping_condition: StoppingCondition = Field(
        description="StoppingCondition: MaxRuntimeInSeconds, and MaxWaitTimeInSeconds for a spot job only."
    )
    hyperparameters: Hyperparameters = Field(description="Every value a string (SageMaker's contract).")
    input_data_config: list[Channel] = Field(min_length=1, max_length=8, description="InputDataConfig.")
    tags: list[Tag] = Field(max_length=8)

    @model_validator(mode="after")
    def _wait_iff_spot(self) -> TrainingRequest:
        waits = self.stopping_condition.MaxWaitTimeInSeconds is not None
        if waits != self.enable_managed_spot_training:
            raise ValueError(
                "StoppingCondition.MaxWaitTimeInSeconds is required for a managed spot job and refused otherwise"
            )
        return self


class EndpointPoll(Payload):
    """What the ASL keeps of DescribeEndpoint (ResultSelector)."""

    MAX_BYTES: ClassVar[int] = 512

    status: Literal[
        "Creating",
        "Updating",
        "InService",
        "RollingBack",
        "Failed",
        "OutOfService",
        "SystemUpdating",
        "Deleting",
        "UpdateRollbackFailed",
    ]
    config: Short


class LatencyCheck(Payload):
    """CheckLatency's result: the post-deploy load test (:mod:`stratos.loadtest`) at the spec's latency shape,
    against ``latency.p50_ms`` x (1 + tolerance) and against the plan's prediction.

    Relative errors are ``measured / predicted - 1`` (+0.25: 25 % more than predicted).
    """

    MAX_BYTES: ClassVar[int] = 13 * 1024

    endpoint_name: Short
    endpoint_config_name: Short = Field(description="The config the load test measured (this run's).")
    instance_count: int = Field(
        default=1,
        ge=1,
        description="Instances the load was spread over (deployment.instance_count): per-instance "
        "throughput is measured.tokens_per_s / instance_count.",
    )
    passed: bool = Field(description="Every request answered and measured p50 <= limit_ms.")
    action: LatencyCheckAction = Field(
        default="roll-back", description="What a miss does (Timing.latency_check_action)."
    )
    keep: bool = Field(
        description="The deployment stays: passed, or a miss only reported (action 'report'). The state machine "
        "rolls back when False.",
    )
    reason: str = Field(max_length=1024, description="The verdict in words, with the figures.")
    spec_p50_ms: float = Field(gt=0, description="The spec's latency.p50_ms, ms.")
    tolerance: float = Field(ge=0, le=1, description="How much over spec_p50_ms still passes, fraction.")
    limit_ms: float = Field(gt=0, description="spec_p50_ms x (1 + tolerance), ms.")
    predicted_p50_ms: float = Field(ge=0, description="The plan's p50 (roofline estimate), ms.")
    predicted_tokens_per_s: float = Field(
        ge=0, description="The plan's throughput at the measured concurrency: concurrency x output_tokens / p50."
    )
    p50_error: float | None = Field(default=None, description="measured p50 / predicted_p50_ms - 1.")
    tokens_per_s_error: float | None = Field(default=None, description="measured / predicted tokens/s - 1.")
    measured: LoadTestResult


class RollbackRef(Payload):
    """RollBackDeployment's result: what became of the endpoint after this run's config missed its latency limit.

    ``reverted``: UpdateEndpoint back to ``config_name``, the config that served before this run (the state
    machine then waits until it is InService on it again); ``deleted``: the run had created the endpoint, so it
    was deleted, with this run's config and model (nothing served before it).
    """

    MAX_BYTES: ClassVar[int] = 10 * 1024

    action: Literal["reverted", "deleted"]
    endpoint_name: Short
    config_name: Short | None = Field(default=None, description="The config serving again (reverted only).")
    failed_config_name: Short = Field(description="This run's config, which missed the limit.")
    reason: str = Field(max_length=1536, description="The run's failure in words: the figures and the rollback.")


class WaitCounter(Payload):
    """Endpoint polls so far (bounded by :attr:`Timing.max_endpoint_waits`)."""

    MAX_BYTES: ClassVar[int] = 128

    count: int = Field(ge=0, le=1_000_000)


class RunSummary(Payload):
    """What RecordSuccess / RecordFailure return: the detail of the EventBridge event the ASL publishes."""

    MAX_BYTES: ClassVar[int] = 24 * 1024

    run_id: Short | None = Field(description="None when the trigger could not be parsed at all.")
    task_id: Short | None = None
    status: Literal["SUCCEEDED", "FAILED"]
    spec_uri: Annotated[str, Field(max_length=1100)] | None = None
    spec_version: Short | None = None
    execution_arn: ExecutionArn
    error: Short | None = Field(default=None, description="Error name when FAILED.")
    reason: str = Field(default="", max_length=2048, description="Why it failed, in words (FAILED only).")
    endpoint_name: Short | None = None
    student: Short | None = None
    student_after_accuracy: float | None = None
    estimated_training_cost_usd: float | None = None
    actual_training_cost_usd: float | None = None
    spot: bool | None = Field(default=None, description="The training job ran (or was planned) on managed spot.")
    actual_spot_saving_usd: float | None = Field(
        default=None,
        description="Managed spot's measured saving: (training - billable seconds) x the on-demand rate, USD.",
    )
    predicted_p50_latency_ms: float | None = Field(default=None, description="The plan's p50, ms.")
    measured_p50_latency_ms: float | None = Field(
        default=None, description="CheckLatency's measured p50 at the spec's shape and concurrency, ms."
    )
    measured_p90_latency_ms: float | None = Field(default=None, description="CheckLatency's measured p90, ms.")
    predicted_tokens_per_s: float | None = Field(default=None, description="The plan's throughput, tokens/s.")
    measured_tokens_per_s: float | None = Field(default=None, description="CheckLatency's throughput, tokens/s.")
    latency_passed: bool | None = Field(
        default=None, description="Measured p50 within latency.p50_ms x (1 + tolerance); None: not measured."
    )
    finished_at: datetime


class StateDocument(Payload):
    """The whole document the state machine carries (see the module docstring for who writes each key)."""

    MAX_BYTES: ClassVar[int] = 200 * 1024

    trigger: dict[str, Any] | None = None
    timing: Timing
    run: RunContext | None = None
    prices: PriceTableRef | None = None
    plan: PlanRef | None = None
    fallback: FallbackInfo | None = None
    job: TrainingRequest | None = None
    training: TrainingJobRef | None = None
    evaluation: EvaluationResult | None = None
    deployment: DeploymentRef | None = None
    endpoint: EndpointPoll | None = None
    latency: LatencyCheck | None = None
    rollback: RollbackRef | None = None
    waits: WaitCounter | None = None
    quota: QuotaHit | None = None
    busy: StateError | None = None
    error: StateError | None = None
    record: RunSummary | None = None

    def to_state(self) -> dict[str, Any]:
        """JSON-safe dict without the top-level keys that are unset (FallBackToNextPlan returns the whole
        document); nested payloads keep their exact shape."""
        data = {k: v for k, v in self.model_dump(mode="json").items() if v is not None}
        size = len(json.dumps(data, ensure_ascii=False).encode("utf-8"))
        if size > self.MAX_BYTES:
            raise PayloadTooLargeError(f"StateDocument is {size} bytes; budget {self.MAX_BYTES}")
        return data


# --------------------------------------------------------------------------------------------------------
# What each step needs of the document: the keys it cannot run without are required, so a step reads typed
# fields (no ``Any``) and a document reaching it out of order fails validation naming the missing key.


class RunState(StateDocument):
    """Every step after ValidateSpec: the run has started."""

    run: RunContext


class TriggeredState(StateDocument):
    """ValidateSpec: the raw trigger (an S3 Object Created event or a sweep's re-distill request)."""

    trigger: dict[str, Any]


class PricedState(RunState):
    """SelectPlan: the price table LookUpPrices wrote."""

    prices: PriceTableRef


class PlannedState(RunState):
    """PrepareTrainingJob: the chosen plan."""

    plan: PlanRef


class QuotaHitState(PlannedState):
    """FallBackToNextPlan: the plan that hit a quota, the quota error and the prices to re-plan with."""

    prices: PriceTableRef
    quota: QuotaHit


class TrainedState(PlannedState):
    """EvaluationGate: the finished training job."""

    training: TrainingJobRef


class EvaluatedState(TrainedState):
    """Deploy: the gate's evaluation of the trained student."""

    evaluation: EvaluationResult


class EndpointState(PlannedState):
    """CheckLatency and FinishDeployment: the deployment and the endpoint's last poll."""

    deployment: DeploymentRef
    endpoint: EndpointPoll


class MeasuredState(EndpointState):
    """RollBackDeployment: the deployment, the endpoint's last poll and the latency check it failed."""

    latency: LatencyCheck


class DeployedState(PlannedState):
    """RecordSuccess: the deployment and the evaluation that let it through."""

    deployment: DeploymentRef
    evaluation: EvaluationResult


S = TypeVar("S", bound=StateDocument)


class StepEvent(Payload, Generic[S]):
    """What every Lambda task receives: the document (as the step's own state model ``S``) and the
    execution that runs it."""

    MAX_BYTES: ClassVar[int] = 220 * 1024

    state: S
    execution_arn: ExecutionArn


class RunStarted(Payload):
    """ValidateSpec's result (the ASL makes it the new document: the raw trigger is dropped)."""

    MAX_BYTES: ClassVar[int] = 20 * 1024

    run: RunContext
    timing: Timing


class ArtifactsPrefix(Payload):
    """Where a run's artifacts live (``s3://<artifacts>/runs/<run_id>/``)."""

    MAX_BYTES: ClassVar[int] = 1024

    uri: OwnUri
