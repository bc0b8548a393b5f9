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

from stratos.errors import FieldError, SpecValidationError
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
from stratos.pipeline.state import RUNS_PREFIX, parse_step_event, utcnow
from stratos.run_record import ModeRecord, RunRecord
from stratos.spec import BuiltinDatasetData, JsonlData, TaskSpec, parse_spec
from stratos_contract.runs import RunStatus, Stage

TriggerKind = Literal["upload", "schedule", "manual"]


def trigger_kind(trigger: Any, identity: SpecIdentity) -> tuple[TriggerKind, str]:
    """What started the run and why: ``("upload", ...)`` for an S3 event, else the RunRequest's reason."""
    if isinstance(trigger, dict) and trigger.get("kind") == "stratos.run-request":
        reason = RunRequest.model_validate(trigger).reason
        revision = identity.revision or ""
        return ("schedule" if revision.startswith(REDISTILL_REVISION_PREFIX) else "manual"), reason
    return "upload", "spec uploaded"


def deployment_checks(spec: TaskSpec, stack_region: str | None, source: str) -> None:
    """Checks the spec contract cannot make alone: what this stack and SageMaker can run.

    Raises:
        SpecValidationError: ``constraints.region`` differs from the stack's region (the run would plan with
            one region's prices and train in another). Limits the spec itself can state (``domain_notes``'
            length, a SageMaker hyperparameter's) are in the spec model, so ``stratos validate``, the JSON
            Schema and this step agree.
    """
    errors: list[FieldError] = []
    region = spec.constraints.region
    if stack_region and region != stack_region:
        errors.append(
            FieldError(
                "constraints.region", repr(region), f"this Stratos stack runs in {stack_region}; deploy one there"
            )
        )
    if errors:
        raise SpecValidationError(errors, source)


def data_uris(spec: TaskSpec) -> list[str]:
    """The S3 objects the run's data comes from (their versions decide "new data" for re-distillation)."""
    data = spec.data
    if isinstance(data, JsonlData):
        return [data.train_uri, data.eval_uri]
    if isinstance(data, BuiltinDatasetData):
        prefix = data.uri if data.uri.endswith("/") else f"{data.uri}/"
        return [f"{prefix}train.jsonl", f"{prefix}test.jsonl"]
    return []


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
    raw = svc.artifacts.read_spec(identity)
    spec = parse_spec(raw, source=identity.uri)
    deployment_checks(spec, svc.settings.region, identity.uri)
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
        spec_copy=spec_copy,
    )
    versions = {uri: svc.artifacts.object_version(uri) for uri in data_uris(spec)}
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
