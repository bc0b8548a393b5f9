"""Deploy and FinishDeployment: put the passed student behind the task's SageMaker endpoint, blue/green.

Deploy always describes the endpoint first (:func:`decide`):

=========================================== ====================================================
endpoint                                    action
=========================================== ====================================================
absent                                      create it with this run's (new, uniquely named) config
InService on another config                 UpdateEndpoint to this run's config: blue/green, traffic
                                            shifted after the green fleet is healthy, automatic
                                            rollback on the endpoint's CloudWatch alarms
InService / Creating / Updating on ours     nothing: an earlier attempt of this step did it
Creating / Updating / RollingBack / ...     :class:`~stratos.errors.ResourceBusyError` (another run's
(another run's change)                      change in flight): the state machine waits and retries
Failed                                      delete (waiter), then create it again ("recreated")
=========================================== ====================================================

Before anything is created, the endpoint's tags must show it is this stack's and this task's
(:mod:`stratos.pipeline.ownership`). Model and endpoint config are then created, idempotent by name
("already exists" = success); both carry the ownership tags and the planned student's catalog id
(``stratos:student``, e.g. ``smollm2-135m-instruct-l15`` for a depth-pruned copy), and the serving timeouts
are sized from that student's own parameter count. FinishDeployment runs once the endpoint is InService on
this run's config and only then deletes the previous config and its model, each only if it carries this
stack's ``stratos:managed-by`` tag. A rejected or failed run never reaches this module; :func:`deploy` also
refuses a document whose evaluation did not pass.

Between the two, CheckLatency load-tests the endpoint (:mod:`stratos.pipeline.latency`), and FinishDeployment
runs only if it passes. When the endpoint misses ``latency.p50_ms`` x (1 + tolerance), :func:`roll_back` puts it
back as it was before the run, and the run fails with the measured figures (``DeploymentError``):

=========================================== ====================================================
this run's deployment                       roll back
=========================================== ====================================================
``updated`` (a config served before it)     UpdateEndpoint back to that config (blue/green, all at once, the slow
                                            fleet terminated at once) and the endpoint's task/run/spec tags
                                            restored from it; the state machine waits until it is InService on it
                                            again. This run's config and model are kept (they cost nothing)
``created`` / ``recreated`` (nothing served DeleteEndpoint (only an endpoint tagged with this stack and this run), then
before it, or a Failed endpoint)            this run's config and model: an endpoint that misses its spec is not
                                            left serving, nor billing
=========================================== ====================================================
"""

from __future__ import annotations

import math
from typing import Any, Literal

from stratos.errors import DeploymentError, EvaluationRejectedError, ResourceBusyError
from stratos.naming import RunNames
from stratos.payloads import DeploymentRef
from stratos.pipeline.models import EndpointState, EvaluatedState, MeasuredState, RollbackRef
from stratos.pipeline.ownership import (
    MANAGED_BY,
    RUN,
    SPEC_MODIFIED,
    STUDENT,
    TASK,
    Owner,
    check_endpoint_owner,
    ownership_tags,
    timestamp,
)
from stratos.pipeline.services import Services, get_services
from stratos.pipeline.state import load_spec, names_for, parse_step_event, utcnow
from stratos.run_record import RunRecord
from stratos.spec import TaskSpec
from stratos_contract.runs import Stage

Action = Literal["create", "update", "already", "busy", "recreate"]
VARIANT = "AllTraffic"
#: Endpoint states in which another change is in flight: act later, never now.
BUSY_STATES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting", "OutOfService"})
#: SageMaker's bounds for ModelDataDownloadTimeoutInSeconds and ContainerStartupHealthCheckTimeoutInSeconds, s.
TIMEOUT_MIN_S, TIMEOUT_MAX_S = 60, 3600
#: Assumed S3 -> instance download rate for sizing the download timeout, bytes/s (conservative; large
#: instances see several times this).
DOWNLOAD_BYTES_PER_S = 50e6
#: Assumed weight-loading rate into accelerator or host memory for the startup timeout, bytes/s.
LOAD_BYTES_PER_S = 100e6
#: How long the green fleet bakes with the rollback alarms armed before the blue one is terminated, s.
BAKE_SECONDS = 300


