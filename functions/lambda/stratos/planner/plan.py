"""The planner for one task spec: candidates, estimates, selection, and the SelectPlan state's output.

``plan(spec, prices)`` resolves the spec's candidate models (catalog ids or Hugging Face repos; the whole
catalog by role when the spec names none), matches every teacher–student pair
(:mod:`stratos.planner.matching`), estimates each factor once (:mod:`stratos.planner.estimators`) and
selects (:mod:`stratos.planner.selection`). It returns a :class:`PlanResult`, from which the SelectPlan
handler takes the state payload (:meth:`PlanResult.plan_ref`, small: the top of the frontier inline) and the
frontier document written to S3 (:meth:`PlanResult.frontier_document`: every returned frontier plan in
fallback order, the baselines, the rejection counts and the pair verdicts).

When nothing is feasible it raises :class:`~stratos.errors.NoFeasiblePlanError` naming how many candidates
each constraint removed and the smallest single-constraint relaxation that would make a plan feasible
(found by re-running the selection with that one constraint lifted).

Managed spot (``constraints.spot``): every training option is priced on-demand and, where the instance's family
has spot figures in the catalog (:class:`~stratos.planner.catalog.SpotFigures`), on managed spot too
(:func:`~stratos.planner.estimators.spot_estimate`: longer by the expected interruption overhead, cheaper by the
family's saving). ``off`` keeps on-demand; ``on`` takes spot, and a training instance without figures is
rejected (``training-no-spot-figure``); ``auto`` takes spot when it is cheaper and its hours still fit
``max_training_hours``. Each (pair mode, instance) keeps ONE training option, so the selection, its counts and
the exhaustive reference are unchanged.

Calibration and uncertainty (issue 16): ``plan(..., calibration=...)`` corrects the expected accuracy, the
training hours and the p50 latency with what past runs of the same task kind, student and mode measured
(:mod:`stratos.planner.calibration`), and every plan carries each estimate's band; among plans whose scores differ
by less than the band of that difference the chosen one is the cheapest per hour, then the one with the fewest
accelerators (:mod:`stratos.planner.uncertainty`). The frontier document says which figures were calibrated and
from how many runs (``calibration``) and how the tie went (``tie``).

Quota fallback: when the chosen serving (or training) instance cannot be had,
:func:`fallback_plan_ref` moves to the next frontier plan, in score order, that avoids the unavailable types.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from stratos.errors import FieldError, NoFeasiblePlanError, PricingUnavailableError, SpecValidationError
from stratos.payloads import FRONTIER_INLINE_K, EstimateBand, PlanRef, PlanSummary, S3Pointer
from stratos.planner import estimators as est
from stratos.planner.calibration import NO_CALIBRATION, Calibration
from stratos.planner.catalog import Catalog, InstanceSpec, ModelSpec, load_catalog
from stratos.planner.external import api_usage, external_teachers
from stratos.planner.external import describe as describe_access
from stratos.planner.matching import PairVerdict, candidate_modes, match_pair
from stratos.planner.pricing import PriceTable
from stratos.planner.selection import (
    FRONTIER_MAX,
    SERVING_CONTEXT,
    SERVING_MEMORY,
    SERVING_PRICE_UNKNOWN,
    TRAINING_MEMORY,
    TRAINING_NO_SPOT,
    TRAINING_PRICE_UNKNOWN,
    Limits,
    PairMode,
    Plan,
    PlanningProblem,
    Selection,
    ServeOption,
    TrainOption,
    Weights,
    select,
)
from stratos.planner.uncertainty import Uncertainty, decide
from stratos.spec import (
    HOURS_PER_MONTH,
    MAX_TRAINING_HOURS,
    BuiltinDatasetData,
    DistillationMode,
    GeneratorData,
    TaskSpec,
)
from stratos_contract.parallelism import ParallelismPlan

#: Official split sizes of the built-in datasets (train, test), examples. GSM8K: Cobbe et al. 2021.
BUILTIN_SPLITS: dict[str, tuple[int, int]] = {"gsm8k": (7473, 1319)}
#: Assumed size of user JSONL data when the caller cannot count it (train, eval), examples.
DEFAULT_JSONL_SPLITS = (10_000, 500)
#: Schema version of the frontier document.
FRONTIER_DOCUMENT_VERSION = 1
#: Relaxable constraints, as spec paths.
RELAXABLE = (
    "constraints.budget_usd",
    "constraints.latency.p50_ms",
    "constraints.max_training_hours",
    "constraints.min_accuracy",
)

Prices = PriceTable | Mapping[str, tuple[float | None, float | None]]
BaselineName = Literal["accuracy_first", "cost_first", "latency_first"]
#: Highest fallback index a PlanRef can carry (``PlanRef.attempt`` is bounded so the state stays small).
MAX_FALLBACK_ATTEMPT = 99


@dataclass(frozen=True)
class Relaxation:
    """Lifting one constraint to this value would make a plan feasible.

    Attributes:
        constraint: spec path, e.g. ``constraints.budget_usd``.
        current: the spec's value.
        needed: the least relaxed value with a feasible plan (a list of instance types to allow, for the
            instance restrictions).
        relative_change: ``|needed - current| / current`` (``None`` for instance restrictions).
    """

    constraint: str
    current: Any
    needed: Any
    relative_change: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "constraint": self.constraint,
            "current": self.current,
            "needed": self.needed,
            "relative_change": self.relative_change,
        }

    def __str__(self) -> str:
        if self.relative_change is None:
            return f"{self.constraint}: allow {', '.join(self.needed)}"
        sign = "+" if self.needed >= self.current else "-"
        return f"{self.constraint} {self.current:g} -> {self.needed:g} ({sign}{100 * self.relative_change:.1f}%)"


@dataclass(frozen=True)
class PlanContext:
    """What the selection ran on, for the frontier document and messages."""

    spec: TaskSpec
    problem: PlanningProblem
    limits: Limits
    weights: Weights
    pairs: list[PairVerdict]
    prices_source: str
    snapshot_date: str
    workload: est.TrainingWorkload
    warnings: list[str] = field(default_factory=list)
    spot_snapshot_date: str = ""
    calibration: Calibration = NO_CALIBRATION
    external_teachers: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class PlanResult:
    """A feasible selection for one spec.

    Attributes:
        selection: the chosen plan, frontier, baselines and rejection counts.
        context: inputs, for the frontier document.
        seconds: wall time of planning, s.
        created_at: when the plan was made, UTC.
    """

    selection: Selection
    context: PlanContext
    seconds: float
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def chosen(self) -> Plan:
        """The chosen plan."""
        assert self.selection.chosen is not None
        return self.selection.chosen

    def improvements(self) -> dict[str, float]:
        """``(ours - baseline) / |baseline|`` of the deployment score, per baseline."""
        ours = self.chosen.score
        return {name: (ours - b.score) / abs(b.score) for name, b in self.selection.baselines.items()}

    def plan_ref(self, frontier: S3Pointer, *, attempt: int = 0) -> PlanRef:
        """The SelectPlan state's output, once the frontier document is stored at ``frontier``."""
        sel = self.selection
        rejected = dict(list(sel.rejected.items())[:32])
        return PlanRef(
            plan=summary(self.chosen),
            max_runtime_seconds=self.chosen.max_runtime_seconds,
            frontier_top=[summary(p) for p in sel.frontier[1 : 1 + FRONTIER_INLINE_K]],
            frontier=frontier,
            candidates=sel.candidates,
            rejected=rejected,
            baselines=_baseline_summaries(sel.baselines),
            attempt=attempt,
        )

    def entry(self, plan: Plan) -> dict[str, Any]:
        """A plan as the document and the CLI show it: :meth:`Plan.as_dict` plus the steady-state throughput
        of one serving instance (tokens/s) and the endpoint's monthly cost (USD/month, all instances)."""
        spec = self.context.spec
        lat = spec.constraints.latency
        out = plan.as_dict()
        out["throughput_tokens_per_s"] = est.throughput_tokens_per_s(
            plan.p50_latency_ms, lat.output_tokens, lat.concurrency
        )
        out["serving_usd_per_month"] = plan.serving_usd_per_hour * HOURS_PER_MONTH * spec.deployment.instance_count
        return out

    def frontier_document(self) -> dict[str, Any]:
        """The JSON document written to S3: every returned frontier plan in fallback order, and more."""
        ctx, sel = self.context, self.selection
        c = ctx.spec.constraints
        assert sel.best is not None
        return {
            "schema_version": FRONTIER_DOCUMENT_VERSION,
            "task_id": ctx.spec.task_id,
            "region": c.region,
            "generated_at": self.created_at.isoformat(),
            "prices": {"source": ctx.prices_source, "snapshot_date": ctx.snapshot_date},
            "constraints": {
                "budget_usd": c.budget_usd,
                "serving_months": c.serving_months,
                "p50_ms": c.latency.p50_ms,
                "prompt_tokens": c.latency.prompt_tokens,
                "output_tokens": c.latency.output_tokens,
                "concurrency": c.latency.concurrency,
                "min_accuracy": c.min_accuracy,
                "max_training_hours": c.max_training_hours,
                "instance_families": c.instance_families,
                "instance_allowlist": c.instance_allowlist,
                "instance_count": ctx.spec.deployment.instance_count,
                "spot": c.spot,
            },
            "spot": {
                "policy": c.spot,
                "formula": "spot_hours = on_demand_hours x (1 + nodes x interruptions_per_hour x "
                "(checkpoint_interval / 2 + restart) / 60 min); spot_cost = on_demand_usd_per_hour x (1 - savings) "
                "x spot_hours",
                "checkpoint_interval_minutes": est.SPOT_CHECKPOINT_INTERVAL_MINUTES,
                "restart_minutes": est.SPOT_RESTART_MINUTES,
                "snapshot_date": ctx.spot_snapshot_date,
            },
            "workload": {
                "train_examples": ctx.workload.examples,
                "eval_examples": ctx.workload.eval_examples,
                "epochs": ctx.workload.epochs,
                "rationale_tokens": ctx.workload.rationale_tokens,
            },
            "objective": vars(ctx.weights),
            "score": {
                "formula": "w_acc*acc/acc* + w_time*time*/time + w_lat*lat*/lat + w_cost*cost*/cost",
                "best": vars(sel.best),
            },
            "candidates": sel.candidates,
            "feasible": sel.feasible,
            "rejected": sel.rejected,
            "plan": self.entry(self.chosen),
            "frontier": [self.entry(p) for p in sel.frontier],
            "frontier_complete": sel.frontier_complete,
            "baselines": {name: self.entry(p) for name, p in sel.baselines.items()},
            "improvement": self.improvements(),
            "calibration": ctx.calibration.describe(),
            "external_teachers": ctx.external_teachers,
            "tie": None
            if sel.tie is None
            else {
                "rule": "plans whose scores differ by less than the band of the difference are ties, broken by lower "
                "hourly price, then fewer accelerators (stratos.planner.uncertainty)",
                "top_score": self.entry(sel.tie.top_score),
                "tied": sel.tie.tied,
                "band": sel.tie.band,
                "reason": sel.tie.reason,
            },
            "pairs": [
                {
                    "teacher": v.teacher,
                    "student": v.student,
                    "capacity_ratio": round(v.capacity_ratio, 4),
                    "alignment": v.alignment or "ok",
                    "injection": v.injection or "ok",
                    "shared_vocab": v.shared_vocab,
                    "detail": v.detail,
                }
                for v in ctx.pairs
            ],
            "warnings": ctx.warnings,
            "plan_seconds": self.seconds,
        }

    def frontier_bytes(self) -> bytes:
        """:meth:`frontier_document` as compact UTF-8 JSON."""
        return json.dumps(self.frontier_document(), separators=(",", ":"), sort_keys=True).encode("utf-8")


