"""The local training runner interrupts a job the way managed spot does and starts it again; the container
resumes it. Then a second job of the same run (a fallback) finds the finished run in the shared checkpoint
prefix. Real container, tiny models, the embedded S3 for the outputs."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time

import boto3
import pytest
from moto import mock_aws

from stratos_cli.local.process_runner import ProcessTrainingRunner
from stratos_cli.local.training import TERMINAL, TrainingJobSpec
from tests.conftest import REPO
from tests.e2e.test_training_job import TINY

HYPERPARAMETERS = {**TINY, "mode": "injection", "per_device_batch_size": "4", "logging_steps": "1", "max_steps": "40"}
BUCKET = "artifacts"
SAVING = 0.7


def _job(name: str, run: str, spot: bool) -> TrainingJobSpec:
    return TrainingJobSpec(
        name=name,
        hyperparameters=HYPERPARAMETERS,
        channels={},
        output_s3_uri=f"s3://{BUCKET}/runs/{run}/training",
        instance_type="ml.g5.xlarge",
        max_runtime_seconds=900,
        checkpoint_s3_uri=f"s3://{BUCKET}/checkpoints/{run}/",
        managed_spot=spot,
        max_wait_seconds=1800 if spot else None,
    )


def _until_done(runner: ProcessTrainingRunner, name: str) -> tuple[object, list[str]]:
    seen: list[str] = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = runner.poll(name)
        if not seen or seen[-1] != status.secondary_status:
            seen.append(status.secondary_status)
        if status.status in TERMINAL:
            return status, seen
        time.sleep(0.02)  # the tiny job trains 40 steps in about a second
    raise AssertionError(f"{name} did not finish: {seen}")


def _metrics(s3, job: TrainingJobSpec) -> dict:
    key = job.output_uri("output.tar.gz").split(f"s3://{BUCKET}/", 1)[1]
    blob = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        member = tar.extractfile("metrics.json")
        assert member is not None
        return json.loads(member.read())


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    env = {"PYTHONPATH": os.pathsep.join(str(REPO / p) for p in ("functions/lambda", "functions"))}
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        plain = ProcessTrainingRunner(tmp_path_factory.mktemp("plain"), s3=lambda: s3, env=env)
        reference = _job("reference", "run-ref", spot=False)
        plain.start(reference)
        ref_status, _ = _until_done(plain, "reference")
        assert ref_status.status == "Completed", ref_status.failure_reason

        work = tmp_path_factory.mktemp("spot")
        runner = ProcessTrainingRunner(work, s3=lambda: s3, env=env, interrupt_at=0.6, spot_savings=lambda _: SAVING)
        first = _job("first", "run-1", spot=True)
        runner.start(first)
        status, seen = _until_done(runner, "first")
        assert status.status == "Completed", (status.failure_reason, (work / "first" / "job.log").read_text()[-3000:])
        fallback = _job("fallback", "run-1", spot=False)
        runner.start(fallback)
        fallback_status, _ = _until_done(runner, "fallback")
        assert fallback_status.status == "Completed", fallback_status.failure_reason
        return {
            "reference": _metrics(s3, reference),
            "interrupted": _metrics(s3, first),
            "fallback": _metrics(s3, fallback),
            "status": status,
            "seen": seen,
            "log": (work / "first" / "job.log").read_text(),
            "work": work,
        }


def test_the_runner_interrupts_and_restarts_like_managed_spot(outcome):
    seen = outcome["seen"]
    assert "Interrupted" in seen and "Restarting" in seen and seen[-1] == "Completed"
    assert seen.index("Interrupted") < seen.index("Restarting")
    assert "interruption 1: restarting the job" in outcome["log"]
    status = outcome["status"]
    assert status.billable_seconds == round(status.training_seconds * (1 - SAVING))
    assert status.billable_seconds < status.training_seconds


def test_the_restarted_job_resumes_to_the_uninterrupted_losses(outcome):
    reference, interrupted = outcome["reference"], outcome["interrupted"]
    assert interrupted["run_jobs"] == 2 and interrupted["train_resumed_at_step"] >= 24
    assert interrupted["final_loss"] == pytest.approx(reference["final_loss"], rel=1e-9)
    assert [p["train_loss"] for p in interrupted["loss_history"]] == pytest.approx(
        [p["train_loss"] for p in reference["loss_history"]], rel=1e-6
    )
    assert interrupted["phase_runs"] == reference["phase_runs"]  # no phase computed twice
    assert {"probe", "evaluate_before", "injection_data"} <= set(interrupted["phases_reused"])


def test_a_fallback_job_of_the_run_resumes_from_its_checkpoints(outcome):
    fallback = outcome["fallback"]
    assert fallback["run_jobs"] == 3
    assert {"probe", "evaluate_before", "train", "evaluate_after"} <= set(fallback["phases_reused"])
    assert fallback["final_loss"] == outcome["interrupted"]["final_loss"]
    shared = outcome["work"] / ".checkpoints" / BUCKET / "checkpoints" / "run-1"
    assert len(list(shared.glob("run-*/state/train.json"))) == 1  # one run folder, shared by the three jobs