def decide(endpoint: dict[str, Any] | None, our_config: str) -> Action:
    """What Deploy does with the endpoint it described (see the module table)."""
    if endpoint is None:
        return "create"
    status = str(endpoint.get("EndpointStatus", ""))
    current = str(endpoint.get("EndpointConfigName", ""))
    pending = str((endpoint.get("PendingDeploymentSummary") or {}).get("EndpointConfigName", ""))
    if current == our_config and status in ("InService", "Creating", "Updating"):
        return "already"
    if pending == our_config and status == "Updating":
        return "already"
    if status == "InService" or status == "UpdateRollbackFailed":
        return "update"
    if status == "Failed":
        return "recreate"
    if status in BUSY_STATES:
        return "busy"
    raise DeploymentError(f"endpoint {endpoint.get('EndpointName')} is in an unknown state {status!r}")


def serving_timeouts(student_params: int) -> tuple[int, int]:
    """``(model download timeout, container startup health-check timeout)``, seconds, sized to the model.

    The deployable model is bf16 safetensors, 2 bytes/parameter. Download: 60 s + twice the time at
    :data:`DOWNLOAD_BYTES_PER_S`; startup: 120 s + twice the load time at :data:`LOAD_BYTES_PER_S`; both
    clamped to SageMaker's 60..3600 s. A 135M student gets (71 s, 126 s); a 7B one (620 s, 400 s).
    """
    size = 2 * student_params
    download = 60 + 2 * size / DOWNLOAD_BYTES_PER_S
    startup = 120 + 2 * size / LOAD_BYTES_PER_S
    return _clamp_timeout(download), _clamp_timeout(startup)


def _clamp_timeout(seconds: float) -> int:
    return int(min(TIMEOUT_MAX_S, max(TIMEOUT_MIN_S, math.ceil(seconds))))


def container_env(spec: TaskSpec, accelerators: int) -> dict[str, str]:
    """Serving container environment (Hugging Face LLM / inference-toolkit DLC conventions)."""
    lat = spec.constraints.latency
    return {
        "HF_MODEL_ID": "/opt/ml/model",
        "HF_TASK": "text-generation",
        "SM_NUM_GPUS": str(accelerators),
        "MAX_INPUT_TOKENS": str(lat.prompt_tokens),
        "MAX_TOTAL_TOKENS": str(lat.prompt_tokens + lat.output_tokens),
        "MAX_CONCURRENT_REQUESTS": str(max(8, 2 * lat.concurrency)),
    }


def alarm_names(endpoint: str) -> tuple[str, str]:
    """The endpoint's rollback alarms: 5xx errors and p50 model latency."""
    return f"stratos-{endpoint}-5xx", f"stratos-{endpoint}-p50-latency"


def rollback_alarms(endpoint: str, p50_ms: float) -> list[dict[str, Any]]:
    """PutMetricAlarm requests for the alarms blue/green rolls back on: any 5xx in two of three minutes, or
    p50 ``ModelLatency`` (microseconds) above twice the spec's p50 limit for three minutes."""
    errors, latency = alarm_names(endpoint)
    dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": VARIANT}]
    common = {"Namespace": "AWS/SageMaker", "Dimensions": dims, "Period": 60, "TreatMissingData": "notBreaching"}
    return [
        {
            "AlarmName": errors,
            "AlarmDescription": f"Stratos rollback: 5xx errors on {endpoint}",
            "MetricName": "Invocation5XXErrors",
            "Statistic": "Sum",
            "EvaluationPeriods": 3,
            "DatapointsToAlarm": 2,
            "Threshold": 0.0,
            "ComparisonOperator": "GreaterThanThreshold",
            **common,
        },
        {
            "AlarmName": latency,
            "AlarmDescription": f"Stratos rollback: p50 latency on {endpoint} above 2x the spec's {p50_ms} ms",
            "MetricName": "ModelLatency",
            "ExtendedStatistic": "p50",
            "EvaluationPeriods": 3,
            "DatapointsToAlarm": 3,
            "Threshold": 2 * p50_ms * 1000.0,
            "ComparisonOperator": "GreaterThanThreshold",
            **common,
        },
    ]


