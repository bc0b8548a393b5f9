"""The runs table's item as the steps write it: typed fields, a Stage enum, unset fields left out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from stratos.run_record import ModeRecord, RunRecord
from stratos_contract.runs import RunStatus, Stage


def test_a_write_sets_only_its_fields_as_json() -> None:
    at = datetime(2026, 12, 4, 6, 0, tzinfo=UTC)
    record = RunRecord(stage=Stage.PLANNED, mode=ModeRecord(requested="auto", planned="injection"), updated_at=at)
    assert record.fields() == {
        "stage": "planned",
        "mode": {"requested": "auto", "planned": "injection"},
        "updated_at": "2026-12-04T06:00:00Z",
    }


def test_an_unknown_field_or_stage_fails_when_the_record_is_built() -> None:
    with pytest.raises(ValidationError, match="stagee"):
        RunRecord(stagee="planned")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="stage"):
        RunRecord(stage="plannd")  # type: ignore[arg-type]
    assert RunRecord(status="FAILED").status is RunStatus.FAILED  # type: ignore[arg-type]


def test_stages_in_the_order_a_successful_run_passes_them() -> None:
    assert [s.value for s in Stage][:-1] == [
        "validating", "validated", "planned", "replanned", "training", "evaluated", "deploying", "deployed", "done",
    ]  # fmt: skip
