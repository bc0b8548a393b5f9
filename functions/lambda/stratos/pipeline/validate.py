"""ValidateSpec: claim the run for this spec version, read and validate the spec, copy it under ``runs/``.

At-least-once delivery means the same S3 event can start two executions. The run id is a hash of the spec
identity (bucket, decoded key, object version, revision), and the first thing this step does is a
conditional write of the run record: the first execution owns the run; any other one gets
:class:`~stratos.errors.DuplicateRunError`, which the state machine turns into a quiet, successful end
without a record update or a training job. A new object version has a new identity, so it starts a new run.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from stratos.errors import DataAccessDeniedError, FieldError, SpecValidationError, short_repr
from stratos.events import RunRequest, identity_from_trigger
from stratos.naming import SpecIdentity, run_names
from stratos.payloads import RunContext
from stratos.pipeline.models import (
    MAX_TRIGGER_BYTES,
    REDISTILL_REVISION_PREFIX,
    RunStarted,
    TriggeredState,
)
from stratos.pipeline.services import Services, get_services
from stratos.pipeline.settings import Settings
from stratos.pipeline.state import RUNS_PREFIX, parse_step_event, utcnow
from stratos.run_record import ModeRecord, RunRecord
from stratos.spec import (
    ARTIFACTS_DATA_PREFIX,
    BUILTIN_FILES,
    BedrockTeacher,
    BuiltinDatasetData,
    DataLocation,
    EndpointTeacher,
    TaskSpec,
    data_fields,
    data_location_errors,
    parse_spec,
)
from stratos_contract.runs import RunStatus, Stage

TriggerKind = Literal["upload", "schedule", "manual"]


def trigger_kind(trigger: Any, identity: SpecIdentity) -> tuple[TriggerKind, str]:
    """What started the run and why: ``("upload", ...)`` for an S3 event, else the RunRequest's reason."""
    if isinstance(trigger, dict) and trigger.get("kind") == "stratos.run-request":
        reason = RunRequest.model_validate(trigger).reason
        revision = identity.revision or ""
        return ("schedule" if revision.startswith(REDISTILL_REVISION_PREFIX) else "manual"), reason
    return "upload", "spec uploaded"


def allowed_data_locations(settings: Settings) -> list[DataLocation]:
    """Where this stack's specs may read data: the artifacts bucket's ``data/`` and each ``DataBucketName``."""
    allowed = [DataLocation(settings.artifacts_bucket, ARTIFACTS_DATA_PREFIX)] if settings.artifacts_bucket else []
    return allowed + [DataLocation(bucket) for bucket in settings.data_buckets]


def deployment_checks(spec: TaskSpec, settings: Settings, source: str) -> None:
    """Checks the spec contract cannot make alone: what this stack and SageMaker can run.

    Raises:
        SpecValidationError: ``constraints.region`` differs from the stack's region (the run would plan with
            one region's prices and train in another), or a data URI lies outside the stack's data locations
            (:func:`allowed_data_locations`; never the specs bucket, never the artifacts bucket outside
            ``data/``). Limits the spec itself can state (``domain_notes``' length, a SageMaker
            hyperparameter's) are in the spec model, so ``stratos validate``, the JSON Schema and this step
            agree.
    """
    errors: list[FieldError] = []
    region = spec.constraints.region
    if settings.region and region != settings.region:
        errors.append(
            FieldError(
                "constraints.region", repr(region), f"this Stratos stack runs in {settings.region}; deploy one there"
            )
        )
    reserved = tuple(b for b in (settings.specs_bucket, settings.artifacts_bucket) if b)
    errors += data_location_errors(spec, allowed_data_locations(settings), reserved)
    errors += candidate_errors(spec)
    errors += external_teacher_errors(spec, settings)
    if errors:
        raise SpecValidationError(errors, source)