def deployment_config(endpoint: str, instance_count: int) -> dict[str, Any]:
    """UpdateEndpoint's DeploymentConfig: blue/green with automatic rollback on :func:`rollback_alarms`.

    One instance: all traffic at once after the green fleet passes health checks, then :data:`BAKE_SECONDS`
    of baking with the alarms armed. Two or more: a one-instance canary first, baking as long, then the rest.
    """
    if instance_count >= 2:
        routing: dict[str, Any] = {
            "Type": "CANARY",
            "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
            "WaitIntervalInSeconds": BAKE_SECONDS,
        }
    else:
        routing = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": BAKE_SECONDS,
            "MaximumExecutionTimeoutInSeconds": 3 * 3600,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in alarm_names(endpoint)]},
    }


def deploy(event: Any, services: Services | None = None) -> DeploymentRef:
    """Create or update the task's endpoint with this run's student (see the module table).

    Ownership comes first (:func:`~stratos.pipeline.ownership.check_endpoint_owner`): an existing endpoint
    must carry this stack's ``stratos:managed-by`` tag and this task's id (or one the spec's
    ``deployment.replaces_tasks`` lists), and must not serve a newer version of the spec; only then are the
    model and endpoint config created. An updated endpoint's task, run and spec-version tags are rewritten.

    Raises:
        EvaluationRejectedError: the document's evaluation did not pass (never deploy a rejected student).
        EndpointOwnershipError: the endpoint is not this stack's, or serves another task (nothing is created).
        DeploymentSupersededError: the endpoint serves a newer version of this task's spec.
        ResourceBusyError: the endpoint is changing state for another run; retry later.
        QuotaExceededError: the serving instance type is over quota (the state machine falls back).
        DeploymentError: SageMaker refused the model, config or endpoint.
        ConfigurationError: the SageMaker role or inference image is not configured.
    """
    from stratos.planner.catalog import load_catalog

    svc = services or get_services()
    step = parse_step_event(event, EvaluatedState)
    doc = step.state
    run, plan, training, evaluation = doc.run, doc.plan, doc.training, doc.evaluation
    if not evaluation.passed or training.status != "Completed":
        raise EvaluationRejectedError(
            f"refusing to deploy run {run.names.run_id}: evaluation passed={evaluation.passed}, "
            f"training {training.status}"
        )
    spec = load_spec(svc, run)
    names: RunNames = names_for(run, spec, plan.attempt)
    catalog = load_catalog()
    student = catalog.model(plan.plan.student)
    serving = catalog.instance(plan.plan.serving_instance)
    if student is None or serving is None:
        raise DeploymentError(f"{plan.plan.student} or {plan.plan.serving_instance} is no longer in the catalog")
    sm = svc.sagemaker
    description = sm.describe_training_job(training.job_name)
    model_data = description.get("ModelArtifacts", {}).get("S3ModelArtifacts")
    if not model_data:
        raise DeploymentError(f"training job {training.job_name} has no model artifacts")
    image = svc.settings.require("inference_image_uri" if serving.accelerator_count else "cpu_inference_image_uri")
    stack = svc.settings.require("stack_name")
    endpoint = sm.describe_endpoint(names.endpoint_name)
    if endpoint is not None:
        check_endpoint_owner(
            names.endpoint_name,
            Owner.from_tags(sm.tags(str(endpoint["EndpointArn"]))),
            stack=stack,
            task_id=run.task_id,
            replaces_tasks=spec.deployment.replaces_tasks,
            spec_modified_at=run.spec_modified_at,
        )
    tags = [
        *ownership_tags(stack, run.task_id, run.names.run_id),
        {"Key": SPEC_MODIFIED, "Value": timestamp(run.spec_modified_at)},
    ]
    # The endpoint is shared by the task's runs (blue/green), so only this run's model and config name the student.
    named = [*tags, {"Key": STUDENT, "Value": student.id}]
    sm.create_model(
        names.model_name,
        svc.settings.require("serving_role_arn"),
        image,
        model_data,
        container_env(spec, serving.accelerator_count),
        named,
    )
    download_s, startup_s = serving_timeouts(student.params)
    variant = {
        "VariantName": VARIANT,
        "ModelName": names.model_name,
        "InstanceType": plan.plan.serving_instance,
        "InitialInstanceCount": spec.deployment.instance_count,
        "InitialVariantWeight": 1.0,
        "ModelDataDownloadTimeoutInSeconds": download_s,
        "ContainerStartupHealthCheckTimeoutInSeconds": startup_s,
    }
    sm.create_endpoint_config(names.endpoint_config_name, [variant], named)
    action = decide(endpoint, names.endpoint_config_name)
    previous: str | None = None
    status = "Creating"
    result: Literal["created", "updated", "recreated"] = "created"
    if action == "busy":
        assert endpoint is not None
        raise ResourceBusyError(
            f"endpoint {names.endpoint_name} is {endpoint.get('EndpointStatus')} on config "
            f"{endpoint.get('EndpointConfigName')} (another deployment in flight); retrying later"
        )
    if action == "already":
        assert endpoint is not None
        record = svc.records.get(run.names.run_id) or {}
        earlier = record.get("deployment") or {}
        previous = earlier.get("previous_config_name")
        result = earlier.get("action") or "created"
        status = str(endpoint["EndpointStatus"])
    elif action == "create":
        sm.create_endpoint(names.endpoint_name, names.endpoint_config_name, plan.plan.serving_instance, tags)
    elif action == "recreate":
        if not sm.delete_endpoint_and_wait(names.endpoint_name):
            raise ResourceBusyError(f"endpoint {names.endpoint_name} was Failed and is still being deleted")
        sm.create_endpoint(names.endpoint_name, names.endpoint_config_name, plan.plan.serving_instance, tags)
        result = "recreated"
    else:
        assert endpoint is not None
        previous = str(endpoint.get("EndpointConfigName") or "") or None
        for alarm in rollback_alarms(names.endpoint_name, spec.constraints.latency.p50_ms):
            sm.put_alarm(alarm)
        sm.update_endpoint(
            names.endpoint_name,
            names.endpoint_config_name,
            plan.plan.serving_instance,
            deployment_config(names.endpoint_name, spec.deployment.instance_count),
        )
        # The endpoint now serves this run: its tags say so (managed-by is unchanged: it was checked above).
        sm.add_tags(str(endpoint["EndpointArn"]), tags[1:])
        result, status = "updated", "Updating"
    ref = DeploymentRef(
        endpoint_name=names.endpoint_name,
        endpoint_config_name=names.endpoint_config_name,
        model_name=names.model_name,
        action=result,
        status=status,
        previous_config_name=previous,
        serving_instance=plan.plan.serving_instance,
    )
    svc.records.update(
        run.names.run_id,
        step.execution_arn,
        RunRecord(stage=Stage.DEPLOYING, deployment=ref.model_dump(mode="json"), updated_at=utcnow()),
    )
    return ref


