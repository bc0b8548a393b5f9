"""Error names are the contract with the ASL's Retry/Catch."""

from __future__ import annotations

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
