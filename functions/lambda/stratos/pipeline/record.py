"""RecordSuccess and RecordFailure: close the run record, update the task record, summarise the run.

The summary (:class:`~stratos.pipeline.models.RunSummary`) is what the state machine then publishes to
EventBridge (``Stratos Run Succeeded`` / ``Stratos Run Failed``). RecordFailure works from any point of
the run, including before the run had an id (an unparseable trigger) or a record (then it writes nothing).
It never touches an endpoint.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from stratos.errors import DuplicateRunError, StratosError
from stratos.naming import run_names
from stratos.payloads import Payload
from stratos.pipeline.models import DeployedState, RunSummary, StateDocument, StateError
from stratos.pipeline.services import Services, get_services
from stratos.pipeline.state import parse_step_event, utcnow
from stratos.run_record import ActualTraining, EndpointRecord, ErrorRecord, GateRecord, PredictedVsActual, RunRecord
from stratos.types import Short
from stratos_contract.runs import RunStatus, Stage


def error_reason(error: StateError) -> str:
    """A sentence from a caught error: a Lambda's cause is ``{"errorMessage": ...}`` JSON, others are text."""
    cause = error.Cause.strip()
    if cause.startswith("{"):
        try:
            parsed = json.loads(cause)
        except ValueError:
            return cause[:2048]
        if isinstance(parsed, dict) and parsed.get("errorMessage"):
            return str(parsed["errorMessage"])[:2048]
    return (cause or error.Error)[:2048]


def _run_id(doc: StateDocument) -> str | None:
    if doc.run is not None:
        return doc.run.names.run_id
    if doc.trigger is not None:
        from stratos.events import identity_from_trigger  # only when the run failed before ValidateSpec finished

        try:
            return run_names(identity_from_trigger(doc.trigger), "pending").run_id
        except StratosError:
            return None
    return None


def _training_job(svc: Services, doc: StateDocument) -> dict[str, Any] | None:
    """DescribeTrainingJob of the run's job, if it has one (``None`` when SageMaker cannot answer now: the
    record must still close)."""
    if doc.training is None:
        return None
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return svc.sagemaker.describe_training_job(doc.training.job_name)
    except (ClientError, BotoCoreError, StratosError):
        return None


def _actual_training(description: dict[str, Any] | None, doc: StateDocument) -> ActualTraining | None:
    """Billable time and cost of the run's training job, whatever its outcome (a failed job is billed too)."""
    if description is None or doc.plan is None:
        return None
    from stratos.pipeline.gate import actual_training

    return actual_training(description, doc.plan)


def latency_measured(record: dict[str, Any]) -> tuple[float | None, float | None]:
    """``(p50 ms, generated tokens/s per serving instance)`` the post-deploy check measured (the record's
    ``latency``: the endpoint's tokens/s over its ``instance_count``); ``(None, None)`` before a check."""
    check = record.get("latency")
    measured = check.get("measured") if isinstance(check, dict) else None
    if not isinstance(check, dict) or not isinstance(measured, dict):
        return None, None
    p50, rate = measured.get("p50_ms"), measured.get("tokens_per_s")
    instances = check.get("instance_count")
    if isinstance(rate, int | float) and isinstance(instances, int) and instances > 0:
        rate = rate / instances
    return (
        float(p50) if isinstance(p50, int | float) else None,
        float(rate) if isinstance(rate, int | float) else None,
    )


def measured_latency(record: dict[str, Any]) -> PredictedVsActual | None:
    """The record's ``predicted_vs_actual`` with the post-deploy check's measured p50 latency and tokens/s
    (:func:`latency_measured`) filled in; None when the record has no such block or no measurement."""
    from stratos.planner.calibration import comparison_of, with_latency

    pva = comparison_of(record)
    p50, rate = latency_measured(record)
    if pva is None or (p50 is None and rate is None):
        return None
    return with_latency(pva, p50, rate)


