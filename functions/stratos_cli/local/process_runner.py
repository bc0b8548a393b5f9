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

Checkpoints: every job whose ``CheckpointConfig.S3Uri`` is the same shares one local folder (under
``<work_dir>/.checkpoints/<bucket>/<prefix>``, handed to the container as ``STRATOS_CHECKPOINT_DIR``), which is
what SageMaker's sync of that prefix to ``/opt/ml/checkpoints`` gives a re-created job on AWS: a retry or a
fallback job of the same run finds the earlier job's checkpoints and phase results.

Interruptions (``interrupt_at``, or ``STRATOS_LOCAL_INTERRUPT_AT``): once a job's training progress reaches that
fraction of its steps, the runner does what a managed spot interruption does: SIGTERM (the container saves a
checkpoint and exits 143), ``SecondaryStatus`` ``Interrupted``, then the same job started again over the same
folders (``Restarting``, then ``Training``), which resumes. ``TrainingTimeInSeconds`` counts every process's
time; for a managed spot job ``BillableTimeInSeconds`` is that times (1 - the catalog's spot saving for the
instance family), as SageMaker bills spot at the discounted rate; ``MaxWaitTimeInSeconds`` bounds the job's
wall time (``MaxWaitTimeExceeded``).

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
    #: Environment the process was started with (a restart reuses it).
    env: dict[str, str] = field(default_factory=dict)
    #: The current process's start (``time.monotonic()``); earlier processes' time is in ``earlier_seconds``.
    process_started: float = 0.0
    #: Every process's start (``time.monotonic()``), the first one first (a restart adds one).
    process_starts: list[float] = field(default_factory=list)
    earlier_seconds: float = 0.0
    #: Interruptions so far, and whether one is in progress (SIGTERM sent, waiting for the exit).
    interruptions: int = 0
    interrupting: bool = False
    wait_exceeded: bool = False

    exited_at: float | None = None

    def training_seconds(self) -> float:
        """TrainingTimeInSeconds: every process's run time (the current one up to now, or to when its exit was
        first seen)."""
        if self.process.poll() is not None and self.exited_at is None:
            self.exited_at = time.monotonic()
        end = self.exited_at if self.exited_at is not None else time.monotonic()
        return self.earlier_seconds + (end - self.process_started)


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
        interrupt_at: interrupt each job once when its training reaches this fraction of its steps (0..1,
            exclusive), and start it again (module docstring); default ``STRATOS_LOCAL_INTERRUPT_AT``, else never.
        spot_savings: instance type -> fraction of the on-demand price managed spot saves (None: unknown, billed
            in full); default the catalog's dated snapshot.
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
        interrupt_at: float | None = None,
        spot_savings: Callable[[str], float | None] | None = None,
    ) -> None:
        if interrupt_at is None and os.environ.get("STRATOS_LOCAL_INTERRUPT_AT"):
            interrupt_at = float(os.environ["STRATOS_LOCAL_INTERRUPT_AT"])
        if interrupt_at is not None and not 0.0 < interrupt_at < 1.0:
            raise ValueError(f"interrupt_at {interrupt_at}: a fraction of the training steps, between 0 and 1")
        self.interrupt_at = interrupt_at
        self.spot_savings = spot_savings or _catalog_spot_savings
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
        if job.checkpoint_s3_uri:
            env["STRATOS_CHECKPOINT_DIR"] = str(self.checkpoint_folder(job.checkpoint_s3_uri))
        log_path.write_bytes(b"")
        process = self._launch(log_path, env)
        now = time.monotonic()
        with self._lock:
            self.jobs[job.name] = _Job(
                job,
                base,
                process,
                now,
                log_path,
                sources=sources,
                env=env,
                process_started=now,
                process_starts=[now],
            )

    def checkpoint_folder(self, uri: str) -> Path:
        """The local folder standing in for the checkpoint prefix ``uri`` (shared by every job that names it)."""
        bucket, prefix = split_uri(uri)
        parts = [p for p in prefix.split("/") if p not in ("", ".", "..")]
        return (
            self.work_dir / ".checkpoints" / bucket / Path(*parts) if parts else self.work_dir / ".checkpoints" / bucket
        )

    def _launch(self, log_path: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        with log_path.open("ab") as log:  # a restarted job appends to the same log
            return subprocess.Popen(
                [self.python, "-m", "stratos_train.entrypoint"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                start_new_session=True,  # a Ctrl-C in the CLI is handled there, not by the job directly
            )

    def _restart(self, job: _Job) -> None:
        """Start an interrupted job again over the same folders (what managed spot does after an interruption)."""
        job.earlier_seconds = job.training_seconds()
        job.exited_at = None
        job.interrupting = False
        (job.base / "output" / "failure").unlink(missing_ok=True)
        with job.log_path.open("ab") as log:
            log.write(f"\n[stratos-local] interruption {job.interruptions}: restarting the job\n".encode())
        job.process = self._launch(job.log_path, job.env)
        job.process_started = time.monotonic()
        job.process_starts.append(job.process_started)

    def poll(self, name: str) -> TrainingStatus:
        with self._lock:
            job = self.jobs[name]
        if job.final is not None:
            return job.final
        self._read_progress(job)
        code = job.process.poll()
        training = int(job.training_seconds())
        billable = self._billable(job, training)
        if code is None:
            waited = time.monotonic() - job.started
            if training > job.spec.max_runtime_seconds and not job.runtime_exceeded:
                job.runtime_exceeded = True
                self._terminate(job)
            wait_limit = job.spec.max_wait_seconds
            if job.spec.managed_spot and wait_limit and waited > wait_limit and not job.wait_exceeded:
                job.wait_exceeded = True
                self._terminate(job)
            if job.stop_requested or job.runtime_exceeded or job.wait_exceeded:
                return TrainingStatus("Stopping", "Stopping", "", training, billable)
            if self._interruption_due(job):
                job.interrupting = True
                job.interruptions += 1
                self._terminate(job)
            if job.interrupting:
                return TrainingStatus("InProgress", "Interrupted", "", training, billable)
            return TrainingStatus("InProgress", "Training", "", training, billable)
        if job.interrupting and not (job.stop_requested or job.runtime_exceeded or job.wait_exceeded):
            self._restart(job)
            return TrainingStatus("InProgress", "Restarting", "", training, billable)
        job.final = self._finish(job, code, training, billable)
        return job.final

    def _interruption_due(self, job: _Job) -> bool:
        """True once per job, when its training progress first reaches ``interrupt_at``."""
        if self.interrupt_at is None or job.interruptions or job.interrupting:
            return False
        step, total = job.progress.get("step"), job.progress.get("max_steps")
        return bool(step and total and step / total >= self.interrupt_at)

    def _billable(self, job: _Job, training: int) -> int:
        """BillableTimeInSeconds: the training time, discounted by the spot saving for a managed spot job."""
        if not job.spec.managed_spot:
            return training
        saving = self.spot_savings(job.spec.instance_type)
        return training if saving is None else round(training * (1.0 - saving))

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

    def _finish(self, job: _Job, code: int, training: int, billable: int) -> TrainingStatus:
        failure_file = job.base / "output" / "failure"
        reason = failure_file.read_text(errors="replace")[:FAILURE_REASON_MAX] if failure_file.exists() else ""
        if job.runtime_exceeded:
            return TrainingStatus(
                "Stopped", "MaxRuntimeExceeded", reason or "MaxRuntimeInSeconds reached", training, billable
            )
        if job.wait_exceeded:
            return TrainingStatus(
                "Stopped", "MaxWaitTimeExceeded", reason or "MaxWaitTimeInSeconds reached", training, billable
            )
        if job.stop_requested:
            return TrainingStatus("Stopped", "Stopped", reason or "stopped on request", training, billable)
        if code != 0:
            reason = reason or f"AlgorithmError: the training process exited with code {code} and wrote no reason"
            if code < 0:
                reason = f"the training process was killed by signal {-code}; {reason}"
            return TrainingStatus("Failed", "Failed", reason, training, billable)
        self._upload_outputs(job)
        return TrainingStatus("Completed", "Completed", "", training, billable)

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


def _catalog_spot_savings(instance_type: str) -> float | None:
    """The catalog's managed spot saving for ``instance_type``'s family (None when it has none)."""
    from stratos.planner.catalog import spot_savings

    return spot_savings(instance_type)
