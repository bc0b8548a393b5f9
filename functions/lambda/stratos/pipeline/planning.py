"""LookUpPrices, SelectPlan and FallBackToNextPlan: the planner's steps (:mod:`stratos.planner.steps`) wired
to the settings, the run record and the state document.

Large results never ride in the state: the price table (one row per instance type and component) and the
frontier document (every frontier plan, baselines, rejection counts, pair verdicts; ~70 KB for a 46-type x
24-model catalog and growing with it) go to ``runs/<run_id>/`` and the state carries pointers plus the
chosen plan and a handful of runners-up (:class:`~stratos.payloads.PlanRef`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stratos.errors import NoFeasiblePlanError, QuotaExceededError
from stratos.payloads import PlanRef, PlanSummary, PriceTableRef
from stratos.pipeline.models import FallbackInfo, PricedState, QuotaHitState, RunState, StateDocument, WaitCounter
from stratos.pipeline.services import Services, get_services
from stratos.pipeline.state import load_spec, parse_step_event, run_prefix, utcnow
from stratos.run_record import ModeRecord, RunRecord
from stratos_contract.runs import Stage

if TYPE_CHECKING:
    from stratos.aws.quotas import SageMakerQuotas

#: Quota refusals one run tolerates before failing (each may cost a training job).
MAX_FALLBACKS = 6


def look_up_prices(
    event: Any, services: Services | None = None, quotas: SageMakerQuotas | None = None
) -> PriceTableRef:
    """Price every catalog instance type in the run's region and the spec's Bedrock teachers' tokens there
    (live Pricing API, snapshot fallback: :mod:`stratos.planner.pricing`), read the
    account's SageMaker instance quotas there (training, spot training and endpoint usage per type:
    :mod:`stratos.aws.quotas`), and store both at ``runs/<run_id>/prices.json``; SelectPlan excludes a type whose
    quota is below the plan's instance count (:mod:`stratos.planner.quotas`).

    Quotas are read whatever ``STRATOS_PRICE_SOURCE`` says (they are the account's, not prices). When the role
    cannot read them the table says ``unreadable``, a warning is logged, and only the instance allow-lists
    restrict the plan, as before quotas were read: this never fails the run.

    Args:
        event: the state document (its ``run``).
        services: the adapters (default: the process's).
        quotas: the Service Quotas adapter (default: one over the shared client of the run's region).

    Raises:
        ThrottlingError: S3 throttled (the Pricing API's own failures fall back to the snapshot).
    """
    from stratos.aws.quotas import SageMakerQuotas
    from stratos.planner.catalog import load_catalog
    from stratos.planner.external import snapshot_models
    from stratos.planner.pricing import PricingApi, bedrock_token_prices, lookup_prices

    svc = services or get_services()
    run = parse_step_event(event, RunState).state.run
    catalog = load_catalog()
    api = PricingApi() if svc.settings.price_source == "live" else None
    table = lookup_prices(run.region, catalog, api)
    tokens = bedrock_token_prices(run.region, snapshot_models(load_spec(svc, run)), api)
    read = (quotas or SageMakerQuotas(run.region)).read(i.instance_type for i in catalog.instances)
    ref: PriceTableRef = svc.planner_store.put_price_table(
        table.model_copy(update={"quotas": read, "bedrock": tokens}),
        svc.artifacts.bucket,
        f"{run_prefix(run)}prices.json",
    )
    return ref


def unavailable_types(allowlist: tuple[str, ...]) -> list[str]:
    """Catalog instance types outside the stack's allow-list (none when the allow-list is empty)."""
    if not allowlist:
        return []
    from stratos.planner.catalog import load_catalog

    allowed = set(allowlist)
    return [i.instance_type for i in load_catalog().instances if i.instance_type not in allowed]


def plan_fields(ref: PlanRef, prices: dict[str, float | None]) -> dict[str, Any]:
    """The run record's plan, estimate and prices for ``ref`` (:class:`RunRecord` keyword arguments)."""
    p = ref.plan
    return {
        "plan": p.model_dump(mode="json") | {"attempt": ref.attempt, "frontier": ref.frontier.uri},
        "estimate": {
            "training_hours": p.training_hours,
            "training_cost_usd": p.training_cost_usd,
            "serving_cost_usd": p.serving_cost_usd,
            "total_cost_usd": p.total_cost_usd,
            "max_runtime_seconds": ref.max_runtime_seconds,
            "spot": p.spot,
            "on_demand_training_cost_usd": p.on_demand_training_cost_usd,
            "spot_saving_usd": p.spot_saving_usd,
        },
        "prices_used": prices,
    }


def _prices_used(svc: Services, prices: PriceTableRef, plan: PlanSummary) -> dict[str, float | None]:
    from stratos.planner.catalog import Component

    table = svc.planner_store.get_price_table(prices)
    out: dict[str, float | None] = {}
    for instance_type, component in (
        (plan.training_instance, Component.TRAINING),
        (plan.serving_instance, Component.HOSTING),
    ):
        usd = table.usd_per_hour(instance_type, component)
        out[f"{instance_type}/{component.value}"] = None if usd is None else float(usd)
    return out


def past_runs_calibration(svc: Services, current_run: str = "") -> Any:
    """What earlier runs measured, as the planner's :class:`~stratos.planner.calibration.Calibration`: the run
    records of the runs table, newest first (the ``by-kind`` index, paginated), at most
    :data:`~stratos.planner.calibration.MAX_RECORDS` read; the record of ``current_run`` (the run being planned,
    whose record exists from its first step) is not a past run and is skipped.

    Raises:
        ThrottlingError: DynamoDB throttled the query.
    """
    from stratos.planner.calibration import calibrate

    return calibrate(r for r in svc.records.items_of_kind("run") if not current_run or r.get("pk") != current_run)


def select_plan(event: Any, services: Services | None = None) -> PlanRef:
    """Plan the spec on the stored price table, calibrated by the runs before it (:func:`past_runs_calibration`);
    store the frontier document; record the plan.

    Raises:
        NoFeasiblePlanError: no candidate meets the spec's constraints (with the smallest relaxation).
        SpecValidationError: a candidate model is not in the catalog.
        PricingUnavailableError: the price table is missing or changed.
        ThrottlingError: DynamoDB throttled reading the past runs.
    """
    from stratos.planner import steps

    svc = services or get_services()
    step = parse_step_event(event, PricedState)
    run, prices = step.state.run, step.state.prices
    spec = load_spec(svc, run)
    ref = steps.select_plan(
        spec,
        prices,
        svc.artifacts.bucket,
        f"{run_prefix(run)}plan/frontier.json",
        store=svc.planner_store,
        unavailable=unavailable_types(svc.settings.instance_allowlist),
        calibration=past_runs_calibration(svc, run.names.run_id),
    )
    svc.records.update(
        run.names.run_id,
        step.execution_arn,
        RunRecord(
            stage=Stage.PLANNED,
            **plan_fields(ref, _prices_used(svc, prices, ref.plan)),
            mode=ModeRecord(requested=spec.distillation.mode.value, planned=ref.plan.mode.value),
            updated_at=utcnow(),
        ),
    )
    return ref


def fall_back(event: Any, services: Services | None = None) -> StateDocument:
    """Move the run to the next frontier plan that avoids every instance type a quota refused.

    Returns:
        The whole new document (the ASL replaces ``$`` with it): ``plan`` is the next plan, ``fallback`` says
        what was refused and whether the new plan needs a new training job; the error is cleared.

    Raises:
        QuotaExceededError: no later frontier plan avoids the refused types; the message names them.
    """
    from stratos.planner import steps

    svc = services or get_services()
    step = parse_step_event(event, QuotaHitState)
    doc = step.state
    run, quota, previous, prices = doc.run, doc.quota, doc.plan, doc.prices
    blocked = [*(doc.fallback.blocked if doc.fallback else []), quota.instance_type]
    if len(blocked) > MAX_FALLBACKS:
        raise QuotaExceededError(
            f"{quota.instance_type} ({quota.component}) is over the account's quota; {len(blocked)} instance types "
            f"refused so far ({', '.join(blocked)}): giving up after {MAX_FALLBACKS} fallbacks"
        )
    try:
        ref = steps.next_plan(previous, blocked, store=svc.planner_store)
    except NoFeasiblePlanError as exc:
        raise QuotaExceededError(
            f"{quota.instance_type} ({quota.component}) is over the account's quota and no later frontier plan "
            f"avoids {', '.join(blocked)}; request a quota increase or allow other instance types"
        ) from exc
    old, new = previous.plan, ref.plan
    trained = doc.training is not None and doc.training.status == "Completed"
    same_model = (old.teacher, old.student, old.mode) == (new.teacher, new.student, new.mode)
    retrain = not (trained and same_model and quota.component == "serving")
    what = "retrain" if retrain else "redeploy the trained student"
    info = FallbackInfo(
        blocked=blocked,
        retrain=retrain,
        reason=(
            f"{quota.instance_type} refused for {quota.component}; plan {ref.attempt} "
            f"({new.teacher} -> {new.student}, training {new.training_instance}, "
            f"serving {new.serving_instance}): {what}"
        )[:512],
    )
    svc.records.update(
        run.names.run_id,
        step.execution_arn,
        RunRecord(
            stage=Stage.REPLANNED,
            **plan_fields(ref, _prices_used(svc, prices, new)),
            fallback=info.model_dump(mode="json"),
            updated_at=utcnow(),
        ),
    )
    cleared: dict[str, Any] = {"plan": ref, "fallback": info, "quota": None, "error": None, "endpoint": None}
    cleared.update(deployment=None, busy=None, waits=WaitCounter(count=0))
    if retrain:
        cleared.update(job=None, training=None, evaluation=None)
    return doc.model_copy(update=cleared)
