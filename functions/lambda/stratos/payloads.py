"""The payloads the pipeline's steps exchange, each with a size budget.

The one model of the whole document the state machine carries is
:class:`stratos.pipeline.models.StateDocument` (its docstring lists which state writes each key); the models
here are what its keys hold.

Step Functions rejects any state input or output above 256 KiB (262,144 bytes, UTF-8). Everything that
grows with the catalog or the data (price tables, the full candidate grid, per-example predictions) is
written to S3 and the state carries an :class:`S3Pointer`. Every model here declares ``MAX_BYTES``, and
:func:`size_upper_bound` proves from the field limits (every string, list and dict is length-bounded) that
no instance can exceed it; :data:`STATE_BUDGET_BYTES`, a quarter of the service limit, bounds each payload.
"""

from __future__ import annotations

import json
import types
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from annotated_types import MaxLen
from pydantic import BaseModel, ConfigDict, Field

from stratos.errors import PayloadTooLargeError
from stratos.naming import RunNames, SpecIdentity
from stratos.spec import DistillationMode
from stratos.types import OwnUri, SafeAscii, Short
from stratos_contract.parallelism import ParallelismPlan

#: Step Functions' limit on a state's input/output, bytes (UTF-8 JSON).
SFN_PAYLOAD_LIMIT_BYTES = 256 * 1024
#: What the whole state document may use: a quarter of the limit, leaving room for AWS-added fields
#: (error causes, Map state context) and for growth.
STATE_BUDGET_BYTES = SFN_PAYLOAD_LIMIT_BYTES // 4
#: How many plans a state carries inline; the rest of the frontier lives in S3.
FRONTIER_INLINE_K = 5
#: Where LookUpPrices' instance quotas came from: ``live`` = the Service Quotas API answered; ``unreadable`` = it
#: did not (access denied, throttled, unreachable), and the instance allow-lists stand in.
QuotaSource = Literal["live", "unreadable"]


class Payload(BaseModel):
    """Base of every state payload: unknown fields rejected, JSON-mode dump, a size budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    MAX_BYTES: ClassVar[int] = 8 * 1024

    def to_state(self) -> dict[str, Any]:
        """JSON-safe dict for a state output.

        Raises:
            PayloadTooLargeError: if the encoded size exceeds ``MAX_BYTES`` (cannot happen for instances
                that passed validation; checked anyway because it is cheap).
        """
        data = self.model_dump(mode="json")
        size = len(json.dumps(data, ensure_ascii=False).encode("utf-8"))
        if size > self.MAX_BYTES:
            raise PayloadTooLargeError(f"{type(self).__name__} is {size} bytes; budget {self.MAX_BYTES}")
        return data


class S3Pointer(Payload):
    """A large result stored in S3 instead of in the state."""

    MAX_BYTES: ClassVar[int] = 2 * 1024

    uri: OwnUri = Field(description="s3://bucket/key of the object.")
    bytes: int = Field(ge=0, description="Object size, bytes.")
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", max_length=64), SafeAscii()] = Field(
        description="Hex SHA-256 of the object, to detect a swapped object."
    )


class RunContext(Payload):
    """Output of ValidateSpec: who the run is. Carried unchanged through every later state."""

    MAX_BYTES: ClassVar[int] = 16 * 1024

    spec: SpecIdentity = Field(description="The spec object version this run executes (decoded key).")
    names: RunNames = Field(description="Every resource name of this run.")
    task_id: Short = Field(description="The spec's task_id.")
    region: Short = Field(description="AWS region the run plans and trains in (constraints.region).")
    mode_requested: DistillationMode = Field(description="distillation.mode from the spec.")
    trigger: Literal["upload", "schedule", "manual"] = Field(description="What started the run.")
    started_at: datetime = Field(description="When ValidateSpec accepted the spec, UTC.")
    spec_modified_at: datetime | None = Field(
        default=None,
        description="The spec version's S3 LastModified, UTC: orders a task's spec versions, so a late run of an "
        "older version never replaces a newer deployment (None when S3 did not say).",
    )
    spec_copy: S3Pointer = Field(
        description="Immutable copy of the validated spec under runs/<run_id>/spec.json (never under specs/)."
    )


class PriceTableRef(Payload):
    """Output of LookUpPrices: where the price/latency table is and how trustworthy it is."""

    MAX_BYTES: ClassVar[int] = 4 * 1024

    table: S3Pointer = Field(description="JSON table: one row per (instance type, component).")
    region: Short
    source: Literal["live", "snapshot", "mixed"] = Field(
        description="live = AWS Pricing API; snapshot = the catalog's dated figures; mixed = some of each."
    )
    instance_types: int = Field(ge=0, description="Instance types with a known price, count.")
    unknown_prices: int = Field(ge=0, description="Types with no known price (excluded from planning), count.")
    snapshot_date: Short = Field(description="Date of the catalog snapshot used as fallback, ISO 8601.")
    quotas: QuotaSource | None = Field(
        default=None,
        description="The account's SageMaker instance quotas stored with the table (stratos.aws.quotas): live = read "
        "from the Service Quotas API (SelectPlan excludes a type whose quota is below the plan's instance count); "
        "unreadable = the role could not read them (only the instance allow-lists restrict types); None = not read.",
    )
    zero_quota_types: int = Field(
        default=0, ge=0, description="Instance types with a training, spot training or endpoint quota of 0, count."
    )


class EstimateBand(Payload):
    """How sure the planner is of one estimate (:mod:`stratos.planner.calibration`): the estimators' own figure,
    the band around the plan's figure, and how many past runs calibrated it."""

    MAX_BYTES: ClassVar[int] = 256

    uncalibrated: float = Field(description="The estimators' figure before calibration, the estimate's unit.")
    band: float = Field(ge=0, description="Half-width of the band, the estimate's unit (estimate +- band).")
    runs: int = Field(default=0, ge=0, description="Past runs the calibration learnt from (0 = not calibrated).")


