"""State payloads: every model provably fits its size budget, and the whole state fits Step Functions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, Field, ValidationError

from stratos import payloads
from stratos.errors import PayloadTooLargeError
from stratos.naming import SpecIdentity, run_names
from stratos.payloads import (
    SFN_PAYLOAD_LIMIT_BYTES,
    STATE_BUDGET_BYTES,
    Payload,
    RunContext,
    S3Pointer,
    UnboundedFieldError,
    size_upper_bound,
)
from stratos.pipeline.models import RunState, Timing

MODELS = [
    obj for obj in vars(payloads).values() if isinstance(obj, type) and issubclass(obj, Payload) and obj is not Payload
]


TIMING = Timing(training_poll_seconds=0, endpoint_poll_seconds=0, max_endpoint_waits=1)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_payload_is_bounded_by_its_budget(model):
    assert size_upper_bound(model) <= model.MAX_BYTES


def test_state_budget_well_under_step_functions_limit():
    assert all(model.MAX_BYTES <= STATE_BUDGET_BYTES for model in MODELS)
    assert STATE_BUDGET_BYTES <= SFN_PAYLOAD_LIMIT_BYTES // 4


def test_unbounded_field_is_detected():
    class Loose(BaseModel):
        notes: str
        items: list[int] = Field(default_factory=list)

    with pytest.raises(UnboundedFieldError, match="notes"):
        size_upper_bound(Loose)


def _run_context() -> RunContext:
    ident = SpecIdentity(bucket="stratos-specs-1", key="specs/team a/é.json", version_id="v1", etag="e")
    names = run_names(ident, "mahjong")
    return RunContext(
        spec=ident,
        names=names,
        task_id="mahjong",
        region="us-east-1",
        mode_requested="auto",
        trigger="upload",
        started_at=datetime(2026, 11, 29, tzinfo=UTC),
        spec_copy=S3Pointer(uri=f"s3://stratos-artifacts/runs/{names.run_id}/spec.json", bytes=10, sha256="0" * 64),
    )


def test_run_context_round_trip_and_run_id_survives():
    ctx = _run_context()
    state = RunState(run=ctx, timing=TIMING).to_state()
    again = RunState.model_validate(state)
    assert again.run.names.run_id == ctx.names.run_id
    assert again.run.spec.key == "specs/team a/é.json"


def test_to_state_rejects_oversized():
    bloated = S3Pointer.model_construct(uri="s3://b/" + "k" * 5000, bytes=1, sha256="0" * 64)
    with pytest.raises(PayloadTooLargeError, match="S3Pointer"):
        bloated.to_state()


def test_own_uris_must_be_safe_ascii():
    with pytest.raises(ValidationError, match="printable ASCII"):
        S3Pointer(uri='s3://b/k"x', bytes=1, sha256="0" * 64)