def summary(plan: Plan | Mapping[str, Any]) -> PlanSummary:
    """A :class:`~stratos.payloads.PlanSummary` of a plan or of a frontier-document entry (numbers rounded
    for the state payload: accuracy and hours to 6 decimals, ms to 3, USD to 4, score to 9)."""
    d = plan.as_dict() if isinstance(plan, Plan) else plan
    usd_in, usd_out = d.get("teacher_usd_per_1k") or (None, None)
    return PlanSummary(
        teacher=d["teacher"],
        student=d["student"],
        training_instance=d["training_instance"],
        serving_instance=d["serving_instance"],
        mode=DistillationMode(d["mode"]),
        expected_accuracy=round(d["expected_accuracy"], 6),
        p50_latency_ms=round(d["p50_latency_ms"], 3),
        training_hours=round(d["training_hours"], 6),
        training_cost_usd=round(d["training_cost_usd"], 4),
        serving_cost_usd=round(d["serving_cost_usd"], 4),
        total_cost_usd=round(d["total_cost_usd"], 4),
        score=round(d["score"], 9),
        parallelism=d.get("parallelism"),
        spot=bool(d.get("spot", False)),
        on_demand_usd_per_hour=_rounded(d.get("on_demand_usd_per_hour"), 6),
        on_demand_training_cost_usd=_rounded(d.get("on_demand_training_cost_usd"), 4),
        spot_saving_usd=round(d.get("spot_saving_usd") or 0.0, 4),
        accuracy_band=_band(d.get("accuracy_band"), 6),
        training_hours_band=_band(d.get("training_hours_band"), 6),
        p50_latency_band=_band(d.get("p50_latency_band"), 3),
        teacher_tokens=round(d.get("teacher_tokens") or 0.0),
        teacher_tokens_usd=round(d.get("teacher_tokens_usd") or 0.0, 4),
        teacher_usd_per_1k_input=usd_in,
        teacher_usd_per_1k_output=usd_out,
    )