def latency_summary(doc: StateDocument) -> dict[str, Any]:
    """The run summary's latency fields from CheckLatency's result (``$.latency``): predicted vs measured p50
    and tokens/s and the verdict (only the plan's p50 when the endpoint was never measured)."""
    check = doc.latency
    if check is None:
        return {"predicted_p50_latency_ms": doc.plan.plan.p50_latency_ms if doc.plan else None}
    return {
        "predicted_p50_latency_ms": check.predicted_p50_ms,
        "measured_p50_latency_ms": check.measured.p50_ms,
        "measured_p90_latency_ms": check.measured.p90_ms,
        "predicted_tokens_per_s": check.predicted_tokens_per_s,
        "measured_tokens_per_s": check.measured.tokens_per_s,
        "latency_passed": check.passed,
    }


def record_success(event: Any, services: Services | None = None) -> RunSummary:
    """Mark the run SUCCEEDED; the task record's ``last_success`` becomes this run (the sweep reads it). The
    record's ``predicted_vs_actual`` gets the measured latency (:func:`measured_latency`)."""
    svc = services or get_services()
    step = parse_step_event(event, DeployedState)
    doc = step.state
    run, deployment, evaluation, plan = doc.run, doc.deployment, doc.evaluation, doc.plan
    metrics = evaluation.metrics
    now = utcnow()
    actual = _actual_training(_training_job(svc, doc), doc)
    record = svc.records.get(run.names.run_id) or {}
    svc.records.update(
        run.names.run_id,
        step.execution_arn,
        RunRecord(
            status=RunStatus.SUCCEEDED,
            stage=Stage.DONE,
            finished_at=now,
            updated_at=now,
            endpoint=EndpointRecord(name=deployment.endpoint_name, config=deployment.endpoint_config_name),
            actual=actual,
            predicted_vs_actual=measured_latency(record),
        ),
    )
    svc.records.put_task(
        run.task_id,
        {
            "last_run_id": run.names.run_id,
            "last_run_status": "SUCCEEDED",
            "updated_at": now.isoformat(),
            "last_success": {
                "run_id": run.names.run_id,
                "finished_at": now.isoformat(),
                "spec": run.spec.model_dump(mode="json"),
                "endpoint_name": deployment.endpoint_name,
                "student": plan.plan.student,
                "student_after_accuracy": metrics.student_after_accuracy,
                "prices_used": record.get("prices_used") or {},
                "data_versions": record.get("data_versions") or {},
                "redistill": record.get("redistill"),
            },
        },
    )
    return RunSummary(
        run_id=run.names.run_id,
        task_id=run.task_id,
        status="SUCCEEDED",
        spec_uri=run.spec.uri,
        spec_version=run.spec.version_id or run.spec.etag or None,
        execution_arn=step.execution_arn,
        endpoint_name=deployment.endpoint_name,
        student=plan.plan.student,
        student_after_accuracy=metrics.student_after_accuracy,
        estimated_training_cost_usd=plan.plan.training_cost_usd,
        actual_training_cost_usd=None if actual is None else actual.training_cost_usd,
        spot=plan.plan.spot if actual is None else actual.spot,
        actual_spot_saving_usd=None if actual is None else actual.spot_saving_usd,
        **latency_summary(doc),
        finished_at=now,
    )


