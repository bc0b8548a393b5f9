"""Local-run plumbing that needs no stack: the region's images and prices, and the run-scoped quiet."""

from __future__ import annotations

import json
import logging
import warnings

import pytest

from stratos.spec import validate_spec_document
from stratos_cli.local.run import TRACE_MAX_NEW_TOKENS, LocalRunError, check_region, quiet_libraries, sized_overrides
from stratos_cli.local.stack import StackLayout
from tests.conftest import SPECS


def _spec(region: str):
    doc = json.loads((SPECS / "mahjong-local.json").read_text(encoding="utf-8"))
    doc["constraints"]["region"] = region
    return validate_spec_document(doc)


def test_images_are_in_the_stack_region_registry():
    stack = StackLayout(region="eu-west-1")
    for name in ("TrainingImageUri", "InferenceImageUri", "CpuInferenceImageUri"):
        assert ".dkr.ecr.eu-west-1.amazonaws.com/" in stack.parameters[name]


def test_a_region_needs_snapshot_prices():
    check_region(_spec("us-west-2"))
    with pytest.raises(LocalRunError, match=r"'ap-south-1'.*prices for eu-west-1, us-east-1, us-west-2 only"):
        check_region(_spec("ap-south-1"))


def test_quiet_silences_logs_and_warnings_for_the_run_only(capsys: pytest.CaptureFixture[str]):
    moto = logging.getLogger("moto.test")
    moto.addHandler(handler := logging.StreamHandler())
    try:
        before = logging.root.manager.disable
        with quiet_libraries(verbose=False), warnings.catch_warnings(record=True) as caught:
            moto.error("Exception=FailureEventException")
            warnings.warn("No application metrics to publish", UserWarning, stacklevel=1)
        assert caught == [] and "FailureEventException" not in capsys.readouterr().err
        assert logging.root.manager.disable == before
        with quiet_libraries(verbose=True):
            moto.error("shown when verbose")
        assert "shown when verbose" in capsys.readouterr().err
    finally:
        moto.removeHandler(handler)


def test_only_a_generated_task_decodes_past_the_specs_output_budget():
    mahjong = _spec("us-east-1")
    gsm8k = validate_spec_document(json.loads((SPECS / "gsm8k-local.json").read_text(encoding="utf-8")))
    base = {"bf16": "true"}
    off = {"teacher_rationales": "false"}  # a loaded teacher's rationales are off locally (and on for an external one)
    assert sized_overrides(mahjong, base) == {"bf16": "true", "max_new_tokens": TRACE_MAX_NEW_TOKENS, **off}
    assert sized_overrides(gsm8k, base) == base | off  # the job keeps latency.output_tokens (256)
    assert sized_overrides(mahjong, {"max_new_tokens": "64"}) == {"max_new_tokens": "64", **off}  # --set wins
    assert base == {"bf16": "true"}  # the caller's mapping is left as it was