def finish(event: Any, services: Services | None = None) -> DeploymentRef:
    """The endpoint is InService on this run's config: delete the previous config and its model, and this
    run's abandoned attempts' (quota fallbacks), now that nothing serves from them. A config or model without
    this stack's ``stratos:managed-by`` tag is never deleted (the record lists it under ``kept_not_ours``).

    Raises:
        DeploymentError: the endpoint is not InService on this run's config (the ASL only calls this when it is).
    """
    svc = services or get_services()
    step = parse_step_event(event, EndpointState)
    doc = step.state
    run, ref, poll, plan = doc.run, doc.deployment, doc.endpoint, doc.plan
    if poll.status != "InService" or poll.config != ref.endpoint_config_name:
        raise DeploymentError(
            f"endpoint {ref.endpoint_name} is {poll.status} on {poll.config}, "
            f"not InService on {ref.endpoint_config_name}"
        )
    sm = svc.sagemaker
    stale: list[str] = []
    if ref.previous_config_name and ref.previous_config_name != ref.endpoint_config_name:
        stale.append(ref.previous_config_name)
    spec = load_spec(svc, run)
    for attempt in range(plan.attempt):
        older = names_for(run, spec, attempt)
        if older.endpoint_config_name != ref.endpoint_config_name:
            stale.append(older.endpoint_config_name)
    stack = svc.settings.require("stack_name")
    deleted: list[str] = []
    kept: list[str] = []
    for config_name in stale:
        config = sm.describe_endpoint_config(config_name)
        if config is None:
            continue
        if sm.tags(str(config["EndpointConfigArn"])).get(MANAGED_BY) != stack:
            kept.append(config_name)
            continue
        models = {v.get("ModelName") for v in config.get("ProductionVariants", [])} - {ref.model_name}
        sm.delete_endpoint_config(config_name)
        deleted.append(config_name)
        for model_name in sorted(m for m in models if m):
            model = sm.describe_model(model_name)
            if model is None:
                continue
            if sm.tags(str(model["ModelArn"])).get(MANAGED_BY) != stack:
                kept.append(model_name)
                continue
            sm.delete_model(model_name)
    done = ref.model_copy(update={"status": "InService"})
    svc.records.update(
        run.names.run_id,
        step.execution_arn,
        RunRecord(
            stage=Stage.DEPLOYED,
            deployment=done.model_dump(mode="json") | {"deleted_configs": deleted, "kept_not_ours": kept},
            updated_at=utcnow(),
        ),
    )
    return done


