"""`stratos run` outside us-east-1, and what a failed run prints: the embedded stack built in the spec's region,
the real ASL and handlers, the real training runner over a training process that fails at once (no model is
loaded), and the CLI's output of a run that fails at ValidateSpec."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import stratos_cli.local.process_runner as process_runner
from stratos_cli.local.run import LocalRunOptions, run_local
from tests.conftest import REPO, SPECS

#: The full SmolLM2 as the student, depth-pruned here only (on AWS it trains whole): a local change to report.
CANDIDATES = {"teachers": ["gemma-3-270m"], "students": ["smollm2-135m-instruct"]}
SOURCES = {"student:smollm2-135m-instruct": "smollm2-135m-instruct@layers=15"}
OVERRIDES = {"per_device_batch_size": "8", "max_new_tokens": "320", "teacher_rationales": "false"}
#: Three rows in GSM8K's file format: enough for the steps that read the data before training.
GSM8K_ROWS = [
    {"question": "Tom has 3 apples and buys 4 more. How many apples does he have?", "answer": "3+4=7\n#### 7"},
    {"question": "A box holds 6 eggs. How many eggs are in 2 boxes?", "answer": "6*2=12\n#### 12"},
    {"question": "Ann had 10 pens and gave away 4. How many are left?", "answer": "10-4=6\n#### 6"},
]


class FailingTrainingProcess:
    """Stands in for the training container's process: writes ``output/failure`` and has exited 1."""

    pid = 0

    def __init__(self, command: list[str], env: dict[str, str], **_: Any) -> None:
        output = Path(env["STRATOS_SM_BASE"]) / "output"
        output.mkdir(parents=True, exist_ok=True)
        (output / "failure").write_text("ScriptedFailure: no training in this test")

    def poll(self) -> int:
        return 1

    def wait(self, timeout: float | None = None) -> int:
        return 1


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process_runner.subprocess, "Popen", FailingTrainingProcess)


def _spec(tmp_path: Path, name: str, **constraints: Any) -> Path:
    doc = json.loads((SPECS / name).read_text(encoding="utf-8"))
    doc["constraints"].update(constraints)
    doc["candidates"] = CANDIDATES
    path = tmp_path / name.replace(".json", "-test.json")
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _options(spec: Path, home: Path, data: Path | None = None) -> LocalRunOptions:
    options = LocalRunOptions(spec_path=spec, data_dir=data, serve=False, home=home, overrides=dict(OVERRIDES))
    options.model_sources.update(SOURCES)
    return options


def _assert_clean(error: str, reason: str) -> None:
    assert error and error.isidentifier(), error
    for raw in ("stackTrace", "errorType", "Traceback", '{"'):
        assert raw not in reason, reason


def test_gsm8k_spec_runs_in_its_region_us_west_2(tmp_path: Path, no_training: None) -> None:
    data = tmp_path / "gsm8k"
    data.mkdir()
    for name in ("train.jsonl", "test.jsonl"):
        (data / name).write_text("".join(json.dumps(row) + "\n" for row in GSM8K_ROWS), encoding="utf-8")
    states: list[str] = []
    result = run_local(_options(SPECS / "gsm8k.json", tmp_path / "home", data), on_state=states.append)
    # The stack was built in us-west-2, so ValidateSpec accepted the region and the plan was priced there.
    assert ":us-west-2:" in result.execution_arn
    assert states[:3] == ["ReadTrigger", "ValidateSpec", "LookUpPrices"], states
    assert result.error != "SpecValidationError", result.reason
    assert result.run_id.startswith("gsm8k-")
    if result.status != "SUCCEEDED":
        _assert_clean(result.error, result.reason)


def test_local_changes_are_described_and_a_failure_has_its_name_and_reason(tmp_path: Path, no_training: None) -> None:
    spec = _spec(tmp_path, "mahjong-local.json", region="us-west-2")
    home = tmp_path / "home"
    result = run_local(_options(spec, home))
    out = result.to_json()
    assert (out["status"], out["error"]) == ("FAILED", "TrainingFailedError")
    assert "ScriptedFailure: no training in this test" in out["reason"]
    _assert_clean(out["error"], out["reason"])
    assert out["run_id"].startswith("mahjong-local-test-")
    # The injection plan asked for teacher rationales and a 64-token budget; the overrides changed both; the
    # batch of 8 is the container's default, so it is not a change.
    assert out["local_changes"] == [
        "student smollm2-135m-instruct depth-pruned to 15 layers",
        "decoding budget 320 tokens (AWS: 64)",
        "teacher rationales off, so Knowledge Injection trained on the task's own verified reasoning only",
    ]
    report = (home / "runs" / out["run_id"] / "report" / "report.md").read_text(encoding="utf-8")
    assert "## Local run" in report
    assert "local sizing: student smollm2-135m-instruct depth-pruned to 15 layers; decoding budget" in report
    assert "| error | TrainingFailedError |" in report


def test_a_region_without_snapshot_prices_is_refused_before_anything_starts(tmp_path: Path) -> None:
    from stratos_cli.local.run import LocalRunError

    spec = _spec(tmp_path, "mahjong-local.json", region="ap-south-1")
    with pytest.raises(LocalRunError, match=r"constraints.region 'ap-south-1'.*us-east-1"):
        run_local(_options(spec, tmp_path / "home"))
    assert not (tmp_path / "home" / "runs").exists()


def test_failed_run_prints_run_id_error_and_reason_and_nothing_raw(tmp_path: Path) -> None:
    """The CLI in its own process, as a user runs it: no warning, log line or stack trace gets through."""
    doc = json.loads((SPECS / "mahjong-local.json").read_text(encoding="utf-8"))
    doc["constraints"]["budget_usd"] = 1  # a valid spec no plan fits: SelectPlan fails inside the pipeline
    spec = tmp_path / "too-small-budget.json"
    spec.write_text(json.dumps(doc), encoding="utf-8")
    env = {**os.environ, "STRATOS_HOME": str(tmp_path / "home"), "PYTHONWARNINGS": "default"}
    done = subprocess.run(
        [sys.executable, "-m", "stratos_cli.cli", "run", str(spec), "--no-serve"],
        capture_output=True,
        text=True,
        cwd=REPO / "functions",
        env=env,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    output = done.stdout + done.stderr
    for raw in ("stackTrace", "Traceback", "UserWarning", "WARNING", '{"', "Exception="):
        assert raw not in output, output
    lines = output.splitlines()
    [head] = [i for i, line in enumerate(lines) if line.startswith("FAILED run ")]
    assert lines[head].startswith("FAILED run too-small-budget-")
    assert lines[head].endswith(": NoFeasiblePlanError")
    assert lines[head + 1].startswith("reason: ") and "budget" in lines[head + 1]
    assert lines[head + 2].startswith("report: ")
