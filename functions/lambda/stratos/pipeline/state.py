"""Helpers every step shares: parse the step event, require the keys a step needs, reload the spec."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from stratos.errors import EventShapeError
from stratos.naming import RunNames, run_names
from stratos.payloads import RunContext
from stratos.pipeline.models import S, StepEvent
from stratos.pipeline.services import Services
from stratos.spec import TaskSpec, parse_spec
from stratos.validation import field_errors

#: Where a run writes, under the artifacts bucket.
RUNS_PREFIX = "runs/"


def utcnow() -> datetime:
    """The current time, UTC (one place, so tests could pin it)."""
    return datetime.now(UTC)


def parse_step_event(event: Any, state: type[S]) -> StepEvent[S]:
    """Validate what a Lambda task received (``{"state": ..., "execution_arn": ...}``), reading the document
    as ``state``: the step's model, whose required keys are the ones the step cannot run without.

    Raises:
        EventShapeError: the ASL passed something else, or a key this step needs is absent (the state machine
            reached the step out of order), naming each wrong field.
    """
    model = StepEvent[state]  # type: ignore[valid-type]
    try:
        parsed: StepEvent[S] = model.model_validate(event)
    except ValidationError as exc:
        raise EventShapeError(field_errors(exc, event, model), "step input") from exc
    return parsed


def run_prefix(run: RunContext) -> str:
    """``runs/<run_id>/``: every artifact of the run lives below it."""
    return f"{RUNS_PREFIX}{run.names.run_id}/"


def load_spec(services: Services, run: RunContext) -> TaskSpec:
    """The validated spec from the run's immutable copy (checked against its SHA-256)."""
    return parse_spec(services.artifacts.get(run.spec_copy), source=run.spec.uri)


def names_for(run: RunContext, spec: TaskSpec, attempt: int) -> RunNames:
    """The run's names for plan ``attempt`` (0 = first plan; fallbacks get fresh job/model/config names)."""
    return run_names(run.spec, run.task_id, spec.deployment.endpoint_name, attempt)