#: UpdateEndpoint's DeploymentConfig when rolling back to the config that served before: blue/green, all traffic at
#: once when the old config's fleet is healthy, and the slow fleet terminated at once (it is known to miss its
#: limit); no alarms: the config it returns to already served.
REVERT_DEPLOYMENT_CONFIG: dict[str, Any] = {
    "BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
        "TerminationWaitInSeconds": 0,
        "MaximumExecutionTimeoutInSeconds": 3600,
    }
}


def roll_back(event: Any, services: Services | None = None) -> RollbackRef:
    """The endpoint missed its latency limit (CheckLatency): put it back as it was before this run (see the
    module's second table). Idempotent: a retried attempt finds the endpoint already reverting, or gone.

    Returns:
        What was done; its ``reason`` (the measured figures and the rollback) is the run's failure reason.

    Raises:
        DeploymentError: the check passed (nothing to roll back), the endpoint is not this stack's or (for a
            delete) not this run's, or the config to return to no longer exists (the endpoint stays as it is).
        ResourceBusyError: the endpoint is changing for another reason, or still deleting: retry later.
        QuotaExceededError: the previous config's instances cannot be had again.
    """
    svc = services or get_services()
    step = parse_step_event(event, MeasuredState)
    doc = step.state
    run, ref, check = doc.run, doc.deployment, doc.latency
    if check.passed:
        raise DeploymentError(f"endpoint {ref.endpoint_name} met its latency limit; refusing to roll it back")
    sm = svc.sagemaker
    stack = svc.settings.require("stack_name")
    endpoint = sm.describe_endpoint(ref.endpoint_name)
    owner = Owner.from_tags(sm.tags(str(endpoint["EndpointArn"]))) if endpoint is not None else None
    if owner is not None and owner.stack != stack:
        raise DeploymentError(f"{check.reason}; endpoint {ref.endpoint_name} is {owner.describe()}: left as it is")
    previous = ref.previous_config_name if ref.action == "updated" else None
    if previous:
        rollback = _revert(sm, ref, previous, endpoint, check.reason)
    else:
        rollback = _delete(sm, ref, stack, run.names.run_id, endpoint, owner, check.reason)
    svc.records.update(
        run.names.run_id,
        step.execution_arn,
        RunRecord(
            deployment=ref.model_dump(mode="json") | {"rolled_back": rollback.model_dump(mode="json")},
            updated_at=utcnow(),
        ),
    )
    return rollback