def _band(band: Mapping[str, Any] | None, digits: int) -> EstimateBand | None:
    if not band:
        return None
    return EstimateBand(
        uncalibrated=round(band["uncalibrated"], digits), band=round(band["band"], digits), runs=band.get("runs", 0)
    )


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _baseline_summaries(baselines: Mapping[str, Plan]) -> dict[BaselineName, PlanSummary]:
    return {
        "accuracy_first": summary(baselines["accuracy_first"]),
        "cost_first": summary(baselines["cost_first"]),
        "latency_first": summary(baselines["latency_first"]),
    }


# --------------------------------------------------------------------------------------------------------
# Building the problem.


def resolve_candidates(
    spec: TaskSpec, catalog: Catalog, token_prices: Sequence[Any] = ()
) -> tuple[list[ModelSpec], list[ModelSpec], dict[str, float], list[FieldError]]:
    """The spec's candidate teachers (catalog ones, then external ones) and students as planner records, its
    ``accuracy_priors`` by catalog id, and every candidate the planner cannot know, as field errors
    (``candidates.teachers[i]``, ``candidates.students[i]``, ``candidates.accuracy_priors["<id>"]``,
    ``candidates.external_teachers[i].<field>``). ValidateSpec and ``stratos validate`` report the same errors
    the planner would raise.

    Args:
        token_prices: Bedrock token prices LookUpPrices read (:func:`~stratos.planner.external.external_teachers`).
    """
    cands = spec.candidates
    # Named external teachers with no catalog teachers named: the external ones only (Candidates' docstring).
    named = [] if cands.teachers is None and cands.external_teachers else cands.teachers
    teachers, errors = _resolve(named, "teacher", "candidates.teachers", catalog)
    external, more = external_teachers(spec, catalog, token_prices)
    teachers += external
    errors += more
    students, more = _resolve(cands.students, "student", "candidates.students", catalog)
    errors += more
    prior_override: dict[str, float] = {}
    for key, value in cands.accuracy_priors.items():
        model = catalog.model(key)
        if model is None:
            errors.append(FieldError(f'candidates.accuracy_priors["{key}"]', repr(key), "not in the model catalog"))
        else:
            prior_override[model.id] = value
    return teachers, students, prior_override, errors


