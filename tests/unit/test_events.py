"""Triggering events: the exact shapes AWS sends, keys decoded exactly once, clear errors otherwise."""

from __future__ import annotations

import copy

import pytest

from stratos.errors import EventShapeError
from stratos.events import (
    RedistillSweepEvent,
    identity_from_s3_event,
    identity_from_trigger,
    parse_sweep_event,
)
from tests.conftest import load_event


def test_plain_upload_event():
    ident = identity_from_trigger(load_event("s3-spec-uploaded.json"))
    assert ident.key == "specs/mahjong-winning-tiles.json"
    assert ident.bucket == "stratos-specs-123456789012-us-east-1"
    assert ident.version_id == "3sL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"
    assert ident.revision is None


def test_encoded_key_decoded_exactly_once():
    """EventBridge carries the key form-URL-encoded: '+' is a space and a literal '+' is %2B."""
    event = load_event("s3-spec-uploaded-encoded-key.json")
    assert event["detail"]["object"]["key"] == "specs/team+a/spec%2Bv2+%281%29+%C3%A9.json"
    assert identity_from_s3_event(event).key == "specs/team a/spec+v2 (1) é.json"


def test_double_decoding_would_be_wrong():
    """A key whose real name contains '%41' must stay '%41' (decoding twice would give 'A')."""
    event = copy.deepcopy(load_event("s3-spec-uploaded.json"))
    event["detail"]["object"]["key"] = "specs/rate%2541.json"
    assert identity_from_s3_event(event).key == "specs/rate%41.json"


def test_objects_outside_specs_prefix_rejected():
    event = copy.deepcopy(load_event("s3-spec-uploaded.json"))
    event["detail"]["object"]["key"] = "runs/abc/spec.json"
    with pytest.raises(EventShapeError, match="detail.object.key"):
        identity_from_s3_event(event)


def test_non_s3_event_rejected_with_field():
    event = copy.deepcopy(load_event("s3-spec-uploaded.json"))
    event["detail-type"] = "Object Deleted"
    with pytest.raises(EventShapeError, match="detail-type"):
        identity_from_s3_event(event)
    with pytest.raises(EventShapeError, match="detail.bucket"):
        identity_from_trigger({"source": "aws.s3", "detail-type": "Object Created", "detail": {}})


def test_run_request_event():
    ident = identity_from_trigger(load_event("run-request.json"))
    assert ident.revision == "redistill-2026-11-30T03:00:00Z"
    bad = load_event("run-request.json") | {"extra": 1}
    with pytest.raises(EventShapeError, match="extra"):
        identity_from_trigger(bad)


@pytest.mark.parametrize("event", [None, [], "{}", {"foo": 1}, {"detail": "{}"}])
def test_unknown_execution_input(event):
    with pytest.raises(EventShapeError, match="expected an aws.s3"):
        identity_from_trigger(event)


def test_schedule_with_explicit_input():
    sweep = parse_sweep_event(load_event("schedule-redistill.json"))
    assert isinstance(sweep, RedistillSweepEvent)
    assert sweep.max_runs == 10 and not sweep.dry_run
    assert sweep.scheduled_time.tzinfo is not None


def test_schedule_without_input_gets_clear_error():
    with pytest.raises(EventShapeError) as info:
        parse_sweep_event(load_event("schedule-without-input.json"))
    (err,) = info.value.errors
    assert err.path == "detail"
    assert "no explicit Input" in err.reason


def test_schedule_unknown_shape_names_fields():
    with pytest.raises(EventShapeError) as info:
        parse_sweep_event({"kind": "stratos.redistill-sweep", "max_runs": 0})
    paths = {e.path for e in info.value.errors}
    assert {"schedule_arn", "scheduled_time", "max_runs"} <= paths
