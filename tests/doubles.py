"""Test doubles of the embedded AWS: a scripted training runner and a scripted SageMaker account.

* :class:`ScriptedTrainingRunner` implements :class:`~stratos_cli.local.training.TrainingRunner`: it replays a
  :class:`Script` per job and, on ``Completed``, writes the outputs a real job would (``model.tar.gz`` and
  ``output.tar.gz`` with ``metrics.json`` from :func:`sample_metrics` under ``<S3OutputPath>/<job>/output/``).
* :class:`ScriptedAccount` implements :class:`~stratos_cli.local.moto_hooks.sagemaker.SageMakerAccount` from
  :class:`Quotas` (instance types refused; quotas the Service Quotas API lists) and an :class:`EndpointScript` (how
  endpoint changes go, and how slowly each endpoint config answers an invocation).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stratos.aws.artifacts import tar_gz
from stratos.types import split_uri
from stratos_cli.local.moto_hooks.sagemaker import Change, ContainerAnswer, EndpointCourse, EndpointInvocation, Usage
from stratos_cli.local.training import TERMINAL, Status, TrainingJobSpec, TrainingStatus

#: Uploads a file: ``(bucket, key, body)``.
Uploader = Callable[[str, str, bytes], None]


def sample_metrics(
    accuracy: float = 0.42, mode: str = "injection", teacher_accuracy: float = 0.31, train_examples: int = 2000
) -> dict[str, Any]:
    """A metrics.json in the shape ``stratos_train.job.run_job`` writes (figures are made up)."""
    return {
        "task": "mahjong-winning-tiles",
        "teacher": "channel:teacher",
        "student": "channel:student",
        "teacher_accuracy": teacher_accuracy,
        "teacher_partial": teacher_accuracy + 0.1,
        "student_before_accuracy": 0.01,
        "student_before_partial": 0.05,
        "injection_examples": train_examples,
        "injection_teacher_rejection_rate": 0.4,
        "injection_rejection_reasons": {"wrong answer": 12},
        "train_examples": train_examples,
        "train_rows_dropped_no_completion": 0,
        "train_rows_truncated": 3,
        "train_tokens": 61_000,
        "train_total_tokens": 270_000,
        "final_loss": 0.73,
        "train_steps": 250,
        "train_seconds": 612.5,
        "resumed_from": "",
        "loss_history": [{"step": 10, "train_loss": 2.1}, {"step": 250, "train_loss": 0.73}],
        "student_after_accuracy": accuracy,
        "student_after_partial": min(1.0, accuracy + 0.15),
        "student_after_stop_rate": 0.98,
        "eval_examples": 200,
        "mode": mode,
        "mode_reason": f"teacher coverage {teacher_accuracy:.2f} < threshold 0.50 on 32 probe problems: {mode}",
        "mode_evidence": {
            "mode": mode,
            "forced": False,
            "reason": "probe",
            "coverage": teacher_accuracy,
            "coverage_partial": teacher_accuracy + 0.1,
            "complexity": 2.86,
            "complexity_unit": "complete arrangements over all winning tiles",
            "probe_size": 32,
            "threshold": 0.5,
            "tokenizers_compatible": True,
        },
        "samples": [
            {"problem": {"hand": "123m456p789s1122z"}, "reference": ["1z", "2z"], "completion": "Answer: 1z 2z"}
        ],
        "job_seconds": 700.0,
    }


@dataclass(frozen=True)
class Script:
    """How a scripted job goes.

    Attributes:
        statuses: the status reported on successive polls; the last one sticks.
        metrics: metrics.json written on Completed (``None`` = write no metrics.json, a broken container).
        failure_reason: FailureReason once Failed or Stopped.
        stopped_secondary: SecondaryStatus when Stopped (``MaxRuntimeExceeded`` or ``Stopped``).
        seconds_per_poll: training seconds each poll adds (for the actual-cost figures).
    """

    statuses: Sequence[Status] = ("InProgress", "Completed")
    metrics: Mapping[str, Any] | None = field(default_factory=sample_metrics)
    failure_reason: str = ""
    stopped_secondary: str = "MaxRuntimeExceeded"
    seconds_per_poll: int = 300


class ScriptedTrainingRunner:
    """Replays a :class:`Script` per job (the job's own, else the default).

    Args:
        upload: writes the job's outputs to S3.
        default: the script of jobs with no script of their own.
    """

    def __init__(self, upload: Uploader, default: Script | None = None) -> None:
        self._upload = upload
        self.default = default or Script()
        self._scripts: dict[str, Script] = {}
        self._jobs: dict[str, tuple[TrainingJobSpec, Script]] = {}
        self._polls: dict[str, int] = {}
        self._stopped: set[str] = set()
        self._written: set[str] = set()
        self._lock = threading.Lock()
        self.started: list[TrainingJobSpec] = []

    def script(self, job_name_prefix: str, script: Script) -> None:
        """Use ``script`` for jobs whose name starts with ``job_name_prefix``."""
        self._scripts[job_name_prefix] = script

    def _script_for(self, name: str) -> Script:
        for prefix, script in self._scripts.items():
            if name.startswith(prefix):
                return script
        return self.default

    def start(self, job: TrainingJobSpec) -> None:
        with self._lock:
            self._jobs[job.name] = (job, self._script_for(job.name))
            self._polls[job.name] = 0
            self.started.append(job)

    def stop(self, name: str) -> None:
        with self._lock:
            self._stopped.add(name)

    def poll(self, name: str) -> TrainingStatus:
        with self._lock:
            job, script = self._jobs[name]
            index = self._polls[name]
            self._polls[name] = index + 1
            statuses = list(script.statuses) or ["Completed"]
            status: Status = "Stopped" if name in self._stopped else statuses[min(index, len(statuses) - 1)]
            seconds = script.seconds_per_poll * (min(index, len(statuses) - 1) + 1)
            first_terminal = status in TERMINAL and name not in self._written
            if first_terminal:
                self._written.add(name)
        if status == "Completed":
            if first_terminal:
                self._write_outputs(job, script)
            return TrainingStatus("Completed", "Completed", "", seconds, seconds)
        if status == "Failed":
            reason = script.failure_reason or "AlgorithmError: the training container exited with code 1"
            return TrainingStatus("Failed", "Failed", reason, seconds, seconds)
        if status == "Stopped":
            secondary = "Stopped" if name in self._stopped else script.stopped_secondary
            reason = script.failure_reason or "Training job reached its MaxRuntimeInSeconds"
            return TrainingStatus("Stopped", secondary, reason, seconds, seconds)
        return TrainingStatus(status, "Training", "", seconds, seconds)

    def _write_outputs(self, job: TrainingJobSpec, script: Script) -> None:
        bucket, key = split_uri(job.output_uri("model.tar.gz"))
        card = json.dumps({"student": job.hyperparameters.get("student", "")}).encode()
        self._upload(bucket, key, tar_gz({"config.json": b'{"model_type": "llama"}', "stratos_card.json": card}))
        files = {"config.json": json.dumps(dict(job.hyperparameters)).encode()}
        if script.metrics is not None:
            files["metrics.json"] = json.dumps(dict(script.metrics)).encode()
        bucket, key = split_uri(job.output_uri("output.tar.gz"))
        self._upload(bucket, key, tar_gz(files))


@dataclass
class Quotas:
    """Instance types the embedded account cannot get (``ResourceLimitExceeded``), per usage; and what its Service
    Quotas API lists (``listed``: ``{quota name: value}``, e.g. ``{"ml.g5.xlarge for training job usage": 0}``;
    ``readable=False``: the API answers ``AccessDeniedException``). The two are independent: a type refused at
    create time need not be listed (the API cannot always be read), and a listed 0 is refused only if named in
    ``training`` / ``endpoint`` too."""

    training: set[str] = field(default_factory=set)
    endpoint: set[str] = field(default_factory=set)
    listed: dict[str, float] = field(default_factory=dict)
    readable: bool = True


@dataclass
class EndpointScript:
    """How the embedded endpoints change state.

    Attributes:
        creating_polls: DescribeEndpoint calls an endpoint stays Creating.
        updating_polls: calls an update stays Updating.
        create_outcome: ``InService`` or ``Failed`` once created.
        update_outcome: ``InService`` (new config), ``RolledBack`` (InService on the old config), ``Failed``.
        serving_seconds: how long an endpoint takes to answer an invocation, s (a sleep: a deterministic floor).
        serving_seconds_by_config: the same for given endpoint configs, overriding ``serving_seconds``.
        serving_status: the HTTP status every container answers with (>= 400: SageMaker's ModelError).
    """

    creating_polls: int = 1
    updating_polls: int = 1
    create_outcome: str = "InService"
    update_outcome: str = "InService"
    serving_seconds: float = 0.0
    serving_seconds_by_config: dict[str, float] = field(default_factory=dict)
    serving_status: int = 200


@dataclass
class ScriptedAccount:
    """A :class:`~stratos_cli.local.moto_hooks.sagemaker.SageMakerAccount` with the given quotas and script."""

    quotas: Quotas = field(default_factory=Quotas)
    script: EndpointScript = field(default_factory=EndpointScript)

    def refuses(self, usage: Usage, instance_type: str) -> bool:
        return instance_type in (self.quotas.training if usage == "training" else self.quotas.endpoint)

    def endpoint_course(self, change: Change) -> EndpointCourse:
        if change == "create":
            return EndpointCourse(self.script.creating_polls, self.script.create_outcome)
        return EndpointCourse(self.script.updating_polls, self.script.update_outcome)

    def service_quotas(self) -> Mapping[str, float] | None:
        return dict(self.quotas.listed) if self.quotas.readable else None

    def invoke_endpoint(self, invocation: EndpointInvocation) -> ContainerAnswer | None:
        """After the config's ``serving_seconds``, TGI's answer ``[{"generated_text": "served by <config>",
        "details": ...}]``: every request generates its whole ``max_new_tokens``; the prompt counts one token a
        word."""
        time.sleep(self.script.serving_seconds_by_config.get(invocation.config_name, self.script.serving_seconds))
        if self.script.serving_status >= 400:
            return ContainerAnswer(self.script.serving_status, b'{"error": "scripted failure"}')
        body = json.loads(invocation.body)
        parameters = body.get("parameters") or {}
        answer: dict[str, Any] = {"generated_text": f"served by {invocation.config_name}"}
        if parameters.get("details"):
            prefill = [{"id": i, "text": w, "logprob": None} for i, w in enumerate(str(body["inputs"]).split())]
            answer["details"] = {
                "finish_reason": "length",
                "generated_tokens": int(parameters.get("max_new_tokens") or 20),
                "seed": None,
                "prefill": prefill if parameters.get("decoder_input_details") else [],
            }
        return ContainerAnswer(200, json.dumps([answer]).encode("utf-8"))
