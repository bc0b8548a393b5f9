"""The run's item in the runs table (``template.yaml`` ``RunsTable``), as the steps write it.

Each step writes a :class:`RunRecord` holding only the fields it sets (every field is optional; unset ones are
left as they are in the table): a misspelt or unknown field fails when the record is built, not in
DynamoDB. Sub-documents that are themselves payloads (the plan, the deployment, the fallback) are stored as
their JSON dumps.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stratos_contract.runs import RunStatus, Stage


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModeRecord(_Record):
    """The distillation mode as the spec asked for it, the planner predicted it and the job ran it."""

    requested: str = Field(description="The spec's distillation.mode: auto, alignment or injection.")
    planned: str | None = Field(default=None, description="The mode the chosen plan was sized for.")
    actual: str | None = Field(default=None, description="The mode the training job ran.")
    reason: str | None = Field(default=None, description="The job's reason for its mode, one sentence.")
    evidence: dict[str, Any] | None = Field(default=None, description="The job's mode evidence (probe figures).")


class GateRecord(_Record):
    """The evaluation gate's verdict."""

    passed: bool
    reason: str


class ActualTraining(_Record):
    """The run's training job as SageMaker measured it (DescribeTrainingJob), priced at the plan's on-demand rate.

    SageMaker bills ``BillableTimeInSeconds`` (per instance) at the on-demand price; a managed spot job's saving
    shows as fewer billable than training seconds, and SageMaker's own savings figure is
    ``1 - BillableTimeInSeconds / TrainingTimeInSeconds``.
    """

    training_seconds: int = Field(ge=0, description="TrainingTimeInSeconds, s.")
    billable_seconds: int = Field(ge=0, description="BillableTimeInSeconds, s.")
    training_hours: float = Field(ge=0, description="training_seconds in hours.")
    training_cost_usd: float = Field(ge=0, description="billable_seconds x training_usd_per_hour / 3600, USD.")
    training_usd_per_hour: float = Field(
        ge=0, description="On-demand price of the job (instance price x nodes), USD/hour."
    )
    spot: bool = Field(default=False, description="The job ran on managed spot capacity.")
    spot_saving_fraction: float | None = Field(
        default=None,
        le=1,
        description="Spot only: 1 - billable_seconds / training_seconds (SageMaker's savings), fraction.",
    )
    spot_saving_usd: float | None = Field(
        default=None,
        description="Spot only: (training_seconds - billable_seconds) x training_usd_per_hour / 3600, USD: what "
        "the same training time would have cost more on-demand.",
    )


class Comparison(_Record):
    """One planner estimate against what the run measured, in the figure's own unit (fraction, hours, USD, ms,
    tokens/s). ``error = actual - predicted``; ``relative_error = error / predicted`` (None when the prediction is
    0 or either side is missing), so a positive error means the run measured more than was predicted."""

    predicted: float | None = Field(default=None, description="The plan's figure (after calibration).")
    actual: float | None = Field(default=None, description="What the run measured; None until measured.")
    error: float | None = Field(default=None, description="actual - predicted, the figure's unit.")
    relative_error: float | None = Field(default=None, description="(actual - predicted) / predicted, fraction.")
    uncalibrated: float | None = Field(
        default=None,
        description="The estimators' own figure before calibration from past runs: what calibration learns from "
        "(stratos.planner.calibration).",
    )
    band: float | None = Field(
        default=None, ge=0, description="Half-width of the prediction's band, the figure's unit (predicted +- band)."
    )
    runs: int | None = Field(default=None, ge=0, description="Past runs the prediction was calibrated on.")

    @classmethod
    def of(
        cls,
        predicted: float | None,
        actual: float | None,
        *,
        uncalibrated: float | None = None,
        band: float | None = None,
        runs: int | None = None,
    ) -> Comparison:
        """A comparison with its errors worked out (each rounded to 9 significant decimals)."""
        error = None if predicted is None or actual is None else actual - predicted
        relative = None if error is None or not predicted else error / predicted
        return cls(
            predicted=predicted,
            actual=actual,
            error=None if error is None else round(error, 9),
            relative_error=None if relative is None else round(relative, 9),
            uncalibrated=uncalibrated,
            band=band,
            runs=runs,
        )


