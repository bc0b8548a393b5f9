"""Operator tooling on the SageMaker Python SDK (v3): never imported by a Lambda.

* ``stratos image-uri --kind training|inference|inference-cpu --region R`` — the AWS deep-learning-container
  image to build the training image on (``docker build --build-arg BASE_IMAGE=...``), or to serve the student
  with (the template's ``InferenceImageUri`` / ``CpuInferenceImageUri``).
* ``stratos launch SPEC --role ARN --image URI --bucket B`` — an ad-hoc distillation training job for one spec
  with ``ModelTrainer``, outside the state machine (same plan, hyperparameters and channels as a pipeline
  run; no evaluation gate, no deployment, no run record). ``--dry-run`` prints the job without the SDK.

The SDK (~1 GB, ~2 s to import) is the optional extra ``ops`` (``pip install -e ".[ops]"``) and is imported
inside the functions that need it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from stratos.errors import StratosError

ImageKind = Literal["training", "inference", "inference-cpu"]
#: The PyTorch training DLC the Dockerfile is written for (torch 2.7, Python 3.12, GPU).
TRAINING_PYTORCH_VERSION = "2.7"
TRAINING_PY_VERSION = "py312"
#: Base framework of the Hugging Face CPU inference DLC.
CPU_INFERENCE_BASE_FRAMEWORK = "pytorch2.6.0"


class OpsToolingError(StratosError):
    """The operator tooling cannot run (the SDK is missing, or it refused the request); says what to do."""


def _sdk() -> Any:
    try:
        from sagemaker.core import image_uris
    except ImportError as exc:
        raise OpsToolingError(
            'the SageMaker Python SDK is not installed: pip install -e ".[ops]" (operator tooling only)'
        ) from exc
    return image_uris


def image_uri(kind: ImageKind, region: str, version: str | None = None, instance_type: str | None = None) -> str:
    """ECR URI of an AWS deep-learning container for ``region``.

    Args:
        kind: ``training`` (PyTorch training, GPU: the Dockerfile's base), ``inference`` (Hugging Face LLM /
            TGI, GPU) or ``inference-cpu`` (Hugging Face PyTorch inference, CPU).
        region: AWS region code.
        version: framework version (PyTorch for training, TGI for inference, transformers for CPU inference);
            default: training 2.7, otherwise the newest the SDK knows.
        instance_type: decides GPU vs CPU images where the framework has both.

    Raises:
        OpsToolingError: the SDK is missing or has no such image.
    """
    uris = _sdk()
    try:
        if kind == "training":
            return str(
                uris.retrieve(
                    "pytorch",
                    region=region,
                    version=version or TRAINING_PYTORCH_VERSION,
                    py_version=TRAINING_PY_VERSION,
                    image_scope="training",
                    instance_type=instance_type or "ml.g5.2xlarge",
                )
            )
        if kind == "inference":
            return str(
                uris.retrieve(
                    "huggingface-llm",
                    region=region,
                    version=version,
                    image_scope="inference",
                    instance_type=instance_type or "ml.g5.xlarge",
                )
            )
        cpu_version = version or uris.list_versions("huggingface", "inference")[-1]
        return str(
            uris.retrieve(
                "huggingface",
                region=region,
                version=cpu_version,
                base_framework_version=CPU_INFERENCE_BASE_FRAMEWORK,
                image_scope="inference",
                instance_type=instance_type or "ml.c7i.2xlarge",
            )
        )
    except ValueError as exc:
        raise OpsToolingError(f"no {kind} image for region {region} (version {version or 'default'}): {exc}") from exc


@dataclass(frozen=True)
class AdHocJob:
    """What ``stratos launch`` submits: the pipeline's plan, hyperparameters and channels for one spec."""

    task_id: str
    teacher: str
    student: str
    instance_type: str
    volume_size_gb: int
    max_runtime_seconds: int
    hyperparameters: dict[str, str]
    channels: dict[str, str]
    output_s3_uri: str
    estimated_cost_usd: float
    notes: list[str] = field(default_factory=list)
    #: The plan's nodes (its parallelism plan; 1 without one).
    instance_count: int = 1
    #: Managed spot as planned, and the wait SageMaker allows it (None for on-demand).
    managed_spot: bool = False
    max_wait_seconds: int | None = None
    #: One checkpoint prefix per launched spec: a relaunch of the same spec resumes from it.
    checkpoint_s3_uri: str = ""


def plan_job(
    spec_path: str | Path, bucket: str, models_s3_uri: str | None = None, live_prices: bool = False
) -> AdHocJob:
    """Plan ``spec_path`` and build its training job, as PrepareTrainingJob would (no AWS call unless
    ``live_prices``).

    Raises:
        SpecValidationError: the spec is invalid.
        NoFeasiblePlanError: nothing meets its constraints.
    """
    from stratos.pipeline.training import channels, hyperparameters, planned_stopping_condition, volume_size_gb
    from stratos.planner.catalog import load_catalog
    from stratos.planner.plan import plan, summary
    from stratos.planner.pricing import PricingApi, lookup_prices
    from stratos.spec import parse_spec

    spec = parse_spec(Path(spec_path).read_bytes(), source=str(spec_path))
    catalog = load_catalog()
    prices = lookup_prices(spec.constraints.region, catalog, PricingApi() if live_prices else None)
    result = plan(spec, prices, catalog=catalog)
    chosen = summary(result.chosen)
    teacher, student = catalog.model(chosen.teacher), catalog.model(chosen.student)
    instance = catalog.instance(chosen.training_instance)
    assert teacher is not None and student is not None and instance is not None
    hp = hyperparameters(spec, chosen, teacher, student, accelerated=instance.accelerator_count > 0)
    models = models_s3_uri or f"s3://{bucket}/models/"
    stopping = planned_stopping_condition(chosen, instance, result.chosen.max_runtime_seconds, spec)
    return AdHocJob(
        task_id=spec.task_id,
        teacher=chosen.teacher,
        student=chosen.student,
        instance_type=chosen.training_instance,
        volume_size_gb=volume_size_gb(teacher.params, student.params, hp.lora == "true"),
        max_runtime_seconds=result.chosen.max_runtime_seconds,
        hyperparameters=hp.to_api(),
        channels={c.ChannelName: c.DataSource.S3DataSource.S3Uri for c in channels(spec, teacher, student, models)},
        output_s3_uri=f"s3://{bucket}/adhoc/{spec.task_id}/",
        estimated_cost_usd=chosen.training_cost_usd,
        instance_count=1 if chosen.parallelism is None else chosen.parallelism.nodes,
        managed_spot=chosen.spot,
        max_wait_seconds=stopping.MaxWaitTimeInSeconds,
        checkpoint_s3_uri=f"s3://{bucket}/adhoc/{spec.task_id}/checkpoints/",
        notes=[
            f"teacher and student model directories are read from {models}<model id>/"
            + (
                f" (the depth-pruned student {student.id} from {student.staged_id}/, pruned at load)"
                if student.pruned_from
                else ""
            )
        ],
    )


