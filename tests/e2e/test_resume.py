"""A training job interrupted by SIGTERM (what a managed spot interruption sends) and started again over the same
checkpoint folder: it resumes, repeats no phase, and ends with the losses of an uninterrupted run.

Each case runs the real entry point three times on tiny models (~10 s each): uninterrupted (A), interrupted
mid-training (B), B again (resumes), and A again (a finished run: only the export is redone).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.e2e.test_fsdp import start_train
from tests.e2e.test_training_job import TINY

BASE = {**TINY, "mode": "injection", "per_device_batch_size": "4", "logging_steps": "1", "max_steps": "10"}
CASES = {
    # Knowledge Injection (teacher rationales), SIGTERM at step 6 of 10.
    "injection": ({}, 6, 1),
    # Knowledge Alignment (live teacher logits).
    "alignment": ({"mode": "alignment"}, 6, 1),
    # The closed loop, 3 rounds of 4 steps: SIGTERM at step 3 of round 2 (the 5th metric line at step >= 2).
    "rounds": ({"injection_rounds": "3", "round_patience": "5", "max_steps": "0", "probe_per_stratum": "1"}, 2, 5),
}


def _run(base: Path, hyperparameters: dict[str, str], sigterm_at: tuple[int, int] | None = None) -> tuple[int, str]:
    """Run the entry point over ``base``; with ``sigterm_at`` = (step, nth), send SIGTERM at the nth metric line
    whose step is >= step. Returns (exit code, log)."""
    process = start_train(base, hyperparameters)
    assert process.stdout is not None
    lines, hits = [], 0
    for line in process.stdout:
        lines.append(line)
        if sigterm_at and line.startswith("[stratos-metrics]"):
            record = json.loads(line.split(" ", 1)[1])
            if "train_loss" in record and record.get("step", 0) >= sigterm_at[0]:
                hits += 1
                if hits == sigterm_at[1]:
                    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=600), "".join(lines)


def _metrics(base: Path) -> dict:
    return json.loads((base / "output" / "data" / "metrics.json").read_text())


@pytest.fixture(scope="module", params=sorted(CASES))
def runs(request, tmp_path_factory):
    extra, step, nth = CASES[request.param]
    hp = {**BASE, **extra}
    a, b = tmp_path_factory.mktemp(f"{request.param}-a"), tmp_path_factory.mktemp(f"{request.param}-b")
    code, log = _run(a, hp)
    assert code == 0, log[-3000:]
    uninterrupted = _metrics(a)
    code, log = _run(b, hp, sigterm_at=(step, nth))
    assert code == 143, log[-3000:]
    assert "SIGTERM" in (b / "output" / "failure").read_text()
    assert not (b / "output" / "data" / "metrics.json").exists()
    code, log = _run(b, hp)
    assert code == 0, log[-3000:]
    resumed = _metrics(b)
    code, log = _run(a, hp)
    assert code == 0, log[-3000:]
    return request.param, uninterrupted, resumed, _metrics(a), a


def test_resumed_run_has_the_losses_of_an_uninterrupted_one(runs):
    _, uninterrupted, resumed, _, _ = runs
    assert resumed["train_steps"] == uninterrupted["train_steps"]
    assert resumed["final_loss"] == pytest.approx(uninterrupted["final_loss"], rel=1e-9)
    assert [p["step"] for p in resumed["loss_history"]] == [p["step"] for p in uninterrupted["loss_history"]]
    for got, want in zip(resumed["loss_history"], uninterrupted["loss_history"], strict=True):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-6)


def test_resumed_run_repeats_no_phase(runs):
    case, uninterrupted, resumed, _, _ = runs
    assert uninterrupted["run_jobs"] == 1 and uninterrupted["phases_reused"] == []
    assert resumed["run_jobs"] == 2
    assert set(resumed["phase_runs"].values()) == {1}  # every phase computed once over both jobs
    assert resumed["phase_runs"] == uninterrupted["phase_runs"]
    assert {"probe", "evaluate_before"} <= set(resumed["phases_reused"])
    if case == "rounds":
        assert "round-1" in resumed["phases_reused"]  # round 2 was in progress: round 1 is reused
    else:
        assert resumed["train_resumed_at_step"] >= 6  # the SIGTERM's own checkpoint, not a fresh start
        assert resumed["resumed_from"].endswith(f"checkpoint-{resumed['train_resumed_at_step']}")
    if case == "injection":
        assert "injection_data" in resumed["phases_reused"]  # the teacher's rationales were not asked again
        assert resumed["injection_teacher_asked"] == uninterrupted["injection_teacher_asked"]


def test_finished_run_only_exports_again(runs):
    _, uninterrupted, _, again, base = runs
    assert again["run_jobs"] == 2
    assert {"probe", "evaluate_before", "train", "evaluate_after"} <= set(again["phases_reused"])
    assert again["phase_runs"] == uninterrupted["phase_runs"]  # nothing computed a second time
    assert again["train_steps"] == uninterrupted["train_steps"]
    assert again["final_loss"] == uninterrupted["final_loss"]
    assert again["student_after_accuracy"] == uninterrupted["student_after_accuracy"]
    assert (base / "model" / "model.safetensors").exists()
