"""`stratos run` end to end on tiny models: the same template, ASL, handlers and training container, locally."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from stratos_cli.local.run import LocalRunOptions, run_local
from tests.conftest import REPO

SPEC = REPO / "events" / "specs" / "mahjong-local.json"
TINY_SOURCES = {"gemma-3-270m": "tiny:1", "smollm2-135m-instruct": "tiny:3", "smollm2-135m-instruct-l15": "tiny:2"}
TINY_OVERRIDES = {
    "max_steps": "4",
    "train_size": "48",
    "eval_size": "6",
    "max_new_tokens": "16",
    "probe_size": "4",
    "bf16": "false",
    "logging_steps": "1",
}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("STRATOS_HOME", str(tmp_path / "home"))
    yield tmp_path / "home"
    from stratos_cli.local.serving import stop_all

    stop_all()


def _options(home: Path, **overrides: str) -> LocalRunOptions:
    options = LocalRunOptions(spec_path=SPEC, home=home)
    options.model_sources = dict(TINY_SOURCES)
    options.overrides.update(TINY_OVERRIDES | overrides)
    return options


def _training_processes(home: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if "stratos_train.entrypoint" in cmd and str(home).encode() in environ:
            pids.append(int(proc.name))
    return pids


def test_local_run_success_then_noop_then_force(home):
    states: list[str] = []
    progress: list[dict] = []
    result = run_local(_options(home), on_state=states.append, on_progress=lambda job, rec: progress.append(rec))
    assert result.status == "SUCCEEDED", result.reason
    out = result.to_json()
    assert out["run_id"].startswith("mahjong-local-")
    assert out["plan"]["teacher"] == "gemma-3-270m" and out["plan"]["student"] == "smollm2-135m-instruct-l15"
    assert out["mode"] == "injection"  # different tokenizers: alignment is impossible
    for key in ("teacher_accuracy", "student_before_accuracy", "student_after_accuracy"):
        assert key in out["metrics"]
    # The real state machine ran, through training, the gate and deployment.
    for state in ("ValidateSpec", "SelectPlan", "StartTrainingJob", "EvaluationGate", "Deploy", "RunSucceeded"):
        assert state in states
    assert any(rec.get("train_loss") for rec in progress)
    # The pruned student's channel is its base's folder on AWS; locally it gets the pruned id's own source.
    [hyper] = (home / "runs").glob("work-*/jobs/*/input/config/hyperparameters.json")
    assert json.loads(hyper.read_text())["student"] == "tiny:2"
    # The deployed student answers over the SageMaker hosting contract.
    from stratos_cli.local.serving import invoke

    answer = invoke(out["endpoint"]["name"], {"inputs": "Mahjong winning tiles of 123m456p789s1122z?"})
    assert isinstance(answer[0]["generated_text"], str)
    assert Path(out["report"]).exists() and Path(out["report"]).with_suffix(".md").exists()
    # Same spec again: a no-op; --force: a new run.
    again = run_local(_options(home))
    assert again.reused and again.run_id == result.run_id
    forced = run_local(_options(home) | _Force())
    assert not forced.reused and forced.status == "SUCCEEDED"
    assert not _training_processes(home)


class _Force:
    def __ror__(self, options: LocalRunOptions) -> LocalRunOptions:
        options.force = True
        return options


def test_killed_training_fails_the_run_and_leaves_nothing_running(home):
    killed = threading.Event()

    def kill_on_first_step(job: str, record: dict) -> None:
        if killed.is_set():
            return
        for pid in _training_processes(home):
            os.kill(pid, 9)
        killed.set()

    options = _options(home, max_steps="400", save_steps="1000")
    started = time.monotonic()
    result = run_local(options, on_progress=kill_on_first_step)
    assert killed.is_set()
    assert result.status == "FAILED"
    assert "killed by signal 9" in result.reason or "TrainingFailedError" in result.reason, result.reason
    assert not _training_processes(home)
    assert result.endpoint is None
    assert time.monotonic() - started < 240