def launch(job: AdHocJob, role: str, image: str, region: str, wait: bool = False) -> str:
    """Start ``job`` as a SageMaker training job with ``ModelTrainer``; returns the job name.

    Raises:
        OpsToolingError: the SDK is missing.
    """
    try:
        import boto3
        from sagemaker.core.helper.session_helper import Session
        from sagemaker.core.training.configs import (
            CheckpointConfig,
            Compute,
            InputData,
            OutputDataConfig,
            StoppingCondition,
        )
        from sagemaker.train import ModelTrainer
    except ImportError as exc:
        raise OpsToolingError('the SageMaker Python SDK is not installed: pip install -e ".[ops]"') from exc
    trainer = ModelTrainer(
        training_image=image,
        role=role,
        base_job_name=f"stratos-{job.task_id}"[:40].rstrip("-"),
        compute=Compute(
            instance_type=job.instance_type,
            instance_count=job.instance_count,
            volume_size_in_gb=job.volume_size_gb,
            enable_managed_spot_training=job.managed_spot or None,
        ),
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=job.max_runtime_seconds,
            **({"max_wait_time_in_seconds": job.max_wait_seconds} if job.managed_spot else {}),
        ),
        checkpoint_config=CheckpointConfig(s3_uri=job.checkpoint_s3_uri, local_path="/opt/ml/checkpoints"),
        hyperparameters=dict(job.hyperparameters),
        output_data_config=OutputDataConfig(s3_output_path=job.output_s3_uri),
        sagemaker_session=Session(boto_session=boto3.Session(region_name=region)),
    )
    trainer.train(
        input_data_config=[InputData(channel_name=name, data_source=uri) for name, uri in job.channels.items()],
        wait=wait,
        logs=wait,
    )
    latest = trainer._latest_training_job
    return str(getattr(latest, "training_job_name", "") or "")


# --------------------------------------------------------------------------------------------------------
# CLI.


def register(subparsers: Any) -> None:
    """Add ``image-uri`` and ``launch`` to the ``stratos`` parser."""
    uri = subparsers.add_parser("image-uri", help="print an AWS deep-learning-container image URI (needs [ops])")
    uri.add_argument("--kind", choices=("training", "inference", "inference-cpu"), default="training")
    uri.add_argument("--region", default="us-east-1", help="AWS region code (default us-east-1)")
    uri.add_argument("--version", default=None, help="framework version (default: training 2.7, else newest)")
    uri.add_argument("--instance-type", default=None, help="instance type the image runs on")
    uri.set_defaults(func=_cmd_image_uri)

    run = subparsers.add_parser("launch", help="start an ad-hoc distillation training job for a spec (needs [ops])")
    run.add_argument("spec", metavar="SPEC", help="task spec JSON file")
    run.add_argument("--bucket", required=True, help="S3 bucket for models/ and the job's output (adhoc/)")
    run.add_argument("--role", help="SageMaker execution role ARN (the stack's SageMakerExecutionRoleArn)")
    run.add_argument("--image", help="training image URI (the stack's TrainingImageUri)")
    run.add_argument("--region", default=None, help="AWS region (default: the spec's constraints.region)")
    run.add_argument(
        "--models-s3-uri", default=None, help="prefix of the model directories (default s3://BUCKET/models/)"
    )
    run.add_argument("--live-prices", action="store_true", help="plan with the AWS Pricing API")
    run.add_argument("--wait", action="store_true", help="wait for the job and stream its logs")
    run.add_argument("--dry-run", action="store_true", help="print the job as JSON; submit nothing")
    run.set_defaults(func=_cmd_launch)


def _cmd_image_uri(args: argparse.Namespace) -> int:
    print(image_uri(args.kind, args.region, args.version, args.instance_type))
    return 0


def _cmd_launch(args: argparse.Namespace) -> int:
    job = plan_job(args.spec, args.bucket, args.models_s3_uri, args.live_prices)
    if args.dry_run:
        print(json.dumps(asdict(job), indent=2))
        return 0
    if not args.role or not args.image:
        print("launch: --role and --image are required unless --dry-run", file=sys.stderr)
        return 2
    from stratos.spec import parse_spec

    region = args.region or parse_spec(Path(args.spec).read_bytes()).constraints.region
    name = launch(job, args.role, args.image, region, wait=args.wait)
    print(f"started training job {name} on {job.instance_type} (estimated {job.estimated_cost_usd:.2f} USD)")
    return 0