def _resolve(
    ids: Sequence[str] | None, role: str, field_name: str, catalog: Catalog
) -> tuple[list[ModelSpec], list[FieldError]]:
    if ids is None:
        return list(catalog.with_role(role)), []  # type: ignore[arg-type]
    out: list[ModelSpec] = []
    errors: list[FieldError] = []
    for i, model_id in enumerate(ids):
        model = catalog.model(model_id)
        if model is None:
            known = ", ".join(m.id for m in catalog.models)
            errors.append(
                FieldError(f"{field_name}[{i}]", repr(model_id), f"not in the model catalog (known: {known})")
            )
        elif model not in out:
            out.append(model)
    return out, errors


def data_sizes(spec: TaskSpec, train_examples: int | None = None) -> tuple[int, int]:
    """``(train examples, eval examples)`` the spec's data provides (see :data:`BUILTIN_SPLITS`,
    :data:`DEFAULT_JSONL_SPLITS`); ``train_examples`` overrides the training count (e.g. counted JSONL)."""
    data = spec.data
    if isinstance(data, GeneratorData):
        train, evals = data.train_size, data.eval_size
    elif isinstance(data, BuiltinDatasetData):
        full_train, full_eval = BUILTIN_SPLITS[data.name]
        train = min(data.train_size or full_train, full_train)
        evals = min(data.eval_size or full_eval, full_eval)
    else:
        train, evals = DEFAULT_JSONL_SPLITS
    return (train_examples or train), evals


def _float_prices(prices: Prices) -> dict[str, tuple[float | None, float | None]]:
    if isinstance(prices, PriceTable):
        return prices.as_floats()
    return dict(prices)


