"""The planner's pipeline steps, one call each for the handlers (LookUpPrices, SelectPlan, quota fallback).

Each step reads its large input from S3 through :class:`~stratos.planner.store.PlannerStore`, runs the domain
code, writes its large output back, and returns the small state payload that points to it.
"""

from __future__ import annotations

from collections.abc import Iterable

from stratos.errors import NoFeasiblePlanError
from stratos.payloads import PlanRef, PriceTableRef
from stratos.planner.calibration import NO_CALIBRATION, Calibration
from stratos.planner.catalog import Catalog, load_catalog
from stratos.planner.plan import fallback_plan_ref, plan
from stratos.planner.pricing import PricingApi, lookup_prices
from stratos.planner.store import PlannerStore
from stratos.spec import TaskSpec


def look_up_prices(
    region: str,
    bucket: str,
    key: str,
    *,
    store: PlannerStore,
    api: PricingApi | None,
    catalog: Catalog | None = None,
) -> PriceTableRef:
    """LookUpPrices: price every catalog instance type in ``region`` (live, snapshot fallback), store the
    table at ``s3://bucket/key`` and return its pointer payload."""
    table = lookup_prices(region, catalog or load_catalog(), api)
    return store.put_price_table(table, bucket, key)


def select_plan(
    spec: TaskSpec,
    prices: PriceTableRef,
    bucket: str,
    key: str,
    *,
    store: PlannerStore,
    unavailable: Iterable[str] = (),
    catalog: Catalog | None = None,
    calibration: Calibration = NO_CALIBRATION,
) -> PlanRef:
    """SelectPlan: read the price table, plan (calibrated by ``calibration``, what past runs measured), store the
    frontier document at ``s3://bucket/key``.

    Raises:
        PricingUnavailableError: the price table is missing, changed, or for another region.
        NoFeasiblePlanError: nothing meets the spec's hard constraints (with counts and relaxations).
        SpecValidationError: a candidate model is not in the catalog.
    """
    table = store.get_price_table(prices)
    result = plan(spec, table, catalog=catalog, unavailable=unavailable, calibration=calibration)
    return store.put_plan(result, bucket, key)


def next_plan(previous: PlanRef, unavailable: Iterable[str], *, store: PlannerStore) -> PlanRef:
    """Quota fallback: the next frontier plan (score order) that avoids the ``unavailable`` instance types.

    Raises:
        NoFeasiblePlanError: the frontier document is unreadable, or no later plan avoids them.
    """
    document = store.get_json(previous.frontier, NoFeasiblePlanError)
    return fallback_plan_ref(previous, document, unavailable)