def candidate_errors(spec: TaskSpec) -> list[FieldError]:
    """Candidates the planner does not know (:func:`stratos.planner.plan.resolve_candidates`): a model id or an
    ``accuracy_priors`` key outside the catalog, an unknown Bedrock model or one not offered in the spec's
    region, an endpoint serving an unknown model. Found here, the run fails before it prices anything."""
    from stratos.planner.catalog import load_catalog
    from stratos.planner.plan import resolve_candidates

    return resolve_candidates(spec, load_catalog())[3]


def external_teacher_errors(spec: TaskSpec, settings: Settings) -> list[FieldError]:
    """Why this stack cannot call the spec's external teachers (none: it can): a Bedrock teacher must be one of
    the stack's ``BedrockTeacherModelIds`` (foundation models: the spec refuses inference profiles), an endpoint
    teacher one of its ``TeacherEndpointNames``; the training role may invoke those only, so any other would
    fail inside the paid training job. (Whether the planner knows them is :func:`candidate_errors`.)
    """
    errors: list[FieldError] = []
    for i, teacher in enumerate(spec.candidates.external_teachers):
        field = f"candidates.external_teachers[{i}]"
        if isinstance(teacher, BedrockTeacher) and teacher.model_id not in settings.bedrock_teachers:
            allowed = ", ".join(settings.bedrock_teachers) or "none"
            why = f"this stack's training role may not invoke it (BedrockTeacherModelIds: {allowed})"
            errors.append(FieldError(f"{field}.model_id", repr(teacher.model_id), why))
        elif isinstance(teacher, EndpointTeacher) and teacher.endpoint_name not in settings.teacher_endpoints:
            allowed = ", ".join(settings.teacher_endpoints) or "none"
            why = f"this stack's training role may not invoke it (TeacherEndpointNames: {allowed})"
            errors.append(FieldError(f"{field}.endpoint_name", repr(teacher.endpoint_name), why))
    return errors


def teacher_endpoint_errors(spec: TaskSpec, sagemaker: Any) -> list[FieldError]:
    """Endpoint teachers that are not serving now (DescribeEndpoint: missing, or not ``InService`` /
    ``Updating`` / ``SystemUpdating``, in which SageMaker still routes requests)."""
    errors: list[FieldError] = []
    for i, teacher in enumerate(spec.candidates.external_teachers):
        if not isinstance(teacher, EndpointTeacher):
            continue
        field = f"candidates.external_teachers[{i}].endpoint_name"
        described = sagemaker.describe_endpoint(teacher.endpoint_name)
        status = (described or {}).get("EndpointStatus")
        if described is None:
            errors.append(FieldError(field, repr(teacher.endpoint_name), "no such endpoint in this region"))
        elif status not in SERVING_STATUSES:
            reason = described.get("FailureReason") or ""
            why = f"the endpoint is {status}, not serving" + (f" ({reason})" if reason else "")
            errors.append(FieldError(field, repr(teacher.endpoint_name), why))
    return errors


#: Endpoint states in which SageMaker routes requests (an update keeps the old fleet serving until it flips).
SERVING_STATUSES = frozenset({"InService", "Updating", "SystemUpdating"})


def data_objects(spec: TaskSpec) -> list[tuple[str, str]]:
    """``(spec field, S3 object URI)`` the run reads: a builtin dataset's official files under its prefix."""
    data = spec.data
    if isinstance(data, BuiltinDatasetData):
        prefix = data.uri if data.uri.endswith("/") else f"{data.uri}/"
        return [("data.uri", f"{prefix}{name}") for name in BUILTIN_FILES[data.name]]
    return data_fields(spec)


def data_uris(spec: TaskSpec) -> list[str]:
    """The S3 objects the run's data comes from (their versions decide "new data" for re-distillation)."""
    return [uri for _, uri in data_objects(spec)]