def build_problem(
    spec: TaskSpec,
    prices: Prices,
    catalog: Catalog,
    *,
    train_examples: int | None = None,
    calibration: Calibration = NO_CALIBRATION,
) -> tuple[PlanningProblem, list[PairVerdict], est.TrainingWorkload, list[str]]:
    """Estimate every factor of the spec's candidate space, each corrected by ``calibration`` (past runs of the
    spec's task kind: expected accuracy per student and mode, training hours per student, mode and training
    instance, p50 latency per student and serving instance; :mod:`stratos.planner.calibration`).

    Returns:
        ``(problem, pair verdicts, training workload, warnings)``.

    Raises:
        SpecValidationError: a candidate model id or an ``accuracy_priors`` key is not in the catalog.
    """
    token_prices = prices.bedrock if isinstance(prices, PriceTable) else ()
    teachers, students, prior_override, errors = resolve_candidates(spec, catalog, token_prices)
    if errors:
        raise SpecValidationError(errors, source=f"spec {spec.task_id}")

    c = spec.constraints
    lat = c.latency
    kind = spec.task.kind
    n_train, n_eval = data_sizes(spec, train_examples)
    workload = est.TrainingWorkload(n_train, n_eval, lat.prompt_tokens, lat.output_tokens)
    source = spec.data.source
    instances = catalog.instances
    table = _float_prices(prices)
    hours_serving = HOURS_PER_MONTH * c.serving_months * spec.deployment.instance_count
    warnings: list[str] = []

    def prior(model: ModelSpec) -> float:
        return prior_override.get(model.id, model.priors[kind].accuracy)

    # Serving options per student.
    serving: list[list[ServeOption]] = []
    student_index: dict[str, int] = {}
    context_tokens = lat.prompt_tokens + lat.output_tokens
    for student in students:
        student_index[student.id] = len(serving)
        options: list[ServeOption] = []
        for idx, inst in enumerate(instances):
            rate = table.get(inst.instance_type, (None, None))[1]
            if rate is None:
                options.append((math.inf, math.inf, 0.0, idx, SERVING_PRICE_UNKNOWN))
            elif context_tokens > student.context_length:
                options.append((math.inf, math.inf, rate, idx, SERVING_CONTEXT))
            elif not est.serving_memory(student, inst, lat.prompt_tokens, lat.output_tokens, lat.concurrency).fits:
                options.append((math.inf, math.inf, rate, idx, SERVING_MEMORY))
            else:
                p50 = est.p50_latency_ms(student, inst, lat.prompt_tokens, lat.output_tokens, lat.concurrency)
                p50 = calibration.for_latency(student.id, inst.instance_type).apply(p50)
                options.append((p50, rate * hours_serving, rate, idx, None))
        serving.append(options)

    # Pair modes and their training options.
    pairs: list[PairVerdict] = []
    pair_modes: list[PairMode] = []
    training: list[list[TrainOption]] = []
    parallelism: list[list[ParallelismPlan | None]] = []
    spot_table: list[list[est.SpotEstimate | None]] = []
    spot_policy = c.spot
    capacity = [est.device_capacity_gib(inst) for inst in instances]
    train_rates = [table.get(inst.instance_type, (None, None))[0] for inst in instances]
    eval_cache: dict[tuple[str, int, float], float] = {}
    gen_cache: dict[tuple[str, int], float] = {}
    raw_accuracy: dict[tuple[str, str, str], float] = {}

    def eval_s(model: ModelSpec, idx: int, inst: InstanceSpec, passes: float) -> float:
        key = (model.id, idx, passes)
        if key not in eval_cache:
            eval_cache[key] = est.eval_seconds(model, inst, workload, passes)
        return eval_cache[key]

    def gen_s(teacher: ModelSpec, idx: int, inst: InstanceSpec) -> float:
        key = (teacher.id, idx)
        if key not in gen_cache:
            gen_cache[key] = est.injection_generation_seconds(teacher, inst, workload)
        return gen_cache[key]

    for teacher in teachers:
        for student in students:
            verdict = match_pair(teacher, student)
            pairs.append(verdict)
            for mode in candidate_modes(spec.distillation.mode, verdict):
                reason = verdict.reason(mode)
                si = student_index[student.id]
                if reason is not None:
                    pair_modes.append(PairMode(teacher.id, student.id, mode, 0.0, si, reason))
                    training.append([])
                    parallelism.append([])
                    spot_table.append([])
                    continue
                uncalibrated = est.expected_accuracy(
                    prior(student), prior(teacher), mode, verdict.capacity_ratio, workload.examples, source
                )
                raw_accuracy[(teacher.id, student.id, mode)] = uncalibrated
                accuracy = calibration.for_accuracy(kind.value, student.id, mode).apply(uncalibrated)
                api = (
                    api_usage(
                        teacher.access,
                        mode,
                        workload.examples,
                        workload.eval_examples,
                        workload,
                        probe=spec.distillation.mode == "auto",
                    )
                    if teacher.access is not None
                    else None
                )
                tokens = (api.input_tokens + api.output_tokens) if api is not None else 0.0
                access = teacher.access
                pair_modes.append(
                    PairMode(
                        teacher.id,
                        student.id,
                        mode,
                        accuracy,
                        si,
                        None,
                        tokens,
                        api.usd if api else 0.0,
                        None if access is None else (access.usd_per_1k_input, access.usd_per_1k_output),
                    )
                )
                flops = {
                    placement: est.training_flops(student, teacher, mode, workload, placement)
                    for placement in est.placements(mode, teacher)
                }
                terms = est.training_memory_terms(student, teacher, mode, workload)
                options_t: list[TrainOption] = []
                layouts: list[ParallelismPlan | None] = []
                spots: list[est.SpotEstimate | None] = []
                # The plan depends on the instance only through its devices and their usable memory (many
                # sizes of one family share both): choose once per pair mode and hardware shape.
                chosen: dict[tuple[int, float], ParallelismPlan | None] = {}
                for idx, inst in enumerate(instances):
                    rate = train_rates[idx]
                    spot = inst.spot
                    if rate is None or (spot_policy == "on" and spot is None):
                        why = TRAINING_PRICE_UNKNOWN if rate is None else TRAINING_NO_SPOT
                        options_t.append((math.inf, math.inf, rate or 0.0, idx, why))
                        layouts.append(None)
                        spots.append(None)
                        continue
                    shape = (inst.devices, capacity[idx])
                    if shape not in chosen:
                        chosen[shape] = est.parallelism_for(terms, inst)
                    layout = chosen[shape]
                    layouts.append(layout)
                    if layout is None:
                        options_t.append((math.inf, math.inf, rate, idx, TRAINING_MEMORY))
                        spots.append(None)
                        continue
                    # A job over several nodes is billed for every node: its rate is nodes x the price.
                    job_rate = rate * layout.nodes
                    train_s = est.training_seconds(flops[layout.teacher_placement], inst, layout.nodes)
                    if api is not None:  # the job waits for the external teacher's answers on this instance
                        generation = api.seconds
                        evaluation = eval_s(student, idx, inst, 2.0)
                    else:
                        generation = gen_s(teacher, idx, inst) if mode == "injection" else 0.0
                        evaluation = eval_s(student, idx, inst, 2.0) + eval_s(teacher, idx, inst, 1.0)
                    hours = est.training_hours(train_s, generation, evaluation)
                    hours = calibration.for_training(kind.value, student.id, mode, inst.instance_type).apply(hours)
                    on_spot = None
                    if spot is not None and spot_policy != "off":
                        priced = est.spot_estimate(
                            hours, job_rate, spot.savings, spot.interruptions_per_hour, layout.nodes
                        )
                        if spot_policy == "on" or (priced.cheaper and priced.hours <= c.max_training_hours):
                            on_spot = priced
                    spots.append(on_spot)
                    tokens_usd = api.usd if api is not None else 0.0  # the external teacher's tokens
                    if on_spot is None:
                        options_t.append((hours, hours * job_rate + tokens_usd, job_rate, idx, None))
                    else:
                        options_t.append(
                            (on_spot.hours, on_spot.cost_usd + tokens_usd, on_spot.usd_per_hour, idx, None)
                        )
                training.append(options_t)
                parallelism.append(layouts)
                spot_table.append(spots)

    problem = PlanningProblem(
        tuple(i.instance_type for i in instances),
        pair_modes,
        training,
        serving,
        parallelism,
        spot_table,
        Uncertainty(kind.value, calibration, raw_accuracy),
    )
    if source == "jsonl" and train_examples is None:
        warnings.append(
            f"data.source jsonl: training time assumes {DEFAULT_JSONL_SPLITS[0]:,} training and "
            f"{DEFAULT_JSONL_SPLITS[1]:,} eval examples (the files are not counted at plan time)"
        )
    if c.instance_allowlist:
        unknown = sorted(set(c.instance_allowlist) - set(problem.instance_types))
        if unknown:
            warnings.append(f"instance_allowlist names types the catalog does not know: {', '.join(unknown)}")
    return problem, pairs, workload, warnings