class PlanSummary(Payload):
    """One candidate deployment plan, as shown to users and carried in states."""

    MAX_BYTES: ClassVar[int] = 2 * 1024

    teacher: Short = Field(description="Teacher model id.")
    student: Short = Field(description="Student model id.")
    training_instance: Short = Field(description="SageMaker training instance type, e.g. ml.g5.2xlarge.")
    serving_instance: Short = Field(description="SageMaker hosting instance type.")
    mode: DistillationMode = Field(description="alignment or injection (auto is resolved by the planner).")
    expected_accuracy: float = Field(ge=0, le=1, description="Predicted accuracy after distillation, 0..1.")
    p50_latency_ms: float = Field(ge=0, description="Predicted p50 request latency, ms.")
    training_hours: float = Field(
        ge=0, description="Predicted training wall time, hours (managed spot: interruption overhead included)."
    )
    training_cost_usd: float = Field(
        ge=0, description="Predicted training job cost, USD (managed spot: after the expected spot saving)."
    )
    serving_cost_usd: float = Field(ge=0, description="Serving cost over the spec's serving_months, USD.")
    total_cost_usd: float = Field(ge=0, description="training_cost_usd + serving_cost_usd, USD.")
    score: float = Field(description="Deployment score (higher is better), see the planner.")
    parallelism: ParallelismPlan | None = Field(
        default=None,
        description="How the training job spreads over its hardware (strategy, nodes x devices, micro-batch x "
        "accumulation, teacher placement, per-device memory estimate vs capacity): PrepareTrainingJob sends it "
        "and sets InstanceCount to its nodes; None for plans made before the planner chose one (one node).",
    )
    spot: bool = Field(
        default=False,
        description="The training job runs on managed spot capacity (EnableManagedSpotTraining; constraints.spot).",
    )
    on_demand_usd_per_hour: float | None = Field(
        default=None,
        ge=0,
        description="On-demand price of the training job (instance price x nodes), USD/hour: SageMaker bills "
        "BillableTimeInSeconds at it (a spot job's saving shows as fewer billable seconds). None in plans made "
        "before it was recorded.",
    )
    on_demand_training_cost_usd: float | None = Field(
        default=None,
        ge=0,
        description="The same training job on-demand, USD (its uninterrupted hours x on_demand_usd_per_hour); "
        "equals training_cost_usd for an on-demand plan.",
    )
    spot_saving_usd: float = Field(
        default=0.0,
        description="Expected saving of managed spot: on_demand_training_cost_usd - training_cost_usd, USD (0 "
        "on-demand). A planning figure from the catalog's dated spot snapshot; the run record keeps the measured "
        "one.",
    )
    accuracy_band: EstimateBand | None = Field(
        default=None, description="expected_accuracy's band (fraction) and calibration; None in older plans."
    )
    training_hours_band: EstimateBand | None = Field(
        default=None, description="training_hours' band (hours) and calibration; None in older plans."
    )
    p50_latency_band: EstimateBand | None = Field(
        default=None, description="p50_latency_ms' band (ms) and calibration; None in older plans."
    )
    teacher_tokens: int = Field(
        default=0, ge=0, description="An external teacher's expected tokens (input + output), count; 0 otherwise."
    )
    teacher_tokens_usd: float = Field(
        default=0.0,
        ge=0,
        description="Their price (Bedrock on-demand per-token prices; 0 for an endpoint), USD; included in "
        "training_cost_usd.",
    )
    teacher_usd_per_1k_input: float | None = Field(
        default=None,
        ge=0,
        description="An external teacher's USD per 1,000 input tokens that priced them (live Pricing API or the dated "
        "snapshot); the training job counts its spending at it. None for a teacher the job loads.",
    )
    teacher_usd_per_1k_output: float | None = Field(
        default=None, ge=0, description="The same per 1,000 output tokens, USD; None for a teacher the job loads."
    )


