"""Teacher endpoints for a local run: a spec's ``sagemaker-endpoint`` teachers, stood up in the embedded AWS.

On AWS a ``sagemaker-endpoint`` external teacher (``candidates.external_teachers[i]``, kind
``sagemaker-endpoint``) is an endpoint its owner already runs; the training job calls it with InvokeEndpoint. A
local run starts from an empty embedded AWS, so before the pipeline starts, :func:`deploy_teacher_endpoints`
does what the owner did: it exports the model the endpoint ``serves`` from its local source (the PyPI models,
``python -m stratos_train.export`` in the training interpreter), puts ``model.tar.gz`` in a bucket of the
account that is not Stratos's, and creates the model, the endpoint config and the endpoint. From then on
everything is the real path: ValidateSpec's DescribeEndpoint, the training role's InvokeEndpoint scope (the
stack's ``TeacherEndpointNames``), and the training job's client, which reaches the embedded AWS over HTTP
(:meth:`~stratos_cli.local.stack.EmbeddedStack.serve_http`, ``AWS_ENDPOINT_URL`` in the job's environment);
InvokeEndpoint is answered by the local endpoint server running the exported model
(:mod:`stratos_cli.local.moto_hooks.sagemaker_runtime`).

The endpoint, its config, model, role and bucket carry no Stratos tag: they stand for resources the user owns,
which the pipeline only calls and never changes.

Exported archives are kept in ``<home>/teacher-models/`` (one per source; the PyPI models are pinned
packages), so a second run skips the export (~10 s and ~0.5 GB for Gemma 3 270M).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from stratos.errors import StratosError
from stratos.spec import EndpointTeacher, TaskSpec

#: The bucket the local teacher models are kept in: the account's own, never one of the stack's.
MODEL_BUCKET = "teacher-models-{account}-{region}"
#: The role the teacher endpoints' models run as (the owner's, not the stack's).
MODEL_ROLE = "teacher-endpoint-execution"
#: The instance type the local teacher endpoints are declared on (one CPU instance; the local server runs the
#: model on this machine whatever it says).
TEACHER_INSTANCE_TYPE = "ml.c7i.xlarge"
#: How long the export of one model may take, s (Gemma 3 270M: ~10 s here; a cold GGUF conversion ~60 s).
EXPORT_TIMEOUT_S = 900.0
#: How long an endpoint may take to come InService in the embedded AWS, s.
IN_SERVICE_TIMEOUT_S = 60.0
#: gzip level of the exported archive: model weights barely compress, and level 1 is ~5x faster than 6.
ARCHIVE_COMPRESSLEVEL = 1


class TeacherEndpointError(StratosError):
    """A teacher endpoint could not be stood up locally (the message names the spec field and the reason)."""


def endpoint_teachers(spec: TaskSpec) -> list[EndpointTeacher]:
    """The spec's ``sagemaker-endpoint`` external teachers, in the spec's order."""
    return [t for t in spec.candidates.external_teachers if isinstance(t, EndpointTeacher)]


def job_environment(url: str) -> dict[str, str]:
    """What a local training job needs to call the embedded AWS at ``url`` (``http://127.0.0.1:<port>``): every
    AWS SDK call of the job goes there (``AWS_ENDPOINT_URL``, which botocore reads for every service), never to
    AWS; the credentials are the embedded AWS's placeholders."""
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }


def _slug(source: str) -> str:
    readable = re.sub(r"[^a-zA-Z0-9._-]+", "-", source).strip("-")[:60]
    return f"{readable}-{hashlib.sha256(source.encode()).hexdigest()[:8]}"