def limits_for(spec: TaskSpec, instance_types: Sequence[str], unavailable: Iterable[str] = ()) -> Limits:
    """The spec's hard constraints over an instance universe (families and allow-list become indices)."""
    c = spec.constraints
    families = set(c.instance_families) if c.instance_families is not None else None
    allow = set(c.instance_allowlist) if c.instance_allowlist is not None else None
    allowed: frozenset[int] | None = None
    if families is not None or allow is not None:
        allowed = frozenset(
            i
            for i, name in enumerate(instance_types)
            if (families is None or name.split(".")[1] in families) and (allow is None or name in allow)
        )
    blocked = set(unavailable)
    return Limits(
        budget_usd=c.budget_usd,
        p50_ms=c.latency.p50_ms,
        min_accuracy=c.min_accuracy,
        max_training_hours=c.max_training_hours,
        allowed=allowed,
        unavailable=frozenset(i for i, name in enumerate(instance_types) if name in blocked),
    )


def weights_for(spec: TaskSpec) -> Weights:
    """The spec's objective weights (already normalised to sum 1 by the spec model)."""
    o = spec.objective
    return Weights(accuracy=o.accuracy, latency=o.latency, training_time=o.training_time, cost=o.cost)


def relaxations(problem: PlanningProblem, limits: Limits, weights: Weights) -> list[Relaxation]:
    """Single-constraint relaxations that make a plan feasible, smallest relative change first.

    Each relaxable constraint is lifted alone (budget and p50 to infinity, training hours to SageMaker's
    28 days, minimum accuracy to 0, instance restrictions removed) and the selection re-run; the needed
    value is the best value of that objective in the relaxed feasible set.
    """
    out: list[Relaxation] = []
    runs: list[tuple[str, Limits]] = [
        ("constraints.budget_usd", replace(limits, budget_usd=math.inf)),
        ("constraints.latency.p50_ms", replace(limits, p50_ms=math.inf)),
        ("constraints.max_training_hours", replace(limits, max_training_hours=MAX_TRAINING_HOURS)),
        ("constraints.min_accuracy", replace(limits, min_accuracy=0.0)),
    ]
    if limits.allowed is not None:
        runs.append(("constraints.instance_families/instance_allowlist", replace(limits, allowed=None)))
    for path, relaxed in runs:
        if relaxed == limits:
            continue
        sel = select(problem, relaxed, weights, frontier_max=0)
        if sel.best is None or sel.chosen is None:
            continue
        best = sel.best
        if path == "constraints.budget_usd":
            needed = math.ceil(best.total_cost_usd * 100) / 100
            out.append(Relaxation(path, limits.budget_usd, needed, needed / limits.budget_usd - 1))
        elif path == "constraints.latency.p50_ms":
            needed = math.ceil(best.p50_latency_ms * 10) / 10
            out.append(Relaxation(path, limits.p50_ms, needed, needed / limits.p50_ms - 1))
        elif path == "constraints.max_training_hours":
            needed = math.ceil(best.training_hours * 100) / 100
            out.append(Relaxation(path, limits.max_training_hours, needed, needed / limits.max_training_hours - 1))
        elif path == "constraints.min_accuracy":
            needed = math.floor(best.accuracy * 1000) / 1000
            change = (limits.min_accuracy - needed) / limits.min_accuracy if limits.min_accuracy else 0.0
            out.append(Relaxation(path, limits.min_accuracy, needed, change))
        else:
            allowed = limits.allowed or frozenset()
            names = problem.instance_types
            chosen = sel.chosen
            extra = sorted(
                {
                    name
                    for name in (chosen.training_instance, chosen.serving_instance)
                    if names.index(name) not in allowed
                }
            )
            out.append(Relaxation(path, None, extra, None))
    out.sort(key=lambda r: (r.relative_change is None, r.relative_change or 0.0, r.constraint))
    return out


