"""Triggering events: what starts a run, parsed into a :class:`~stratos.naming.SpecIdentity`.

Two entry shapes are accepted (samples in ``events/``):

1. **Spec upload** — S3 "Object Created" delivered by EventBridge (``source`` ``aws.s3``). The object key in
   ``detail.object.key`` is URL-encoded the way S3 notifications encode keys (``application/x-www-form-
   urlencoded``: space as ``+``, other bytes as ``%XX``). It is decoded exactly once here; everything
   downstream sees the real key. Decoding twice would turn a literal ``+`` (sent as ``%2B``) into a space.
2. **Run request** — :class:`RunRequest`, what the re-distillation sweep (and ``stratos run --force``) puts
   into ``StartExecution``: the identity is already decoded and carries a revision.

The re-distillation sweep itself is started by an EventBridge Scheduler schedule whose Input must be a
:class:`RedistillSweepEvent`; a schedule created without Input delivers ``{"detail": "{}", ...}`` and is
rejected with a message that says how to fix the schedule.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stratos.errors import EventShapeError, FieldError, short_repr
from stratos.naming import SpecIdentity
from stratos.validation import field_errors

#: Only objects under this prefix are specs. The pipeline never writes below it (no self-triggering).
SPECS_PREFIX = "specs/"


class RunRequest(BaseModel):
    """A run started by Stratos itself (re-distillation sweep, forced re-run): identity already decoded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["stratos.run-request"] = Field(description="Discriminator of this event shape.")
    spec: SpecIdentity = Field(description="Spec object version to run, with its revision.")
    reason: str = Field(max_length=256, description="Why the run was started, for the run record.")


class RedistillSweepEvent(BaseModel):
    """The explicit Input of the re-distillation schedule (EventBridge Scheduler fills the ``<aws.scheduler.*>``
    placeholders). See ``events/schedule-redistill.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["stratos.redistill-sweep"] = Field(description="Discriminator of this event shape.")
    schedule_arn: str = Field(max_length=2048, description="From <aws.scheduler.schedule-arn>.")
    scheduled_time: datetime = Field(description="From <aws.scheduler.scheduled-time>, UTC.")
    execution_id: str = Field(default="", max_length=128, description="From <aws.scheduler.execution-id>.")
    max_runs: int = Field(default=10, ge=1, le=1000, description="Most runs one sweep may start.")
    dry_run: bool = Field(default=False, description="Report which tasks are due without starting runs.")


def identity_from_s3_event(event: Any) -> SpecIdentity:
    """Spec identity from an S3 "Object Created" event delivered by EventBridge.

    Args:
        event: the event dict as Lambda/Step Functions receive it.

    Returns:
        The identity with the key URL-decoded once.

    Raises:
        EventShapeError: the event is not an S3 Object Created event, or the object is not under ``specs/``
            (naming the field and value).
    """
    try:
        parsed = S3EventNotificationEventBridgeModel.model_validate(event)
    except ValidationError as exc:
        raise EventShapeError(field_errors(exc, event, S3EventNotificationEventBridgeModel), "S3 event") from exc
    if parsed.source != "aws.s3" or parsed.detail_type != "Object Created":
        raise EventShapeError(
            [FieldError("detail-type", short_repr(parsed.detail_type), "expected an aws.s3 'Object Created' event")],
            "S3 event",
        )
    key = unquote_plus(parsed.detail.object.key)
    if not key.startswith(SPECS_PREFIX) or not key.lower().endswith(".json"):
        raise EventShapeError(
            [FieldError("detail.object.key", short_repr(key), f"specs must be JSON files under {SPECS_PREFIX}")],
            "S3 event",
        )
    return SpecIdentity(
        bucket=parsed.detail.bucket.name,
        key=key,
        version_id=parsed.detail.object.version_id,
        etag=parsed.detail.object.etag.strip('"'),
    )


def identity_from_trigger(event: Any) -> SpecIdentity:
    """Spec identity from whatever started the execution: an S3 upload event or a :class:`RunRequest`.

    Raises:
        EventShapeError: neither shape (the message says which shapes are accepted).
    """
    if isinstance(event, dict) and event.get("kind") == "stratos.run-request":
        try:
            return RunRequest.model_validate(event).spec
        except ValidationError as exc:
            raise EventShapeError(field_errors(exc, event, RunRequest), "run request") from exc
    if isinstance(event, dict) and event.get("source") == "aws.s3":
        return identity_from_s3_event(event)
    raise EventShapeError(
        [
            FieldError(
                "<root>",
                short_repr(event),
                "expected an aws.s3 'Object Created' EventBridge event or a stratos.run-request",
            )
        ],
        "execution input",
    )


def parse_sweep_event(event: Any) -> RedistillSweepEvent:
    """Parse the re-distillation schedule's input.

    Raises:
        EventShapeError: the schedule has no explicit Input (Scheduler then sends ``detail`` as the string
            ``"{}"``), or the input has another shape; the error names the fields.
    """
    if (
        isinstance(event, dict)
        and event.get("source") in ("aws.scheduler", "aws.events")
        and event.get("detail")
        in (
            "{}",
            {},
        )
    ):
        raise EventShapeError(
            [
                FieldError(
                    "detail",
                    short_repr(event.get("detail")),
                    "the schedule has no explicit Input; set its target Input to a "
                    '{"kind": "stratos.redistill-sweep", ...} object (see events/schedule-redistill.json)',
                )
            ],
            "schedule event",
        )
    try:
        return RedistillSweepEvent.model_validate(event)
    except ValidationError as exc:
        raise EventShapeError(field_errors(exc, event, RedistillSweepEvent), "schedule event") from exc
