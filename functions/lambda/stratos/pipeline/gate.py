"""EvaluationGate: read the metrics the training container wrote, decide whether the student may deploy.

SageMaker packs the container's ``output/data/`` into ``<S3OutputPath>/<job>/output/output.tar.gz``; the
gate streams ``metrics.json`` out of it (:meth:`~stratos.aws.artifacts.ArtifactStore.read_archive_member`),
maps it onto :class:`~stratos.payloads.TrainingMetrics` (:func:`training_metrics`) and applies
:func:`verdict`:

1. at least one eval example was scored;
2. ``student_after_accuracy >= constraints.min_accuracy``;
3. not worse than the student serving the task's endpoint now, by more than ``STRATOS_REGRESSION_TOLERANCE``
   (absolute accuracy): a re-distillation must not replace a better model.

A rejection is a normal result (``passed = false``), so the metrics stay in the state and the run record;
the state machine then fails the run with ``EvaluationRejectedError`` without touching the endpoint.

Either way the record gets ``predicted_vs_actual`` (:func:`predicted_vs_actual`): the plan's expected accuracy,
training hours and training cost beside the job's measured ones, each with its error, and the plan's p50 latency
and tokens/s (measured later, by the post-deploy check). The planner calibrates the next runs on it.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import ValidationError

from stratos.errors import TrainingFailedError
from stratos.payloads import (
    EvalSetResult,
    EvaluationResult,
    InjectionRound,
    PlanRef,
    StratumResult,
    TrainingMetrics,
)
from stratos.pipeline.models import TrainedState
from stratos.pipeline.services import Services, get_services
from stratos.pipeline.state import load_spec, parse_step_event, utcnow
from stratos.run_record import ActualTraining, GateRecord, ModeRecord, PredictedVsActual, RunRecord
from stratos_contract.metrics import JobMetrics
from stratos_contract.runs import Stage

#: metrics.json keys that map onto TrainingMetrics fields directly.
CORE_FIELDS = (
    "mode",
    "mode_reason",
    "teacher_accuracy",
    "student_before_accuracy",
    "student_after_accuracy",
    "eval_examples",
    "train_examples",
    "train_tokens",
    "final_loss",
)
#: Scalars kept in TrainingMetrics.extra first (it holds at most 32), in this order; other numeric scalars
#: follow alphabetically while room remains.
EXTRA_FIRST = (
    "teacher_partial",
    "student_before_partial",
    "student_after_partial",
    "student_after_stop_rate",
    "train_steps",
    "train_seconds",
    "job_seconds",
    "train_total_tokens",
    "mode_evidence.coverage",
    "mode_evidence.coverage_partial",
    "mode_evidence.coverage_hard",
    "mode_evidence.complexity",
    "mode_evidence.threshold",
    "mode_evidence.probe_size",
)
MAX_EXTRA = 32
#: Largest mode-evidence document stored in the run record, bytes of JSON.
MAX_EVIDENCE_BYTES = 8 * 1024


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


#: Most injection rounds, held-out sets and strata a run record keeps (the container's own limits are lower).
MAX_ROUNDS_RECORDED = 64


def tables(raw: dict[str, Any], source: str = "metrics.json") -> dict[str, Any]:
    """The per-stratum and per-round tables of metrics.json for the run record (JSON-safe, typed on the way):
    ``strata`` (student after, eval set), ``eval_sets`` (set -> model -> :class:`EvalSetResult`) and
    ``injection_rounds`` (:class:`InjectionRound` each). Absent keys are left out.

    Raises:
        TrainingFailedError: a table is present but not in the contract's shape.
    """
    out: dict[str, Any] = {}
    try:
        if isinstance(raw.get("student_after_strata"), dict):
            strata = {str(k): StratumResult.model_validate(v) for k, v in raw["student_after_strata"].items()}
            out["strata"] = {k: v.model_dump(mode="json") for k, v in strata.items()}
        if isinstance(raw.get("eval_sets"), dict):
            out["eval_sets"] = {
                str(name): {
                    str(model): EvalSetResult.model_validate(row).model_dump(mode="json") for model, row in rows.items()
                }
                for name, rows in raw["eval_sets"].items()
            }
        rounds = raw.get("injection_rounds")
        if isinstance(rounds, list):
            out["injection_rounds"] = [
                InjectionRound.model_validate(r).model_dump(mode="json") for r in rounds[:MAX_ROUNDS_RECORDED]
            ]
    except (ValueError, AttributeError) as exc:
        raise TrainingFailedError(f"{source}: a per-stratum table does not match the metrics contract: {exc}") from exc
    return out


def training_metrics(raw: dict[str, Any], source: str = "metrics.json") -> TrainingMetrics:
    """Map the container's metrics.json onto :class:`~stratos.payloads.TrainingMetrics`.

    Core fields are copied; ``mode_reason`` is cut to 512 characters; numeric scalars (and the numeric parts
    of ``mode_evidence``) go to ``extra``, at most 32, :data:`EXTRA_FIRST` first.

    Raises:
        TrainingFailedError: a required figure (mode, student_after_accuracy, eval_examples, train_examples,
            train_tokens) is missing or of the wrong type: the container broke its contract.
    """
    missing = [k for k in ("mode", "student_after_accuracy", "eval_examples", "train_examples") if k not in raw]
    if missing:
        raise TrainingFailedError(
            f"{source} lacks {', '.join(missing)}: the training job did not finish its evaluation"
        )
    # Every key the contract's JobMetrics knows must have its type and shape; a key it does not know (a newer
    # container's figure) is kept as an extra number, so the gate never rejects a job for measuring more.
    try:
        JobMetrics.model_validate({k: v for k, v in raw.items() if k in JobMetrics.model_fields})
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise TrainingFailedError(f"{source} does not match the metrics contract: {where}") from exc
    scalars: dict[str, float] = {}
    for key, value in raw.items():
        number = _number(value)
        if number is not None and key not in CORE_FIELDS:
            scalars[key] = number
    evidence = raw.get("mode_evidence")
    if isinstance(evidence, dict):
        for key, value in evidence.items():
            number = _number(value)
            if number is not None:
                scalars[f"mode_evidence.{key}"] = number
    ordered = [k for k in EXTRA_FIRST if k in scalars] + sorted(k for k in scalars if k not in EXTRA_FIRST)
    extra = {k[:128]: scalars[k] for k in ordered[:MAX_EXTRA]}
    try:
        return TrainingMetrics(
            mode=raw["mode"],
            mode_reason=str(raw.get("mode_reason", ""))[:512],
            teacher_accuracy=raw.get("teacher_accuracy"),
            student_before_accuracy=raw.get("student_before_accuracy"),
            student_after_accuracy=raw["student_after_accuracy"],
            eval_examples=raw["eval_examples"],
            train_examples=raw["train_examples"],
            train_tokens=raw.get("train_tokens", 0),
            final_loss=_number(raw.get("final_loss")),
            extra=extra,
        )
    except ValueError as exc:
        raise TrainingFailedError(f"{source} does not match the metrics contract: {exc}") from exc


def verdict(
    metrics: TrainingMetrics, min_accuracy: float, serving: tuple[str, float] | None, tolerance: float
) -> tuple[bool, str]:
    """Whether the student may deploy, and why (one sentence).

    Args:
        metrics: the job's metrics.
        min_accuracy: the spec's ``constraints.min_accuracy``, 0..1.
        serving: ``(run id, accuracy)`` of the student serving the endpoint now, if any.
        tolerance: largest accepted drop below ``serving``'s accuracy, absolute (0.01 = one point).
    """
    acc = metrics.student_after_accuracy
    if metrics.eval_examples <= 0:
        return False, "no evaluation example was scored"
    if acc < min_accuracy:
        return False, f"student_after_accuracy {acc:.4f} is below constraints.min_accuracy {min_accuracy:.4f}"
    if serving is not None and acc < serving[1] - tolerance:
        return False, (
            f"student_after_accuracy {acc:.4f} is worse than the serving model's {serving[1]:.4f} "
            f"(run {serving[0]}) by more than {tolerance:.4f}"
        )
    reason = f"student_after_accuracy {acc:.4f} >= constraints.min_accuracy {min_accuracy:.4f}"
    if serving is not None:
        reason += f" and within {tolerance:.4f} of the serving model's {serving[1]:.4f}"
    return True, reason


def output_archive_uri(description: dict[str, Any]) -> str:
    """``output.tar.gz`` of a described training job (beside ``model.tar.gz``)."""
    prefix = str(description["OutputDataConfig"]["S3OutputPath"]).rstrip("/")
    return f"{prefix}/{description['TrainingJobName']}/output/output.tar.gz"


def actual_training(description: dict[str, Any], plan: PlanRef) -> ActualTraining:
    """Actual training time and cost from DescribeTrainingJob: billable seconds priced at the plan's on-demand
    rate (``on_demand_usd_per_hour``; for a plan from before it was recorded, its cost / hours, which is the
    on-demand rate of an on-demand plan). For a managed spot job (``EnableManagedSpotTraining``, else the plan's
    ``spot``) also SageMaker's saving, ``1 - billable / training seconds``, and that share of the training time
    in USD."""
    billable = int(description.get("BillableTimeInSeconds") or description.get("TrainingTimeInSeconds") or 0)
    seconds = int(description.get("TrainingTimeInSeconds") or billable)
    p = plan.plan
    rate = p.on_demand_usd_per_hour
    if rate is None:
        rate = p.training_cost_usd / p.training_hours if p.training_hours > 0 else 0.0
    spot = bool(description.get("EnableManagedSpotTraining", p.spot))
    saving = spot and seconds > 0
    return ActualTraining(
        training_seconds=seconds,
        billable_seconds=billable,
        training_hours=round(seconds / 3600, 6),
        training_cost_usd=round(billable / 3600 * rate, 4),
        training_usd_per_hour=round(rate, 6),
        spot=spot,
        spot_saving_fraction=round(1 - billable / seconds, 6) if saving else None,
        spot_saving_usd=round((seconds - billable) / 3600 * rate, 4) if saving else None,
    )


def predicted_vs_actual(
    plan: PlanRef,
    metrics: TrainingMetrics,
    actual: ActualTraining,
    task_kind: str,
    output_tokens: int,
    concurrency: int,
) -> PredictedVsActual:
    """The chosen plan's estimates beside the job's measurements (:func:`stratos.planner.calibration.compare`):
    expected vs measured ``student_after_accuracy`` (fraction), training hours (TrainingTimeInSeconds) and training
    cost (billable seconds x the on-demand rate, :func:`actual_training`); p50 latency and tokens/s at the spec's
    ``latency.output_tokens`` and ``concurrency`` predicted, not yet measured."""
    from stratos.planner.calibration import compare, plan_prediction

    return compare(
        plan_prediction(plan.plan, output_tokens, concurrency),
        task_kind,
        accuracy=metrics.student_after_accuracy,
        mode_actual=metrics.mode.value,
        training_hours=actual.training_hours,
        training_cost_usd=actual.training_cost_usd,
    )


def evaluate(event: Any, services: Services | None = None) -> EvaluationResult:
    """Read the job's metrics, apply :func:`verdict`, record metrics, mode decision and evidence.

    Raises:
        TrainingFailedError: the job's output lacks a readable metrics.json in the contract's shape.
    """
    svc = services or get_services()
    step = parse_step_event(event, TrainedState)
    doc = step.state
    run, training, plan = doc.run, doc.training, doc.plan
    spec = load_spec(svc, run)
    description = svc.sagemaker.describe_training_job(training.job_name)
    archive = output_archive_uri(description)
    body = svc.artifacts.read_archive_member(archive, "metrics.json")
    try:
        raw = json.loads(body)
    except ValueError as exc:
        raise TrainingFailedError(f"metrics.json in {archive} is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise TrainingFailedError(f"metrics.json in {archive} is not a JSON object")
    metrics = training_metrics(raw, f"metrics.json in {archive}")
    task = svc.records.get_task(run.task_id) or {}
    last = task.get("last_success") or {}
    serving = None
    if last.get("endpoint_name") == run.names.endpoint_name and last.get("student_after_accuracy") is not None:
        serving = (str(last.get("run_id")), float(last["student_after_accuracy"]))
    passed, reason = verdict(metrics, spec.constraints.min_accuracy, serving, svc.settings.regression_tolerance)
    found = raw.get("mode_evidence")
    evidence: dict[str, Any] = found if isinstance(found, dict) else {}
    if len(json.dumps(evidence, default=str)) > MAX_EVIDENCE_BYTES:
        evidence = {k: v for k, v in evidence.items() if _number(v) is not None or isinstance(v, bool | str)}
    actual = actual_training(description, plan)
    lat = spec.constraints.latency
    svc.records.update(
        run.names.run_id,
        step.execution_arn,
        RunRecord(
            stage=Stage.EVALUATED,
            metrics=metrics.model_dump(mode="json"),
            **tables(raw, f"metrics.json in {archive}"),
            mode=ModeRecord(
                requested=spec.distillation.mode.value,
                planned=plan.plan.mode.value,
                actual=metrics.mode.value,
                reason=metrics.mode_reason,
                evidence=evidence,
            ),
            gate=GateRecord(passed=passed, reason=reason),
            actual=actual,
            predicted_vs_actual=predicted_vs_actual(
                plan, metrics, actual, spec.task.kind.value, lat.output_tokens, lat.concurrency
            ),
            model_artifacts=description.get("ModelArtifacts", {}).get("S3ModelArtifacts"),
            updated_at=utcnow(),
        ),
    )
    return EvaluationResult(passed=passed, reason=reason[:512], metrics=metrics)