class PlanRef(Payload):
    """Output of SelectPlan: the chosen plan, a few runners-up, and a pointer to everything else."""

    MAX_BYTES: ClassVar[int] = 24 * 1024

    plan: PlanSummary
    max_runtime_seconds: int = Field(
        ge=60, le=28 * 24 * 3600, description="Training job's StoppingCondition, from budget / price, s."
    )
    frontier_top: list[PlanSummary] = Field(
        max_length=FRONTIER_INLINE_K, description="Best Pareto-frontier plans after the chosen one."
    )
    frontier: S3Pointer = Field(description="Full frontier, baselines and rejection counts (JSON).")
    candidates: int = Field(ge=0, description="Candidates considered, count.")
    rejected: dict[Short, int] = Field(max_length=32, description="Rejected candidates by reason, count.")
    baselines: dict[Literal["accuracy_first", "cost_first", "latency_first"], PlanSummary] = Field(
        max_length=3, description="Single-objective picks from the same feasible set."
    )
    attempt: int = Field(default=0, ge=0, le=99, description="Index of the plan in the fallback order.")


class TrainingJobRef(Payload):
    """Training job as created, then as last described by the poll loop."""

    MAX_BYTES: ClassVar[int] = 8 * 1024

    job_name: Short
    status: Literal["InProgress", "Completed", "Failed", "Stopping", "Stopped"]
    secondary_status: Short = ""
    failure_reason: str = Field(default="", max_length=512, description="SageMaker's FailureReason.")
    model_artifacts: S3Pointer | None = Field(default=None, description="model.tar.gz once Completed.")
    output_prefix: OwnUri = Field(description="s3:// prefix of the job's output.")
    training_seconds: int = Field(default=0, ge=0, description="Wall time so far, s.")
    billable_seconds: int = Field(default=0, ge=0, description="Billed time, s.")


class TrainingMetrics(Payload):
    """What the training container reports in output/data/metrics.json (the evaluation gate reads it)."""

    MAX_BYTES: ClassVar[int] = 10 * 1024

    mode: DistillationMode = Field(description="Mode actually run (alignment or injection).")
    mode_reason: str = Field(max_length=512, description="Why that mode: the rule and its evidence.")
    teacher_accuracy: float | None = Field(default=None, ge=0, le=1, description="Teacher on eval set, 0..1.")
    student_before_accuracy: float | None = Field(default=None, ge=0, le=1, description="Before, 0..1.")
    student_after_accuracy: float = Field(ge=0, le=1, description="Distilled student on eval set, 0..1.")
    eval_examples: int = Field(ge=0, description="Held-out examples scored, count.")
    train_examples: int = Field(ge=0, description="Training examples used, count.")
    train_tokens: int = Field(ge=0, description="Completion tokens trained on, count.")
    final_loss: float | None = Field(default=None, description="Last logged training loss.")
    extra: dict[Short, float] = Field(default_factory=dict, max_length=32, description="Other scalar metrics.")