def exported_archive(source: str, cache: Path, python: str = sys.executable) -> Path:
    """``model.tar.gz`` of ``source`` as an endpoint serves it (files at the archive root), exported once into
    ``cache`` and reused after that.

    Raises:
        TeacherEndpointError: the export failed (the exporter's own reason) or took longer than
            :data:`EXPORT_TIMEOUT_S`.
    """
    archive = cache / f"{_slug(source)}.tar.gz"
    if archive.exists():
        return archive
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="stratos-teacher-", dir=cache) as tmp:
        folder = Path(tmp) / "model"
        try:
            done = subprocess.run(
                [python, "-m", "stratos_train.export", source, str(folder)],
                capture_output=True,
                text=True,
                timeout=EXPORT_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TeacherEndpointError(f"exporting {source!r} took over {EXPORT_TIMEOUT_S:.0f} s") from exc
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            raise TeacherEndpointError(f"cannot export {source!r}: {reason}")
        partial = Path(tmp) / "model.tar.gz"
        with tarfile.open(partial, "w:gz", compresslevel=ARCHIVE_COMPRESSLEVEL) as tar:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    tar.add(path, arcname=str(path.relative_to(folder)))
        partial.replace(archive)  # whole or absent: a crash mid-write leaves no half archive in the cache
    return archive


def deploy_teacher_endpoints(
    stack: Any,
    teachers: Sequence[EndpointTeacher],
    sources: Mapping[str, str],
    cache: Path,
    *,
    python: str = sys.executable,
    note: Callable[[str], None] = lambda text: None,
) -> list[str]:
    """Stand up each teacher endpoint in the embedded AWS of ``stack`` (module docstring); return their names.

    Args:
        stack: the running :class:`~stratos_cli.local.stack.EmbeddedStack`.
        teachers: the spec's endpoint teachers (:func:`endpoint_teachers`).
        sources: catalog model id -> local model source (``LOCAL_MODEL_SOURCES``, or a test's tiny sources).
        cache: where exported archives are kept.
        python: the interpreter with the training extra (the exporter runs there).
        note: called with one line per endpoint stood up.

    Raises:
        TeacherEndpointError: a teacher serves a model with no local source, its export failed, or its
            endpoint did not come InService.
    """
    if not teachers:
        return []
    from stratos_cli.local.stack import ACCOUNT

    s3, sagemaker, iam = stack.client("s3"), stack.client("sagemaker"), stack.client("iam")
    bucket = MODEL_BUCKET.format(account=ACCOUNT, region=stack.region)
    stack.create_bucket(bucket)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    role = iam.create_role(RoleName=MODEL_ROLE, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    image = stack.parameters["CpuInferenceImageUri"]
    names: list[str] = []
    for i, teacher in enumerate(teachers):
        source = sources.get(teacher.serves)
        if source is None:
            raise TeacherEndpointError(
                f"candidates.external_teachers[{i}].serves: {teacher.serves!r} has no local source to serve it "
                f"from (local models: {', '.join(sorted(sources))})"
            )
        started = time.monotonic()
        archive = exported_archive(source, cache, python)
        key = f"{teacher.endpoint_name}/model.tar.gz"
        s3.upload_file(str(archive), bucket, key)
        sagemaker.create_model(
            ModelName=teacher.endpoint_name,
            PrimaryContainer={"Image": image, "ModelDataUrl": f"s3://{bucket}/{key}"},
            ExecutionRoleArn=role,
        )
        sagemaker.create_endpoint_config(
            EndpointConfigName=teacher.endpoint_name,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": teacher.endpoint_name,
                    "InstanceType": TEACHER_INSTANCE_TYPE,
                    "InitialInstanceCount": 1,
                }
            ],
        )
        sagemaker.create_endpoint(EndpointName=teacher.endpoint_name, EndpointConfigName=teacher.endpoint_name)
        _wait_in_service(sagemaker, teacher.endpoint_name, i)
        names.append(teacher.endpoint_name)
        note(
            f"teacher endpoint {teacher.endpoint_name}: {teacher.serves} ({source}) deployed in the embedded AWS "
            f"in {time.monotonic() - started:.0f} s, served by the local endpoint server on first call"
        )
    return names


def _wait_in_service(sagemaker: Any, name: str, index: int) -> None:
    deadline = time.monotonic() + IN_SERVICE_TIMEOUT_S
    status = ""
    while time.monotonic() < deadline:
        status = sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"]
        if status == "InService":
            return
        if status == "Failed":
            break
        time.sleep(0.2)
    raise TeacherEndpointError(f"candidates.external_teachers[{index}]: endpoint {name} is {status}, not InService")
