"""PrepareTrainingJob: turn (spec, chosen plan) into the CreateTrainingJob request the ASL sends.

The training job runs the Stratos container (``training_container/``): its hyperparameters are
``stratos_train.config.TrainConfig`` fields as strings; teacher and student arrive as input channels
(``channel:teacher`` / ``channel:student``: Hugging Face model directories staged under the
``STRATOS_MODELS_S3_URI`` prefix, one folder per catalog id); GSM8K's official files arrive as channel
``data`` and user JSONL files as ``train`` / ``eval``. A depth-pruned catalog student
(``smollm2-135m-instruct-l15``) is not staged on its own: its channel is the BASE model's folder and its
source ``channel:student@layers=15``, so the container prunes the real weights at load; the catalog ids
travel as ``teacher_id`` / ``student_id`` for the model card. Image, role and output bucket come from the template
through DefinitionSubstitutions; everything here is per run.

A plan priced on managed spot (``PlanSummary.spot``, ``constraints.spot``) sets ``EnableManagedSpotTraining``
and a ``MaxWaitTimeInSeconds`` (:func:`stopping_condition`); every job of a run, first, retried or fallback,
gets the same ``CheckpointConfig`` prefix (the ASL: ``checkpoints/<run_id>/``), so an interrupted or re-created
job resumes from the run's checkpoints.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

from stratos.errors import SpecValidationError
from stratos.naming import RunNames
from stratos.payloads import PlanRef, PlanSummary, RunContext
from stratos.pipeline.models import (
    MAX_TRAINING_SECONDS,
    Channel,
    Hyperparameters,
    PlannedState,
    StoppingCondition,
    Tag,
    TrainingRequest,
)
from stratos.pipeline.ownership import STUDENT, ownership_tags
from stratos.pipeline.services import Services, get_services
from stratos.pipeline.state import load_spec, names_for, parse_step_event, utcnow
from stratos.run_record import RunRecord
from stratos.spec import BuiltinDatasetData, DistillationMode, EndpointTeacher, GeneratorData, JsonlData, TaskSpec
from stratos_contract.hyperparameters import TrainingHyperparameters, encode_hyperparameters
from stratos_contract.runs import Stage

if TYPE_CHECKING:
    from stratos.planner.catalog import InstanceSpec, ModelSpec

#: Students above this many parameters train LoRA adapters (merged for deployment) instead of all weights:
#: full fine-tuning needs ~16 bytes/parameter (fp32 master weights, gradients, Adam moments).
LORA_ABOVE_PARAMS = 3_000_000_000
#: Volume floor, GB: the model cache, checkpoints and data of even the smallest pair fit, with headroom.
MIN_VOLUME_GB = 30
#: SageMaker's largest training volume, GB.
MAX_VOLUME_GB = 16_384


#: Least time a managed spot job may spend beyond its MaxRuntimeInSeconds waiting for spot capacity, s: one
#: hour, our allowance for capacity that is short when the job starts or after an interruption.
SPOT_MIN_WAIT_ALLOWANCE_SECONDS = 3600


def stopping_condition(
    max_runtime_seconds: int, spot: bool, overhead_fraction: float, max_training_hours: float
) -> StoppingCondition:
    """The job's ``StoppingCondition``.

    On-demand: ``MaxRuntimeInSeconds`` only (the plan's: what the budget buys, capped by the spec's
    ``max_training_hours``; SageMaker refuses ``MaxWaitTimeInSeconds`` without spot).

    Managed spot: ``MaxRuntimeInSeconds`` bounds the time the job trains (SageMaker does not count the waits
    for spot capacity in it) and ``MaxWaitTimeInSeconds`` the wall time from the start, waits included::

        allowance = max(SPOT_MIN_WAIT_ALLOWANCE_SECONDS, ceil(overhead_fraction x runtime))
        wait      = max(runtime, min(runtime + allowance, floor(max_training_hours x 3600), 28 days))

    The allowance is the plan's expected interruption overhead (:func:`~stratos.planner.estimators.
    spot_overhead_fraction`) applied to the whole runtime, at least an hour. The spec's ``max_training_hours``
    is a wall-clock limit, so it caps the wait where it can; SageMaker's rule ``wait >= runtime`` wins where it
    cannot (the runtime is itself capped by ``max_training_hours``, so the two meet only when the budget allows
    the whole ``max_training_hours`` of training: the job then has no extra time to wait for capacity, and
    SageMaker stops it at the spec's limit).

    Args:
        max_runtime_seconds: the plan's MaxRuntimeInSeconds (60 s .. 28 days).
        spot: the plan runs on managed spot.
        overhead_fraction: expected interruption overhead, fraction of the training time (>= 0).
        max_training_hours: the spec's wall-clock limit of the job, hours.
    """
    if not spot:
        return StoppingCondition(MaxRuntimeInSeconds=max_runtime_seconds)
    allowance = max(SPOT_MIN_WAIT_ALLOWANCE_SECONDS, math.ceil(overhead_fraction * max_runtime_seconds))
    cap = min(math.floor(max_training_hours * 3600), MAX_TRAINING_SECONDS)
    wait = max(max_runtime_seconds, min(max_runtime_seconds + allowance, cap))
    return StoppingCondition(MaxRuntimeInSeconds=max_runtime_seconds, MaxWaitTimeInSeconds=wait)


def planned_stopping_condition(
    chosen: PlanSummary, instance: InstanceSpec, max_runtime_seconds: int, spec: TaskSpec
) -> StoppingCondition:
    """:func:`stopping_condition` for the plan ``chosen`` on ``instance`` (its nodes and family's interruption
    rate give the spot overhead), the pipeline's and ``stratos launch``'s alike."""
    nodes = 1 if chosen.parallelism is None else chosen.parallelism.nodes
    overhead = 0.0
    if chosen.spot and instance.spot is not None:
        from stratos.planner.estimators import spot_overhead_fraction

        overhead = spot_overhead_fraction(instance.spot.interruptions_per_hour, nodes)
    return stopping_condition(max_runtime_seconds, chosen.spot, overhead, spec.constraints.max_training_hours)


def volume_size_gb(teacher_params: int, student_params: int, lora: bool) -> int:
    """EBS volume for one training instance, GB (10^9 bytes).

    Downloads of both models (up to 4 bytes/parameter when a repository ships fp32), the container's bf16
    conversion cache (2 bytes/parameter each), and two student checkpoints (full fine-tuning: weights +
    Adam moments, 12 bytes/parameter; LoRA: the merged copy, 4 bytes/parameter), plus 20 % headroom and the
    :data:`MIN_VOLUME_GB` floor.
    """
    both = teacher_params + student_params
    checkpoint = (4 if lora else 12) * student_params
    need_bytes = 4 * both + 2 * both + 2 * checkpoint
    return max(MIN_VOLUME_GB, min(MAX_VOLUME_GB, math.ceil(1.2 * need_bytes / 1e9) + MIN_VOLUME_GB // 2))


def model_source(channel: str, model: ModelSpec) -> str:
    """The container's model source for a model channel: ``channel:<name>``, plus ``@layers=<n>`` when the
    catalog model is a depth-pruned copy (the channel then holds its base; ``stratos_train.models``); an external
    teacher's own source (``bedrock:<model id>``, ``sagemaker-endpoint:<name>``: no channel)."""
    if model.access is not None:
        return model.access.source
    source = f"channel:{channel}"
    return source if model.pruned_from is None else f"{source}@layers={model.layers}"


class TaskSettings(NamedTuple):
    """How the training job builds a spec's task: ``stratos_train.tasks.get_task(task, **options)``, then
    ``examples(split, train_size | eval_size, seed)`` (sizes None: the whole file, for user JSONL)."""

    task: str
    options: dict[str, str]
    train_size: int | None
    eval_size: int | None
    seed: int


def task_settings(spec: TaskSpec) -> TaskSettings:
    """The task name, task options, sizes and seed that ``spec``'s data and task sections select (the data
    channels' file paths are added where the data is: by the container, or by ``stratos ask --spec``)."""
    data = spec.data
    if isinstance(data, GeneratorData):
        return TaskSettings(data.generator, {}, data.train_size, data.eval_size, data.seed)
    if isinstance(data, BuiltinDatasetData):
        return TaskSettings(data.name, {}, data.train_size, data.eval_size, data.seed)
    options = {"format": data.format.value, "metric": spec.task.metric.value}
    if spec.task.answer_regex:
        options["answer_regex"] = spec.task.answer_regex
    return TaskSettings("jsonl", options, None, None, 0)


def hyperparameters(
    spec: TaskSpec,
    plan: PlanSummary,
    teacher: ModelSpec,
    student: ModelSpec,
    accelerated: bool,
    generation_batch: int | None = None,
) -> Hyperparameters:
    """The container's hyperparameters for ``spec`` trained with ``plan`` (whose catalog models are
    ``teacher`` and ``student``).

    ``mode`` is the spec's: ``auto`` lets the container probe the teacher and decide (its decision and
    evidence come back in metrics.json); the planner's predicted mode only sizes the job. A student above
    :data:`LORA_ABOVE_PARAMS` (its own count: a pruned copy's, not its base's) trains LoRA adapters. The plan's
    parallelism (strategy, topology, batch shape, teacher placement) travels as the ``parallelism``
    hyperparameter, one JSON string the container obeys or refuses; a plan without one leaves the
    container's default (one process per device). ``generation_batch`` (sequences generated together, the
    plan's memory estimate's: :func:`generation_batch_for`) becomes ``eval_batch_size``; None keeps the
    container's default.
    """
    task, options, train_size, eval_size, seed = task_settings(spec)
    # Typed and checked by the one schema the container parses (stratos_contract.hyperparameters), then
    # encoded as the strings SageMaker carries; fields not set here keep the container's defaults.
    typed = TrainingHyperparameters(
        task=task,
        task_options=options,
        **({} if train_size is None else {"train_size": train_size}),
        **({} if eval_size is None else {"eval_size": eval_size}),
        seed=seed,
        teacher=model_source("teacher", teacher),
        student=model_source("student", student),
        teacher_id=teacher.id,
        student_id=student.id,
        mode=spec.distillation.mode.value,
        max_new_tokens=spec.constraints.latency.output_tokens,
        bf16=accelerated,
        lora=student.params > LORA_ABOVE_PARAMS,
        teacher_rationales=plan.mode is DistillationMode.INJECTION,
        domain_notes=spec.distillation.domain_notes or "",
        **external_teacher_settings(spec, plan, teacher),
        **({} if plan.parallelism is None else {"parallelism": plan.parallelism}),
        **({} if generation_batch is None else {"eval_batch_size": generation_batch}),
    )
    return Hyperparameters.model_validate(encode_hyperparameters(typed))


def external_teacher_settings(spec: TaskSpec, plan: PlanSummary, teacher: ModelSpec) -> dict[str, Any]:
    """The hyperparameters an external teacher adds (none for a teacher the job loads): its prices per 1,000
    tokens (the plan's, live or snapshot, which the job counts into metrics.json; the teacher record's for a plan
    written before plans carried them), the endpoint's prompt format and, for an endpoint that returns top-k
    log-probabilities, ``teacher_topk`` = its ``top_logprobs`` unless the spec forces injection (the job then
    aligns by top-k KD when its mode rule says so: :mod:`stratos.planner.matching` rule 5)."""
    access = teacher.access
    if access is None:
        return {}
    planned = (plan.teacher_usd_per_1k_input, plan.teacher_usd_per_1k_output)
    usd_in, usd_out = (access.usd_per_1k_input, access.usd_per_1k_output) if None in planned else planned
    out: dict[str, Any] = {"teacher_usd_per_1k_input": usd_in, "teacher_usd_per_1k_output": usd_out}
    for named in spec.candidates.external_teachers:
        if isinstance(named, EndpointTeacher) and named.source == access.source:
            out["teacher_prompt_format"] = named.prompt_format
    if access.interface == "top-k" and spec.distillation.mode is not DistillationMode.INJECTION:
        out["teacher_topk"] = access.top_logprobs
    return out


def generation_batch_for(spec: TaskSpec, plan: PlanSummary, teacher: ModelSpec, student: ModelSpec) -> int | None:
    """Sequences the job generates together under ``plan``'s parallelism: the batch the planner's memory
    estimate assumed (:func:`stratos.planner.estimators.plan_generation_batch`, the teacher's KV cache beside its
    weights on one device), or None for a plan without parallelism (the container's default)."""
    from stratos.planner import estimators as est
    from stratos.planner.catalog import load_catalog
    from stratos.planner.plan import data_sizes

    instance = load_catalog().instance(plan.training_instance)
    if plan.parallelism is None or instance is None:
        return None
    lat = spec.constraints.latency
    workload = est.TrainingWorkload(*data_sizes(spec), lat.prompt_tokens, lat.output_tokens)
    mode: est.Mode = "injection" if plan.mode is DistillationMode.INJECTION else "alignment"
    return est.plan_generation_batch(student, teacher, mode, workload, plan.parallelism, instance)


def channels(spec: TaskSpec, teacher: ModelSpec, student: ModelSpec, models_s3_uri: str) -> list[Channel]:
    """Input channels: the two models (each from ``<models_s3_uri><staged id>/``: a depth-pruned copy reads
    its base's folder; an external teacher has none), and the data files the task reads."""
    out = [] if teacher.access is not None else [Channel.s3_prefix("teacher", f"{models_s3_uri}{teacher.staged_id}/")]
    out.append(Channel.s3_prefix("student", f"{models_s3_uri}{student.staged_id}/"))
    data = spec.data
    if isinstance(data, BuiltinDatasetData):
        out.append(Channel.s3_prefix("data", data.uri if data.uri.endswith("/") else f"{data.uri}/"))
    elif isinstance(data, JsonlData):
        out.append(Channel.s3_prefix("train", data.train_uri))
        out.append(Channel.s3_prefix("eval", data.eval_uri))
    return out


def training_request(
    run: RunContext, spec: TaskSpec, plan: PlanRef, names: RunNames, models_s3_uri: str, stack: str
) -> TrainingRequest:
    """The CreateTrainingJob fields for ``plan`` (pure: no AWS call), tagged as the ``stack``'s (see
    :mod:`stratos.pipeline.ownership`). ``InstanceCount`` is the plan's parallelism nodes (1 without one); a
    spot plan sets ``EnableManagedSpotTraining`` and the wait of :func:`stopping_condition` (its overhead from
    the catalog's spot figures of the training instance and the plan's nodes).

    Raises:
        SpecValidationError: a planned model or instance type is not in the catalog, or the plan's
            parallelism assumes another device count than the catalog's instance (catalog drift).
    """
    from stratos.errors import FieldError
    from stratos.planner.catalog import load_catalog
    from stratos.planner.external import plan_model

    catalog = load_catalog()
    chosen = plan.plan
    teacher, student = plan_model(spec, catalog, chosen.teacher), catalog.model(chosen.student)
    instance = catalog.instance(chosen.training_instance)
    if teacher is None or student is None or instance is None:
        missing = [n for n, v in ((chosen.teacher, teacher), (chosen.student, student)) if v is None]
        missing += [chosen.training_instance] if instance is None else []
        raise SpecValidationError(
            [FieldError("plan", ", ".join(missing), "no longer in the catalog")], f"run {run.names.run_id}"
        )
    layout = chosen.parallelism
    if layout is not None and layout.devices_per_node != instance.devices:
        raise SpecValidationError(
            [
                FieldError(
                    "plan.parallelism.devices_per_node",
                    str(layout.devices_per_node),
                    f"{instance.instance_type} has {instance.devices} device(s) in the catalog now",
                )
            ],
            f"run {run.names.run_id}",
        )
    hp = hyperparameters(
        spec,
        chosen,
        teacher,
        student,
        accelerated=instance.accelerator_count > 0,
        generation_batch=generation_batch_for(spec, chosen, teacher, student),
    )
    nodes = 1 if layout is None else layout.nodes
    return TrainingRequest(
        job_name=names.training_job_name,
        attempt=plan.attempt,
        instance_type=chosen.training_instance,
        instance_count=nodes,
        volume_size_gb=volume_size_gb(teacher.params, student.params, hp.lora == "true"),
        enable_managed_spot_training=chosen.spot,
        stopping_condition=planned_stopping_condition(chosen, instance, plan.max_runtime_seconds, spec),
        hyperparameters=hp,
        input_data_config=channels(spec, teacher, student, models_s3_uri),
        tags=[
            *(Tag.model_validate(t) for t in ownership_tags(stack, run.task_id, run.names.run_id)),
            Tag(Key="stratos:attempt", Value=str(plan.attempt)),
            Tag(Key="stratos:teacher", Value=teacher.id),
            Tag(Key=STUDENT, Value=student.id),
        ],
    )


def prepare_training(event: Any, services: Services | None = None) -> TrainingRequest:
    """The training job request for the document's plan; the run record notes the job name.

    Raises:
        ConfigurationError: ``STRATOS_MODELS_S3_URI`` is not set.
        SpecValidationError: see :func:`training_request`.
    """
    svc = services or get_services()
    step = parse_step_event(event, PlannedState)
    run, plan = step.state.run, step.state.plan
    spec = load_spec(svc, run)
    request = training_request(
        run,
        spec,
        plan,
        names_for(run, spec, plan.attempt),
        svc.settings.require("models_s3_uri"),
        svc.settings.require("stack_name"),
    )
    svc.records.update(
        run.names.run_id,
        step.execution_arn,
        RunRecord(
            stage=Stage.TRAINING,
            training_job_name=request.job_name,
            attempt=request.attempt,
            training_instance=request.instance_type,
            updated_at=utcnow(),
        ),
    )
    return request
