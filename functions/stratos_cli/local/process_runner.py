"""A training runner that runs the REAL training container as a local process.

It implements :class:`~stratos_cli.local.training.TrainingRunner` for the embedded SageMaker: on
CreateTrainingJob it lays out an ``/opt/ml``-shaped folder (hyperparameters as strings, one folder per input
channel downloaded from the embedded S3), starts ``python -m stratos_train.entrypoint`` over it, and on every
DescribeTrainingJob reports the process's state the way SageMaker would:

* running -> ``InProgress`` (``Training``); past ``MaxRuntimeInSeconds`` it is sent SIGTERM and ends
  ``Stopped`` / ``MaxRuntimeExceeded`` (the budget is enforced as on AWS);
* exit 0 -> ``Completed``: ``model.tar.gz`` (model files at the archive root) and ``output.tar.gz``
  (``metrics.json`` and friends) are uploaded under ``<S3OutputPath>/<job>/output/``;
* non-zero exit -> ``Failed`` with ``FailureReason`` read from ``output/failure``;
* StopTrainingJob (or a killed process) -> ``Stopped``.

Progress lines (``[stratos-metrics] {...}``) are parsed from the job's log for the CLI's progress bar.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stratos.aws.artifacts import tar_gz
from stratos.types import split_uri
from stratos_cli.local.training import TrainingJobSpec, TrainingStatus

METRICS_PREFIX = "[stratos-metrics]"
FAILURE_REASON_MAX = 1024


@dataclass
class _Job:
    spec: TrainingJobSpec
    base: Path
    process: subprocess.Popen[bytes]
    started: float
    log_path: Path
    stop_requested: bool = False
    runtime_exceeded: bool = False
    final: TrainingStatus | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    metric_lines_seen: int = 0
    #: Model channels loaded from a local source instead of S3: channel -> (catalog id, source).
    sources: dict[str, tuple[str, str]] = field(default_factory=dict)


class ProcessTrainingRunner:
    """Runs each training job as ``python -m stratos_train.entrypoint`` over ``work_dir/<job name>/``.

    Args:
        work_dir: where job folders go (kept after the run for inspection: logs, checkpoints, model).
        s3: returns a boto3 S3 client of the embedded AWS (called lazily, inside the moto context).
        python: the interpreter that has the training extra installed.
        env: extra environment for the job (e.g. ``STRATOS_THREADS``).
        on_progress: called with ``(job name, metrics dict)`` for every metrics line the job prints.
        model_sources: catalog model id -> a model source the container loads without S3 (the PyPI models,
            ``smollm2-135m-instruct@layers=15``, ``tiny:1``). A ``teacher``/``student`` channel whose model
            has such a source is replaced by it instead of downloaded: on AWS the models are staged in S3,
            locally they install from PyPI. The model is the job's ``<channel>_id`` hyperparameter (the
            catalog id), else the id its S3 prefix names (``.../models/<id>/``); a depth-pruned catalog
            student (``smollm2-135m-instruct-l15``) reads its base's prefix with the source
            ``channel:student@layers=15`` on AWS, and here gets its own id's source.
        overrides: hyperparameters applied on top of the job's (local compute sizing), recorded in the job
            folder as ``input/config/local-overrides.json``.
    """

    def __init__(
        self,
        work_dir: Path,
        s3: Callable[[], Any],
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
        on_progress: Callable[[str, dict[str, Any]], None] | None = None,
        model_sources: Mapping[str, str] | None = None,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.model_sources = dict(model_sources or {})
        self.overrides = dict(overrides or {})
        self.work_dir = Path(work_dir)
        self._s3 = s3
        self.python = python
        self.env = dict(env or {})
        self.on_progress = on_progress
        self.jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------------------------------------
    # TrainingRunner protocol.

    def start(self, job: TrainingJobSpec) -> None:
        base = self.work_dir / job.name
        config = base / "input" / "config"
        config.mkdir(parents=True, exist_ok=True)
        hyperparameters = dict(job.hyperparameters)
        sources: dict[str, tuple[str, str]] = {}
        for channel, uri in job.channels.items():
            model_id = hyperparameters.get(f"{channel}_id") or uri.rstrip("/").rsplit("/", 1)[-1]
            source = self.model_sources.get(f"{channel}:{model_id}", self.model_sources.get(model_id))
            # "channel:student@layers=15": the catalog id (a pruned copy) already says what its source holds.
            from_channel = hyperparameters.get(channel, "").split("@", 1)[0] == f"channel:{channel}"
            if from_channel and source is not None:
                hyperparameters[channel] = source
                sources[channel] = (model_id, source)
                continue
            self._download_prefix(uri, base / "input" / "data" / channel)
        hyperparameters.update(self.overrides)
        (config / "hyperparameters.json").write_text(json.dumps(hyperparameters, indent=2))
        (config / "local-overrides.json").write_text(json.dumps(self.overrides, indent=2))
        log_path = base / "job.log"
        env = {
            **os.environ,
            **self.env,
            "STRATOS_SM_BASE": str(base),
            "PYTHONUNBUFFERED": "1",
        }
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [self.python, "-m", "stratos_train.entrypoint"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a Ctrl-C in the CLI is handled there, not by the job directly
            )
        with self._lock:
            self.jobs[job.name] = _Job(job, base, process, time.monotonic(), log_path, sources=sources)

    def poll(self, name: str) -> TrainingStatus:
        with self._lock:
            job = self.jobs[name]
        if job.final is not None:
            return job.final
        self._read_progress(job)
        elapsed = int(time.monotonic() - job.started)
        code = job.process.poll()
        if code is None:
            if elapsed > job.spec.max_runtime_seconds and not job.runtime_exceeded:
                job.runtime_exceeded = True
                self._terminate(job)
            if job.stop_requested or job.runtime_exceeded:
                return TrainingStatus("Stopping", "Stopping", "", elapsed, elapsed)
            return TrainingStatus("InProgress", "Training", "", elapsed, elapsed)
        job.final = self._finish(job, code, elapsed)
        return job.final

    def stop(self, name: str) -> None:
        with self._lock:
            job = self.jobs.get(name)
        if job is not None and job.process.poll() is None:
            job.stop_requested = True
            self._terminate(job)

    # ----------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Terminate every job still running (the CLI calls this on exit; nothing is left behind)."""
        for job in list(self.jobs.values()):
            if job.process.poll() is None:
                job.stop_requested = True
                self._terminate(job)
                try:
                    job.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(job.process.pid, signal.SIGKILL)

    def log_path(self, name: str) -> Path:
        return self.jobs[name].log_path

    def progress(self, name: str) -> dict[str, Any]:
        """The last metrics line the job printed (step, train_loss, tokens/s, ...)."""
        job = self.jobs.get(name)
        if job is None:
            return {}
        self._read_progress(job)
        return dict(job.progress)

    def _terminate(self, job: _Job) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.process.pid, signal.SIGTERM)

    def _finish(self, job: _Job, code: int, elapsed: int) -> TrainingStatus:
        failure_file = job.base / "output" / "failure"
        reason = failure_file.read_text(errors="replace")[:FAILURE_REASON_MAX] if failure_file.exists() else ""
        if job.runtime_exceeded:
            return TrainingStatus(
                "Stopped", "MaxRuntimeExceeded", reason or "MaxRuntimeInSeconds reached", elapsed, elapsed
            )
        if job.stop_requested:
            return TrainingStatus("Stopped", "Stopped", reason or "stopped on request", elapsed, elapsed)
        if code != 0:
            reason = reason or f"AlgorithmError: the training process exited with code {code} and wrote no reason"
            if code < 0:
                reason = f"the training process was killed by signal {-code}; {reason}"
            return TrainingStatus("Failed", "Failed", reason, elapsed, elapsed)
        self._upload_outputs(job)
        return TrainingStatus("Completed", "Completed", "", elapsed, elapsed)

    def _upload_outputs(self, job: _Job) -> None:
        model_dir = job.base / "model"
        files = {str(p.relative_to(model_dir)): p.read_bytes() for p in sorted(model_dir.rglob("*")) if p.is_file()}
        bucket, key = split_uri(job.spec.output_uri("model.tar.gz"))
        self._s3().put_object(Bucket=bucket, Key=key, Body=tar_gz(files))
        out_dir = job.base / "output" / "data"
        outputs = {str(p.relative_to(out_dir)): p.read_bytes() for p in sorted(out_dir.rglob("*")) if p.is_file()}
        bucket, key = split_uri(job.spec.output_uri("output.tar.gz"))
        self._s3().put_object(Bucket=bucket, Key=key, Body=tar_gz(outputs))

    def _download_prefix(self, uri: str, target: Path) -> None:
        bucket, prefix = split_uri(uri)
        client = self._s3()
        target.mkdir(parents=True, exist_ok=True)
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                relative = obj["Key"][len(prefix) :].lstrip("/") or Path(obj["Key"]).name
                path = target / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())

    def _read_progress(self, job: _Job) -> None:
        """Hand every new ``[stratos-metrics]`` line of the job's log to ``on_progress``; keep the last."""
        try:
            lines = job.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return
        records = [line for line in lines if line.startswith(METRICS_PREFIX)]
        for line in records[job.metric_lines_seen :]:
            try:
                record = json.loads(line[len(METRICS_PREFIX) :])
            except ValueError:
                continue
            job.progress = record
            if self.on_progress:
                self.on_progress(job.spec.name, record)
        job.metric_lines_seen = len(records)