class PredictedVsActual(_Record):
    """The plan's estimates beside the run's measurements, each with its error (issue 16): what the next runs of
    the same task kind, student and mode calibrate the planner on (:mod:`stratos.planner.calibration`).

    ``basis`` says what the predictions are for: ``plan`` = the chosen plan's instances (a run on AWS); ``local``
    = the local instance profile of the machine a local run ran on (``training_instance`` is then
    ``local:<machine>``; the AWS plan stays in the record's ``plan``). Training cost is billable seconds x the
    plan's on-demand training rate on both sides (locally: what the measured time would cost at the AWS plan's
    rate). p50 latency and tokens/s stay unmeasured (``actual`` None) until a post-deploy check measures them.
    """

    basis: Literal["plan", "local"] = Field(description="plan = the chosen plan's instances; local = this machine.")
    task_kind: str = Field(description="The spec's task.kind (calibration key).")
    teacher: str
    student: str
    mode: str = Field(description="The distillation mode the accuracy was predicted for (the plan's).")
    mode_actual: str | None = Field(default=None, description="The mode the training job ran.")
    training_instance: str = Field(description="What the training-time prediction is for (calibration key).")
    serving_instance: str = Field(description="What the latency prediction is for (calibration key).")
    accuracy: Comparison = Field(description="Expected vs measured student_after_accuracy, fraction 0..1.")
    training_hours: Comparison = Field(description="Predicted vs measured training job wall time, hours.")
    training_cost_usd: Comparison = Field(description="Predicted vs billed training cost, USD.")
    p50_latency_ms: Comparison | None = Field(default=None, description="Predicted vs measured p50 latency, ms.")
    tokens_per_s: Comparison | None = Field(
        default=None, description="Predicted vs measured generated tokens/s of one serving instance."
    )


class EndpointRecord(_Record):
    """The endpoint that serves the run's student."""

    name: str
    config: str


class ErrorRecord(_Record):
    """Why the run failed: the error's name and its message."""

    name: str
    reason: str


class RunRecord(_Record):
    """Fields of one run's record that one write sets (see the module docstring); timestamps are UTC."""

    status: RunStatus | None = None
    stage: Stage | None = None
    spec: dict[str, Any] | None = Field(default=None, description="The spec's S3 identity (bucket, key, version).")
    trigger: str | None = Field(default=None, description="What started the run: upload or schedule.")
    trigger_reason: str | None = None
    started_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    task_id: str | None = None
    endpoint_name: str | None = None
    spec_copy: str | None = Field(default=None, description="S3 URI of the run's immutable spec copy.")
    data_versions: dict[str, Any] | None = Field(default=None, description="Version of each data file read.")
    redistill: dict[str, Any] | None = Field(default=None, description="The spec's re-distillation policy.")
    mode: ModeRecord | None = None
    plan: dict[str, Any] | None = Field(default=None, description="The chosen plan with its attempt and frontier.")
    estimate: dict[str, Any] | None = Field(default=None, description="Planned hours and costs, USD.")
    prices_used: dict[str, float | None] | None = Field(default=None, description="USD/hour by instance/use.")
    fallback: dict[str, Any] | None = None
    training_job_name: str | None = None
    attempt: int | None = Field(default=None, ge=0, description="Plan attempt (0 = first plan).")
    training_instance: str | None = None
    metrics: dict[str, Any] | None = Field(default=None, description="The job's core metrics (TrainingMetrics).")
    strata: dict[str, Any] | None = Field(default=None, description="Per-stratum accuracy tables.")
    eval_sets: dict[str, Any] | None = Field(default=None, description="Further held-out sets' results.")
    injection_rounds: list[dict[str, Any]] | None = None
    gate: GateRecord | None = None
    actual: ActualTraining | None = Field(default=None, description="Measured training time and cost.")
    predicted_vs_actual: PredictedVsActual | None = Field(
        default=None, description="The plan's estimates beside the run's measurements, with their errors."
    )
    model_artifacts: str | None = Field(default=None, description="S3 URI of the job's model.tar.gz.")
    deployment: dict[str, Any] | None = None
    latency: dict[str, Any] | None = Field(
        default=None,
        description="CheckLatency's post-deploy load test (stratos.pipeline.models.LatencyCheck): measured p50, p90 "
        "and tokens/s at the spec's latency shape beside the limit and the plan's prediction, and the verdict.",
    )
    endpoint: EndpointRecord | None = None
    error: ErrorRecord | None = None

    def fields(self) -> dict[str, Any]:
        """The JSON fields this write sets (unset ones left out)."""
        out: dict[str, Any] = self.model_dump(mode="json", exclude_none=True)
        return out
