"""The run's state across training jobs (stratos_train.resume) and where a re-created job resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratos_train.config import TrainConfig
from stratos_train.job import _resume_point
from stratos_train.resume import (
    Carried,
    RunState,
    checkpoint_step,
    read_carried,
    run_fingerprint,
    write_carried,
)


def _fingerprint(**fields: object) -> str:
    config = TrainConfig(**fields)
    return run_fingerprint(config.model_dump(mode="json"), config.per_device_batch_size * config.grad_accum, None)


def test_fingerprint_ignores_layout_but_not_the_recipe() -> None:
    base = _fingerprint(per_device_batch_size=8, grad_accum=1)
    assert _fingerprint(per_device_batch_size=8, grad_accum=1, eval_batch_size=7, logging_steps=3) == base
    assert _fingerprint(per_device_batch_size=8, grad_accum=1, checkpoint_interval_minutes=1) == base
    # How an external teacher is called and priced: the same answers (the reply cache), the same run.
    priced = {"teacher_concurrency": 16, "teacher_usd_per_1k_input": 0.001, "teacher_usd_per_1k_output": 0.002}
    assert _fingerprint(per_device_batch_size=8, grad_accum=1, **priced) == base
    assert _fingerprint(per_device_batch_size=8, grad_accum=1, teacher_prompt_format="chat") != base  # other asks
    assert _fingerprint(per_device_batch_size=4, grad_accum=2) == base  # the same global batch
    assert _fingerprint(per_device_batch_size=4, grad_accum=1) != base  # another global batch
    assert _fingerprint(per_device_batch_size=8, grad_accum=1, student="tiny:3") != base  # a fallback pair
    assert _fingerprint(per_device_batch_size=8, grad_accum=1, learning_rate=1e-3) != base
    dumped = TrainConfig().model_dump(mode="json")
    assert run_fingerprint(dumped, 8, 2) != run_fingerprint(dumped, 8, None)  # FSDP shards per rank


def test_run_state_counts_jobs_and_phases(tmp_path: Path) -> None:
    first = RunState.open(tmp_path, "abc", writer=True)
    assert first.job_index == 1 and first.get("probe") is None
    first.put("probe", {"decision": {"mode": "injection"}})
    RunState.open(tmp_path, "abc", writer=False).put("probe", {"ignored": True})  # only the writer writes
    second = RunState.open(tmp_path, "abc", writer=True)
    assert second.job_index == 2
    assert second.get("probe") == {"decision": {"mode": "injection"}}
    assert second.reused == ["probe"]
    counters = second.counters()
    assert counters["jobs"] == 2 and counters["computed"] == {"probe": 1} and counters["reused"] == {"probe": 1}
    assert not list((tmp_path / "run-abc" / "state").glob(".*tmp"))  # atomic writes leave no temporary file
    assert RunState.open(tmp_path, "other", writer=True).job_index == 1  # another recipe starts fresh


def test_carried_state_round_trips(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint-6"
    folder.mkdir()
    write_carried(folder, 1, Carried(loss_sum=12.5, train_seconds=30.0))
    assert read_carried(str(folder), 1) == Carried(12.5, 30.0)
    assert read_carried(str(folder), 0) == Carried()  # a rank without a sidecar
    assert read_carried(None, 0) == Carried()


def _checkpoint(root: Path, step: int) -> Path:
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def test_resume_point_never_starts_past_the_end(tmp_path: Path) -> None:
    assert _resume_point(tmp_path / "missing", 10) is None
    assert _resume_point(tmp_path, 10) is None
    _checkpoint(tmp_path, 4)
    assert _resume_point(tmp_path, 10) == str(tmp_path / "checkpoint-4")
    _checkpoint(tmp_path, 8)
    assert _resume_point(tmp_path, 10) == str(tmp_path / "checkpoint-8")
    _checkpoint(tmp_path, 10)  # finished, but its result was not kept: redo from the one before
    assert _resume_point(tmp_path, 10) == str(tmp_path / "checkpoint-8")
    assert checkpoint_step(str(tmp_path / "checkpoint-10")) == 10


@pytest.mark.parametrize("minutes", [-1, 24 * 60 + 1])
def test_checkpoint_interval_is_bounded(minutes: float) -> None:
    with pytest.raises(ValueError, match="checkpoint_interval_minutes"):
        TrainConfig(checkpoint_interval_minutes=minutes)