def data_versions(spec: TaskSpec, artifacts: Any, source: str) -> dict[str, str | None]:
    """The version of every data object the run reads, each one checked readable before any job starts.

    Raises:
        SpecValidationError: an object is missing, or S3 denies this stack's roles access to it (the field
            named, and which it was).
    """
    versions: dict[str, str | None] = {}
    errors: list[FieldError] = []
    for path, uri in data_objects(spec):
        try:
            versions[uri] = artifacts.object_version(uri)
        except DataAccessDeniedError:
            errors.append(
                FieldError(path, short_repr(uri), "access denied: this stack's roles may not read it (S3 403)")
            )
            continue
        if versions[uri] is None:
            errors.append(FieldError(path, short_repr(uri), "no such object in S3"))
    if errors:
        raise SpecValidationError(errors, source)
    return versions


def start_run(event: Any, services: Services | None = None) -> RunStarted:
    """Claim, validate and record the run the trigger asks for.

    Args:
        event: the step event; its ``state.trigger`` is an S3 "Object Created" EventBridge event or a
            :class:`~stratos.events.RunRequest`.

    Returns:
        The run context (every name of the run) and the poll timing, which become the new state document.

    Raises:
        EventShapeError: the trigger is neither shape (or larger than MAX_TRIGGER_BYTES).
        DuplicateRunError: another execution already owns this spec version's run.
        SpecNotFoundError: the spec version cannot be read.
        SpecValidationError: the spec is invalid (every field named), or this stack cannot run it.
        ThrottlingError: S3 or DynamoDB throttled (retried by the state machine).
    """
    svc = services or get_services()
    step = parse_step_event(event, TriggeredState)
    trigger = step.state.trigger
    size = len(json.dumps(trigger).encode("utf-8"))
    if size > MAX_TRIGGER_BYTES:
        raise SpecValidationError(
            [FieldError("<trigger>", f"{size} bytes", f"larger than {MAX_TRIGGER_BYTES} bytes")], "execution input"
        )
    identity = identity_from_trigger(trigger)
    kind, reason = trigger_kind(trigger, identity)
    run_id = run_names(identity, "pending").run_id  # the run id does not depend on the task
    started = utcnow()
    spec_fields = identity.model_dump(mode="json")
    svc.records.claim(
        run_id,
        step.execution_arn,
        RunRecord(
            status=RunStatus.RUNNING,
            stage=Stage.VALIDATING,
            spec=spec_fields,
            trigger=kind,
            trigger_reason=reason,
            started_at=started,
            updated_at=started,
        ),
    )
    raw, spec_modified_at = svc.artifacts.read_spec_version(identity)
    spec = parse_spec(raw, source=identity.uri)
    deployment_checks(spec, svc.settings, identity.uri)
    unreachable = teacher_endpoint_errors(spec, svc.sagemaker) if spec.candidates.external_teachers else []
    if unreachable:
        raise SpecValidationError(unreachable, identity.uri)
    versions = data_versions(spec, svc.artifacts, identity.uri)
    names = run_names(identity, spec.task_id, spec.deployment.endpoint_name)
    spec_copy = svc.artifacts.put(f"{RUNS_PREFIX}{names.run_id}/spec.json", raw)
    run = RunContext(
        spec=identity,
        names=names,
        task_id=spec.task_id,
        region=spec.constraints.region,
        mode_requested=spec.distillation.mode,
        trigger=kind,
        started_at=started,
        spec_modified_at=spec_modified_at,
        spec_copy=spec_copy,
    )
    svc.records.update(
        run_id,
        step.execution_arn,
        RunRecord(
            stage=Stage.VALIDATED,
            task_id=spec.task_id,
            endpoint_name=names.endpoint_name,
            spec_copy=spec_copy.uri,
            mode=ModeRecord(requested=spec.distillation.mode.value),
            data_versions=versions,
            redistill=spec.redistill.model_dump(mode="json") if spec.redistill else None,
            updated_at=utcnow(),
        ),
    )
    svc.records.put_task(
        spec.task_id,
        {
            "last_run_id": run_id,
            "last_run_status": "RUNNING",
            "last_run_started_at": started.isoformat(),
            "updated_at": utcnow().isoformat(),
        },
    )
    return RunStarted(run=run, timing=step.state.timing)