def plan(
    spec: TaskSpec,
    prices: Prices,
    *,
    catalog: Catalog | None = None,
    unavailable: Iterable[str] = (),
    train_examples: int | None = None,
    frontier_max: int = FRONTIER_MAX,
    prices_source: str | None = None,
    calibration: Calibration = NO_CALIBRATION,
) -> PlanResult:
    """Plan one spec: the chosen plan (the max-score feasible plan, or a cheaper one within its score band), the
    frontier, baselines and rejection counts.

    Args:
        spec: the validated task spec.
        prices: a :class:`~stratos.planner.pricing.PriceTable` for ``spec.constraints.region``, or
            ``{instance_type: (training USD/hour, hosting USD/hour)}`` with ``None`` for unknown.
        catalog: instance and model catalog (default: the packaged one).
        unavailable: instance types the account cannot get (quota), excluded.
        train_examples: count of training examples when the spec's data does not say (JSONL).
        frontier_max: frontier plans to return.
        prices_source: label for the document (default: the table's ``source``).
        calibration: what past runs measured (:func:`stratos.planner.calibration.calibrate`); none by default.

    Raises:
        SpecValidationError: a candidate model is not in the catalog.
        PricingUnavailableError: the price table is for another region than ``constraints.region``.
        NoFeasiblePlanError: no candidate meets every hard constraint; carries ``rejected`` and the
            single-constraint ``relaxations`` that would help.
    """
    started = time.perf_counter()
    catalog = catalog or load_catalog()
    if isinstance(prices, PriceTable) and prices.region != spec.constraints.region:
        raise PricingUnavailableError(
            f"price table is for {prices.region}, the spec plans in {spec.constraints.region} "
            "(constraints.region): look prices up for the spec's region"
        )
    problem, pairs, workload, warnings = build_problem(
        spec, prices, catalog, train_examples=train_examples, calibration=calibration
    )
    if isinstance(prices, PriceTable) and prices.quotas is not None:  # the account's quotas, read by LookUpPrices
        from stratos.planner.quotas import apply_quotas

        problem = apply_quotas(problem, prices.quotas, spec, warnings)
    limits = limits_for(spec, problem.instance_types, unavailable)
    weights = weights_for(spec)
    selection = select(problem, limits, weights, frontier_max=frontier_max)
    if selection.chosen is None:
        raise _no_feasible_plan(spec, problem, limits, weights, selection, catalog)
    selection = decide(
        selection,
        problem,
        weights,
        serving_instances=spec.deployment.instance_count,
        accelerators_per_instance={i.instance_type: i.accelerator_count for i in catalog.instances},
    )
    if isinstance(prices, PriceTable):
        source, snapshot = prices_source or prices.source, prices.snapshot_date
    else:
        source, snapshot = prices_source or "given", catalog.snapshot_date
    spot_dates = sorted({i.spot.source.snapshot_date for i in catalog.instances if i.spot is not None})
    external, _ = external_teachers(spec, catalog, prices.bedrock if isinstance(prices, PriceTable) else ())
    context = PlanContext(
        spec,
        problem,
        limits,
        weights,
        pairs,
        source,
        snapshot,
        workload,
        warnings,
        ", ".join(spot_dates),
        calibration,
        [{"id": m.id, **describe_access(m.access)} for m in external if m.access is not None],
    )
    return PlanResult(selection, context, time.perf_counter() - started)