def _revert(sm: Any, ref: DeploymentRef, previous: str, endpoint: dict[str, Any] | None, why: str) -> RollbackRef:
    """UpdateEndpoint back to ``previous`` (unless it is already going or gone back) and restore its tags."""
    name = ref.endpoint_name
    if endpoint is None:
        raise DeploymentError(f"{why}; endpoint {name} no longer exists, so it cannot return to config {previous}")
    config = sm.describe_endpoint_config(previous)
    if config is None:
        raise DeploymentError(
            f"{why}; the config that served before, {previous}, no longer exists: endpoint {name} stays on "
            f"{ref.endpoint_config_name}"
        )
    status = str(endpoint.get("EndpointStatus", ""))
    current = str(endpoint.get("EndpointConfigName", ""))
    pending = str((endpoint.get("PendingDeploymentSummary") or {}).get("EndpointConfigName", ""))
    if pending == previous or (current == previous and status in ("InService", "Updating")):
        pass  # an earlier attempt of this step started it
    elif status in BUSY_STATES:
        raise ResourceBusyError(f"endpoint {name} is {status} on {current}; rolling back to {previous} later")
    else:
        instance = str((config.get("ProductionVariants") or [{}])[0].get("InstanceType", ""))
        sm.update_endpoint(name, previous, instance, REVERT_DEPLOYMENT_CONFIG)
    tags = sm.tags(str(config["EndpointConfigArn"]))
    restored = [{"Key": key, "Value": tags[key]} for key in (TASK, RUN, SPEC_MODIFIED) if tags.get(key)]
    if restored:
        sm.add_tags(str(endpoint["EndpointArn"]), restored)
    return RollbackRef(
        action="reverted",
        endpoint_name=name,
        config_name=previous,
        failed_config_name=ref.endpoint_config_name,
        reason=(
            f"{why}; rolled back: endpoint {name} returns to config {previous}, which served before this run "
            f"(this run's config {ref.endpoint_config_name} and model {ref.model_name} are kept)"
        )[:1536],
    )


def _delete(
    sm: Any,
    ref: DeploymentRef,
    stack: str,
    run_id: str,
    endpoint: dict[str, Any] | None,
    owner: Owner | None,
    why: str,
) -> RollbackRef:
    """Delete the endpoint this run created (waiting until it is gone), then this run's config and model."""
    name = ref.endpoint_name
    if endpoint is not None:
        if owner is None or owner.run != run_id:
            made_by = "?" if owner is None else owner.run or "?"
            raise DeploymentError(f"{why}; endpoint {name} was made by run {made_by}, not this one: left as it is")
        if not sm.delete_endpoint_and_wait(name):
            raise ResourceBusyError(f"endpoint {name} is still being deleted; its config and model go after it")
    deleted = []
    config = sm.describe_endpoint_config(ref.endpoint_config_name)
    if config is not None and sm.tags(str(config["EndpointConfigArn"])).get(MANAGED_BY) == stack:
        sm.delete_endpoint_config(ref.endpoint_config_name)
        deleted.append(ref.endpoint_config_name)
    model = sm.describe_model(ref.model_name)
    if model is not None and sm.tags(str(model["ModelArn"])).get(MANAGED_BY) == stack:
        sm.delete_model(ref.model_name)
        deleted.append(ref.model_name)
    gone = f", with {' and '.join(deleted)}" if deleted else ""
    return RollbackRef(
        action="deleted",
        endpoint_name=name,
        config_name=None,
        failed_config_name=ref.endpoint_config_name,
        reason=(
            f"{why}; rolled back: endpoint {name} was created by this run (nothing served before it), so it was "
            f"deleted{gone}"
        )[:1536],
    )
