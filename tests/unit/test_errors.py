"""Error names are the contract with the ASL's Retry/Catch."""

from __future__ import annotations

import json

import pytest

from stratos import errors
from stratos.errors import RETRYABLE_ERRORS, TERMINAL_ERRORS, FieldError, SpecValidationError, StratosError


def _all_errors() -> list[type[StratosError]]:
    return [
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, StratosError) and obj is not StratosError
    ]


def test_names_end_in_error():
    assert all(cls.__name__.endswith("Error") for cls in _all_errors())


def test_every_leaf_error_is_routed_exactly_once():
    leaves = {c.__name__ for c in _all_errors() if not c.__subclasses__()}
    assert leaves == set(RETRYABLE_ERRORS) | set(TERMINAL_ERRORS)
    assert not set(RETRYABLE_ERRORS) & set(TERMINAL_ERRORS)
    for name in RETRYABLE_ERRORS:
        assert getattr(errors, name).retryable


def test_validation_error_to_dict():
    exc = SpecValidationError([FieldError("task_id", "'X'", "must be lowercase")], "s3://b/specs/x.json")
    out = exc.to_dict()
    assert out["error"] == "SpecValidationError"
    assert out["errors"] == [{"path": "task_id", "value": "'X'", "reason": "must be lowercase"}]
    assert "s3://b/specs/x.json" in out["message"]
    assert out["errors_omitted"] == 0


def test_thousands_of_field_errors_are_capped_and_counted():
    """A 60 KB spec of 5,000 unknown keys must not make a megabyte message: 50 listed, the rest counted."""
    from stratos.errors import MAX_FIELD_ERRORS
    from stratos.spec import parse_spec

    doc = {"spec_version": 1, **{f"k{i}": 0 for i in range(5000)}}
    with pytest.raises(SpecValidationError) as caught:
        parse_spec(json.dumps(doc))
    exc = caught.value
    assert len(exc.errors) == MAX_FIELD_ERRORS and exc.omitted > 4900
    assert str(exc).endswith(f"and {exc.omitted} more") and len(str(exc)) < 40_000
