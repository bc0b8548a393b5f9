"""Operator tooling (stratos image-uri / launch). The SageMaker SDK is the optional extra ``ops``: the tests
that need it skip when it is absent (make test does not install it)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from stratos.planner.catalog import load_catalog
from stratos.planner.plan import plan, summary
from stratos.planner.pricing import lookup_prices
from stratos.spec import parse_spec
from stratos_cli.ops import OpsToolingError, image_uri, plan_job
from tests.conftest import SPECS

HAS_SDK = importlib.util.find_spec("sagemaker") is not None
needs_sdk = pytest.mark.skipif(not HAS_SDK, reason='the SageMaker SDK is not installed (pip install -e ".[ops]")')


def test_plan_job_is_what_the_pipeline_would_train():
    job = plan_job(SPECS / "mahjong-winning-tiles.json", bucket="my-artifacts")
    assert job.task_id == "mahjong-winning-tiles"
    catalog = load_catalog()
    teacher, student = catalog.model(job.teacher), catalog.model(job.student)
    assert job.channels == {  # a depth-pruned student reads its base's folder
        "teacher": f"s3://my-artifacts/models/{teacher.staged_id}/",
        "student": f"s3://my-artifacts/models/{student.staged_id}/",
    }
    assert job.hyperparameters["student_id"] == job.student
    assert job.hyperparameters["student"] == "channel:student" + (
        f"@layers={student.layers}" if student.pruned_from else ""
    )
    assert job.hyperparameters["task"] == "mahjong-winning-tiles" and job.max_runtime_seconds >= 60
    assert all(isinstance(v, str) for v in job.hyperparameters.values())
    # Managed spot as the plan chose it (the example spec keeps constraints.spot auto), with its wait.
    spec = parse_spec((SPECS / "mahjong-winning-tiles.json").read_bytes())
    chosen = summary(plan(spec, lookup_prices(spec.constraints.region, catalog, None), catalog=catalog).chosen)
    assert job.managed_spot == chosen.spot
    if job.managed_spot:
        assert job.max_wait_seconds is not None and job.max_wait_seconds >= job.max_runtime_seconds
    else:
        assert job.max_wait_seconds is None
    assert job.instance_count >= 1
    assert job.checkpoint_s3_uri == "s3://my-artifacts/adhoc/mahjong-winning-tiles/checkpoints/"


def test_cli_dry_run_needs_no_sdk(capsys):
    import argparse

    from stratos_cli import ops

    parser = argparse.ArgumentParser()
    ops.register(parser.add_subparsers())
    args = parser.parse_args(["launch", str(SPECS / "mahjong-winning-tiles.json"), "--bucket", "b", "--dry-run"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["output_s3_uri"] == "s3://b/adhoc/mahjong-winning-tiles/"


@pytest.mark.skipif(HAS_SDK, reason="the SDK is installed")
def test_without_the_sdk_the_error_says_how_to_install_it():
    with pytest.raises(OpsToolingError, match=r"\[ops\]"):
        image_uri("training", "us-east-1")


@needs_sdk
def test_image_uris():
    assert image_uri("training", "eu-west-1").endswith("/pytorch-training:2.7-gpu-py312")
    assert "eu-west-1" in image_uri("training", "eu-west-1")
    assert "tgi" in image_uri("inference", "us-east-1")
    assert "-cpu-" in image_uri("inference-cpu", "us-east-1")


@needs_sdk
def test_launch_starts_a_training_job_with_model_trainer(monkeypatch):
    moto = pytest.importorskip("moto")
    import boto3

    from stratos_cli.ops import launch

    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "testing")
    job = plan_job(SPECS / "mahjong-winning-tiles.json", bucket="my-artifacts")
    with moto.mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="my-artifacts")
        name = launch(
            job, "arn:aws:iam::123456789012:role/sm", "123456789012.dkr.ecr.us-east-1.amazonaws.com/t:1", "us-east-1"
        )
        described = boto3.client("sagemaker", region_name="us-east-1").describe_training_job(TrainingJobName=name)
    assert described["ResourceConfig"]["InstanceType"] == job.instance_type
    assert described["ResourceConfig"]["InstanceCount"] == job.instance_count
    assert described.get("EnableManagedSpotTraining", False) == job.managed_spot
    assert described["StoppingCondition"].get("MaxWaitTimeInSeconds") == job.max_wait_seconds
    assert described["CheckpointConfig"]["S3Uri"] == job.checkpoint_s3_uri
    assert described["HyperParameters"]["task"] == "mahjong-winning-tiles"
    assert {c["ChannelName"] for c in described["InputDataConfig"]} == {"teacher", "student"}