class StratumResult(BaseModel):
    """Exact answers in one stratum of an evaluation or probe set."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    correct: int = Field(ge=0, description="Exact answers, count.")
    n: int = Field(ge=0, description="Problems scored, count.")
    accuracy: float = Field(ge=0, le=1, description="correct / n, 0..1.")


class InjectionRound(BaseModel):
    """One round of weakness-targeted Knowledge Injection, as the container reports it (metrics.json
    ``injection_rounds``); kept in the run record."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    round: int = Field(ge=1, le=64)
    examples: int = Field(ge=0, description="Training examples of the round, count.")
    train_tokens: int = Field(ge=0, description="Completion tokens of the round, count.")
    weights: dict[Short, float] = Field(default_factory=dict, max_length=32, description="Draw weight per stratum.")
    drawn: dict[Short, int] = Field(default_factory=dict, max_length=32, description="Examples per stratum.")
    probe: dict[Short, StratumResult] = Field(default_factory=dict, max_length=32, description="Probe per stratum.")
    probe_accuracy: float = Field(ge=0, le=1, description="Mean of the per-stratum probe accuracies, 0..1.")
    seconds: float = Field(ge=0, description="Wall time of the round, s.")


class EvalSetResult(BaseModel):
    """One held-out set's scores for one model (metrics.json ``eval_sets.<set>.<model>``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    accuracy: float = Field(ge=0, le=1)
    partial: float = Field(ge=0, le=1)
    examples: int = Field(ge=0)
    correct: int = Field(ge=0)
    strata: dict[Short, StratumResult] = Field(default_factory=dict, max_length=32)


class EvaluationResult(Payload):
    """Output of the evaluation gate."""

    MAX_BYTES: ClassVar[int] = 14 * 1024

    passed: bool
    reason: str = Field(max_length=512)
    metrics: TrainingMetrics


class DeploymentRef(Payload):
    """Output of Deploy and its poll loop."""

    MAX_BYTES: ClassVar[int] = 4 * 1024

    endpoint_name: Short
    endpoint_config_name: Short
    model_name: Short
    action: Literal["created", "updated", "recreated"]
    status: Literal["Creating", "Updating", "InService", "RollingBack", "Failed", "OutOfService", "SystemUpdating"]
    previous_config_name: Short | None = None
    serving_instance: Short


# --------------------------------------------------------------------------------------------------------
# Static size bounds.

_JSON_CHAR_MAX = 6  # a control character is written as \u00XX: 6 bytes (UTF-8 never needs more than 4)
_NUMBER_MAX = 24  # repr of a float64/int64 in JSON


class UnboundedFieldError(TypeError):
    """A payload field has no length limit, so its size cannot be bounded."""


def size_upper_bound(annotation: Any, metadata: tuple[Any, ...] = ()) -> int:
    """Upper bound, bytes, of the JSON encoding of any valid value of ``annotation``.

    Strings count 6 bytes a character (worst-case escaping); numbers 24; datetimes 34; nested models
    sum their fields plus keys and punctuation.

    Raises:
        UnboundedFieldError: a ``str``, ``list`` or ``dict`` without ``max_length`` somewhere inside.
    """
    max_len = next((m.max_length for m in metadata if isinstance(m, MaxLen)), None)
    per_char = 1 if any(isinstance(m, SafeAscii) for m in metadata) else _JSON_CHAR_MAX
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *extra = get_args(annotation)
        extra_meta: list[Any] = []
        for item in extra:
            extra_meta.extend(getattr(item, "metadata", [item]))
        return size_upper_bound(base, (*metadata, *extra_meta))
    if origin in (Union, types.UnionType):
        return max(size_upper_bound(arg, metadata) for arg in get_args(annotation))
    if origin is Literal:
        return max(len(json.dumps(arg)) for arg in get_args(annotation))
    if origin in (list, dict):
        if max_len is None:
            raise UnboundedFieldError(f"{annotation} has no max_length")
        args = get_args(annotation)
        item = sum(size_upper_bound(a) for a in args) + (1 if origin is dict else 0)
        return 2 + max_len * (item + 1)
    if annotation is type(None):
        return 4
    if annotation is bool:
        return 5
    if annotation in (int, float):
        return _NUMBER_MAX
    if annotation is datetime:
        return 34
    if annotation is str:
        if max_len is None:
            raise UnboundedFieldError("str field has no max_length")
        return 2 + per_char * max_len
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return max(len(json.dumps(m.value)) for m in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        total = 2
        for name, field in annotation.model_fields.items():
            try:
                total += len(json.dumps(name)) + 2 + size_upper_bound(field.annotation, tuple(field.metadata))
            except UnboundedFieldError as exc:
                raise UnboundedFieldError(f"{annotation.__name__}.{name}: {exc}") from exc
        return total
    raise UnboundedFieldError(f"cannot bound {annotation!r}")
