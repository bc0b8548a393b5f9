"""Managed spot training through the real state machine: the CreateTrainingJob request a spot plan sends, the
one checkpoint prefix every job of a run shares (so a fallback or re-created job resumes), and the saving the
run record keeps when SageMaker bills fewer seconds than the job trained."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from stratos_cli.local.training import TrainingJobSpec, TrainingRunner, TrainingStatus
from tests.doubles import Quotas
from tests.functional.conftest import Run, mahjong_spec
from tests.functional.test_pipeline import planned


class BilledAtFraction:
    """A training runner that reports ``BillableTimeInSeconds = fraction x TrainingTimeInSeconds`` (what SageMaker
    reports for a managed spot job that saved ``1 - fraction``), around the stack's scripted runner."""

    def __init__(self, inner: TrainingRunner, fraction: float) -> None:
        self.inner = inner
        self.fraction = fraction

    def start(self, job: TrainingJobSpec) -> None:
        self.inner.start(job)

    def stop(self, name: str) -> None:
        self.inner.stop(name)

    def poll(self, name: str) -> TrainingStatus:
        status = self.inner.poll(name)
        return dataclasses.replace(status, billable_seconds=round(status.training_seconds * self.fraction))


def _created(run: Run, execution_arn: str) -> list[dict[str, Any]]:
    """The parameters of every CreateTrainingJob the execution sent, refused ones included (the execution
    history keeps what the ASL scheduled; the simulated SageMaker records only the jobs it created)."""
    out = []
    for event in run.stack.history(execution_arn):
        details = event.get("taskScheduledEventDetails") or {}
        if details.get("resource", "").endswith("createTrainingJob"):
            out.append(json.loads(details["parameters"]))
    return out


def _run_id(described: dict[str, Any]) -> str:
    return str(json.loads(described["output"])["run"]["names"]["run_id"])


def test_a_spot_plan_creates_a_managed_spot_job_and_records_the_billed_saving(make_stack):
    spec = mahjong_spec()  # constraints.spot defaults to auto
    choice = planned(spec).chosen
    assert choice.spot is not None, "the example spec should plan its training on managed spot"
    run = make_stack()
    run.sagemaker.runner = BilledAtFraction(run.sagemaker.runner, 0.3)
    described = run.upload_and_wait(spec)
    assert described["status"] == "SUCCEEDED", described
    run_id = _run_id(described)

    [request] = run.sagemaker.training_requests
    condition = request["StoppingCondition"]
    assert condition["MaxRuntimeInSeconds"] == choice.max_runtime_seconds
    assert condition["MaxWaitTimeInSeconds"] >= condition["MaxRuntimeInSeconds"]
    assert condition["MaxWaitTimeInSeconds"] <= 6 * 3600  # the spec's max_training_hours
    assert request["CheckpointConfig"]["S3Uri"] == f"s3://{run.stack.artifacts_bucket}/checkpoints/{run_id}/"
    job = run.stack.client("sagemaker").describe_training_job(TrainingJobName=request["TrainingJobName"])
    assert job["EnableManagedSpotTraining"] is True

    record = run.stack.run_record(run_id)
    assert record["plan"]["spot"] is True and record["estimate"]["spot"] is True
    assert record["estimate"]["spot_saving_usd"] > 0
    actual = record["actual"]
    assert actual["spot"] is True and actual["billable_seconds"] < actual["training_seconds"]
    assert actual["spot_saving_fraction"] == pytest.approx(1 - actual["billable_seconds"] / actual["training_seconds"])
    rate = record["plan"]["on_demand_usd_per_hour"]  # billable seconds are billed at the on-demand price
    assert actual["training_cost_usd"] == pytest.approx(actual["billable_seconds"] / 3600 * rate, abs=1e-4)
    assert actual["spot_saving_usd"] == pytest.approx(
        (actual["training_seconds"] - actual["billable_seconds"]) / 3600 * rate, abs=1e-4
    )
    [event] = run.run_events()
    assert event["detail"]["spot"] is True
    assert event["detail"]["actual_spot_saving_usd"] == pytest.approx(actual["spot_saving_usd"])


def test_spot_off_creates_an_on_demand_job(make_stack):
    spec = mahjong_spec(**{"constraints.spot": "off"})
    run = make_stack()
    described = run.upload_and_wait(spec)
    assert described["status"] == "SUCCEEDED", described
    [request] = run.sagemaker.training_requests
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": planned(spec).chosen.max_runtime_seconds}
    [sent] = _created(run, described["executionArn"])
    assert sent["EnableManagedSpotTraining"] is False and "MaxWaitTimeInSeconds" not in sent["StoppingCondition"]
    job = run.stack.client("sagemaker").describe_training_job(TrainingJobName=request["TrainingJobName"])
    assert job["EnableManagedSpotTraining"] is False
    record = run.stack.run_record(_run_id(described))
    assert record["plan"]["spot"] is False and record["plan"]["spot_saving_usd"] == 0
    assert record["actual"]["spot"] is False and "spot_saving_fraction" not in record["actual"]


def test_a_fallback_job_resumes_from_the_runs_checkpoints(make_stack):
    """The first plan's training type is over quota: the fallback plan's job has another name but the same
    CheckpointConfig.S3Uri (one prefix per run), so it would resume whatever the refused or an interrupted job
    of the run left there."""
    frontier = planned(mahjong_spec()).selection.frontier
    first = frontier[0].training_instance
    run = make_stack(quotas=Quotas(training={first}))
    described = run.upload_and_wait(mahjong_spec())
    assert described["status"] == "SUCCEEDED", described
    refused, fallback = _created(run, described["executionArn"])
    assert refused["TrainingJobName"] != fallback["TrainingJobName"]
    assert refused["ResourceConfig"]["InstanceType"] == first != fallback["ResourceConfig"]["InstanceType"]
    prefix = f"s3://{run.stack.artifacts_bucket}/checkpoints/{_run_id(described)}/"
    assert refused["CheckpointConfig"]["S3Uri"] == fallback["CheckpointConfig"]["S3Uri"] == prefix
    [created] = run.sagemaker.training_requests
    assert created["CheckpointConfig"]["S3Uri"] == prefix
    # Both plans train on managed spot (the example spec's families all have spot figures).
    assert refused["EnableManagedSpotTraining"] is fallback["EnableManagedSpotTraining"] is True