def record_failure(event: Any, services: Services | None = None) -> RunSummary:
    """Mark the run FAILED with the error's name and reason (when the run has a record this execution owns).

    Never raises for a record it cannot write (no run id yet, or another execution's record): the failure
    is still summarised and published.
    """
    svc = services or get_services()
    step = parse_step_event(event, StateDocument)
    doc = step.state
    error = doc.error or StateError(Error="UnknownError", Cause="the run failed without an error document")
    reason = error_reason(error)
    now = utcnow()
    run_id = _run_id(doc)
    description = _training_job(svc, doc)
    actual = _actual_training(description, doc)
    failure = str((description or {}).get("FailureReason") or "")
    if failure and error.Error in ("TrainingFailedError", "TrainingStoppedError") and failure not in reason:
        reason = f"{reason}: {failure}"[:2048]
    if run_id is not None:
        # A run the latency check failed keeps its measured figures beside the prediction too.
        pva = measured_latency(svc.records.get(run_id) or {}) if doc.deployment is not None else None
        fields = RunRecord(
            status=RunStatus.FAILED,
            predicted_vs_actual=pva,
            stage=Stage.FAILED,
            error=ErrorRecord(name=error.Error, reason=reason),
            finished_at=now,
            updated_at=now,
            actual=actual,
            gate=None if (ev := doc.evaluation) is None else GateRecord(passed=ev.passed, reason=ev.reason),
        )
        try:
            svc.records.update(run_id, step.execution_arn, fields)
        except DuplicateRunError:
            pass  # no record of ours (failed before the claim): nothing to close
        else:
            if doc.run is not None:
                svc.records.put_task(
                    doc.run.task_id,
                    {"last_run_id": run_id, "last_run_status": "FAILED", "updated_at": now.isoformat()},
                )
    run = doc.run
    return RunSummary(
        run_id=run_id,
        task_id=run.task_id if run else None,
        status="FAILED",
        spec_uri=run.spec.uri if run else None,
        spec_version=(run.spec.version_id or run.spec.etag or None) if run else None,
        execution_arn=step.execution_arn,
        error=error.Error,
        reason=reason,
        endpoint_name=run.names.endpoint_name if run else None,
        student=doc.plan.plan.student if doc.plan else None,
        student_after_accuracy=doc.evaluation.metrics.student_after_accuracy if doc.evaluation else None,
        estimated_training_cost_usd=doc.plan.plan.training_cost_usd if doc.plan else None,
        actual_training_cost_usd=None if actual is None else actual.training_cost_usd,
        spot=(doc.plan.plan.spot if doc.plan else None) if actual is None else actual.spot,
        actual_spot_saving_usd=None if actual is None else actual.spot_saving_usd,
        **latency_summary(doc),
        finished_at=now,
    )


class AbandonedRun(Payload):
    """What RecordAbandoned did."""

    run_id: Short | None = Field(description="The run the execution would own; None if the input is not a trigger.")
    closed: bool = Field(description="The record was RUNNING, owned by that execution, and is now FAILED.")


def record_abandoned(event: Any, services: Services | None = None) -> AbandonedRun:
    """Close the record of a run whose execution ended without reaching RecordFailure (TIMED_OUT, ABORTED).

    Args:
        event: EventBridge "Step Functions Execution Status Change" (``detail``: ``executionArn``, ``status``,
            ``input`` as a JSON string).

    Returns:
        ``closed`` is False when the execution owned no record (a duplicate, or it ended before the claim) or
        the record was already closed.

    Raises:
        EventShapeError: not such an event.
    """
    from stratos.errors import EventShapeError, FieldError
    from stratos.events import identity_from_trigger

    svc = services or get_services()
    detail = event.get("detail") if isinstance(event, dict) else None
    if not isinstance(detail, dict) or not detail.get("executionArn") or not detail.get("status"):
        raise EventShapeError(
            [FieldError("detail", repr(detail)[:80], "expected a Step Functions Execution Status Change event")],
            "execution status event",
        )
    try:
        trigger = json.loads(detail.get("input") or "{}")
        run_id = run_names(identity_from_trigger(trigger), "pending").run_id
    except (ValueError, StratosError):
        return AbandonedRun(run_id=None, closed=False)
    record = svc.records.get(run_id)
    if not record or record.get("execution_arn") != detail["executionArn"] or record.get("status") != "RUNNING":
        return AbandonedRun(run_id=run_id, closed=False)
    ended = utcnow()
    now = ended.isoformat()
    name = {"TIMED_OUT": "States.Timeout", "ABORTED": "ExecutionAborted"}.get(str(detail["status"]), "ExecutionFailed")
    svc.records.update(
        run_id,
        str(detail["executionArn"]),
        RunRecord(
            status=RunStatus.FAILED,
            stage=Stage.FAILED,
            error=ErrorRecord(
                name=name, reason=f"the execution ended {detail['status']} at stage {record.get('stage')}"
            ),
            finished_at=ended,
            updated_at=ended,
        ),
    )
    if record.get("task_id"):
        svc.records.put_task(str(record["task_id"]), {"last_run_status": "FAILED", "updated_at": now})
    return AbandonedRun(run_id=run_id, closed=True)