def _no_feasible_plan(
    spec: TaskSpec, problem: PlanningProblem, limits: Limits, weights: Weights, selection: Selection, catalog: Catalog
) -> NoFeasiblePlanError:
    options = relaxations(problem, limits, weights)
    removed = ", ".join(f"{reason} {count:,}" for reason, count in selection.rejected.items())
    if options:
        hint = f"smallest relaxation: {options[0]}"
        if len(options) > 1:
            hint += "; or " + "; or ".join(str(o) for o in options[1:])
    else:
        hint = "no single-constraint relaxation makes a plan feasible (check candidates, region and prices)"
    message = (
        f"no feasible plan for task {spec.task_id} among {selection.candidates:,} candidates; "
        f"removed by {removed or 'nothing'}; {hint}"
    )
    if selection.rejected.get(TRAINING_NO_SPOT):
        with_spot = sorted({i.family for i in catalog.instances if i.spot is not None})
        message += (
            f"; constraints.spot is 'on' (managed spot only), and {selection.rejected[TRAINING_NO_SPOT]:,} "
            "candidates train on an instance family without a managed spot figure in the catalog "
            f"(families with one: {', '.join(with_spot) or 'none'}): set constraints.spot to 'auto' or 'off' "
            "to allow on-demand training"
        )
    return NoFeasiblePlanError(message, rejected=selection.rejected, relaxations=[o.as_dict() for o in options])


# --------------------------------------------------------------------------------------------------------
# Quota fallback.


def fallback_plan_ref(previous: PlanRef, document: Mapping[str, Any], unavailable: Iterable[str]) -> PlanRef:
    """The next frontier plan after ``previous.attempt`` whose instances are all obtainable.

    Args:
        previous: the PlanRef whose plan could not be started.
        document: the frontier document ``previous.frontier`` points to (:meth:`PlanResult.frontier_document`).
        unavailable: every instance type found unavailable so far in this run (e.g. the ones
            QuotaExceededErrors named), so that a later fallback does not return to one of them.

    Returns:
        A PlanRef with the new plan, its max runtime, the plans after it inline, and ``attempt`` set to the
        new plan's index in the frontier.

    Raises:
        NoFeasiblePlanError: no later frontier plan avoids the unavailable instance types.
    """
    blocked = set(unavailable)
    frontier: list[dict[str, Any]] = list(document["frontier"])
    for index in range(previous.attempt + 1, min(len(frontier), MAX_FALLBACK_ATTEMPT + 1)):
        entry = frontier[index]
        if entry["serving_instance"] in blocked or entry["training_instance"] in blocked:
            continue
        rest = [
            e
            for e in frontier[index + 1 :]
            if e["serving_instance"] not in blocked and e["training_instance"] not in blocked
        ]
        return previous.model_copy(
            update={
                "plan": summary(entry),
                "max_runtime_seconds": int(entry["max_runtime_seconds"]),
                "frontier_top": [summary(e) for e in rest[:FRONTIER_INLINE_K]],
                "attempt": index,
            }
        )
    raise NoFeasiblePlanError(
        f"no frontier plan after attempt {previous.attempt} (of at most {MAX_FALLBACK_ATTEMPT}) avoids the "
        f"unavailable instance types {sorted(blocked)} ({len(frontier)} frontier plans)",
        rejected={"instance-unavailable": len(frontier) - previous.attempt - 1},
    )
