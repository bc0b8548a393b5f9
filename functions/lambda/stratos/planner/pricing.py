"""On-demand SageMaker prices: the AWS Pricing API first, the catalog's dated snapshot as fallback.

How a price is read (``pricing:GetProducts``, service code ``AmazonSageMaker``):

* the client is created in :data:`PRICING_API_REGION` (us-east-1 serves the Price List API for every
  region), whatever region the Lambda runs in;
* filters are exact (``TERM_MATCH``) on ``productFamily = ML Instance``, the **region code**
  (``regionCode = eu-west-1``: never the location name, whose wording drifts: "EU (Ireland)" became
  "Europe (Ireland)"), the instance type (``instanceName``) and the component (``platoinstancetype`` =
  ``Training`` or ``Hosting``);
* ``PriceList`` entries are JSON *strings*; each is decoded, its attributes re-checked, and the
  ``terms.OnDemand.*.priceDimensions.*.pricePerUnit.USD`` of the ``Hrs`` unit read as a :class:`~decimal.Decimal`;
* exactly one distinct positive price is an answer. No row (an empty ``PriceList``), only zero prices
  (free tier) or several distinct prices are **unknown**: logged, and the planner excludes the instance.
  An unknown price is never $0.

The live answer is authoritative when the API answers. Only when the API cannot be reached (no
credentials, network, throttling after retries, access denied) does a row fall back to the catalog's
snapshot, and the row says so. Answers are cached per (region, instance type, component) for
:data:`CACHE_TTL_SECONDS`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stratos.aws.quotas import InstanceQuotas
from stratos.payloads import PriceTableRef, S3Pointer
from stratos.planner.catalog import Catalog, Component
from stratos.types import Short

logger = logging.getLogger(__name__)

PRICING_API_REGION = "us-east-1"
"""Region whose endpoint serves the Price List API (the other is ap-south-1)."""
SERVICE_CODE = "AmazonSageMaker"
PRODUCT_FAMILY = "ML Instance"
CACHE_TTL_SECONDS = 6 * 3600.0
"""How long a live answer is reused, seconds (prices change a few times a year)."""
DEFAULT_MAX_WORKERS = 8
"""Concurrent GetProducts calls (the Price List API allows about 10 requests/s per account)."""


class PriceRow(BaseModel):
    """One (instance type, component) price, or why it is unknown."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instance_type: Short
    component: Component
    usd_per_hour: Decimal | None = Field(description="On-demand USD/hour; null = unknown (never read as $0).")
    source: Literal["live", "snapshot"] = Field(description="live = AWS Pricing API; snapshot = catalog figure.")
    note: str = Field(default="", max_length=512, description="Why the price is unknown or fell back.")


class TokenPriceRow(BaseModel):
    """One Bedrock model's on-demand token prices in a region (USD per 1,000 tokens), and where they came from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_id: Short
    usd_per_1k_input: Decimal = Field(ge=0)
    usd_per_1k_output: Decimal = Field(ge=0)
    source: Literal["live", "snapshot"] = Field(description="live = AWS Pricing API; snapshot = bedrock.json figure.")
    note: str = Field(default="", max_length=512, description="Why the snapshot price was used.")


class PriceTable(BaseModel):
    """Prices for one region: what LookUpPrices writes to S3 and SelectPlan reads, with the account's SageMaker
    instance quotas when LookUpPrices read them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: Short
    snapshot_date: Short = Field(description="Date of the catalog snapshot used for fallback rows, ISO 8601.")
    fetched_at: datetime
    rows: list[PriceRow]
    quotas: InstanceQuotas | None = Field(
        default=None,
        description="Training, spot training and endpoint quotas per instance type (stratos.aws.quotas); the "
        "planner excludes a type whose quota is below the plan's instance count. None = not read (the CLI's tables).",
    )
    bedrock: list[TokenPriceRow] = Field(
        default_factory=list,
        description="On-demand token prices of the spec's Bedrock teachers (bedrock_token_prices); empty when it "
        "names none (the planner then uses the Bedrock snapshot).",
    )

    def usd_per_hour(self, instance_type: str, component: Component) -> Decimal | None:
        """The price, or ``None`` when unknown or absent from the table."""
        for row in self.rows:
            if row.instance_type == instance_type and row.component is component:
                return row.usd_per_hour
        return None

    def as_floats(self) -> dict[str, tuple[float | None, float | None]]:
        """``{instance_type: (training USD/hour, hosting USD/hour)}`` with ``None`` for unknown."""
        out: dict[str, list[float | None]] = {}
        for row in self.rows:
            slot = out.setdefault(row.instance_type, [None, None])
            slot[0 if row.component is Component.TRAINING else 1] = (
                None if row.usd_per_hour is None else float(row.usd_per_hour)
            )
        return {k: (v[0], v[1]) for k, v in out.items()}

    @property
    def source(self) -> Literal["live", "snapshot", "mixed"]:
        """``live`` or ``snapshot`` when every row came from one place, else ``mixed``."""
        sources = {row.source for row in self.rows}
        if sources == {"live"}:
            return "live"
        if sources <= {"snapshot"}:
            return "snapshot"
        return "mixed"

    def known_and_unknown(self) -> tuple[int, int]:
        """``(instance types with every component priced, instance types with some price unknown)``."""
        known: dict[str, bool] = {}
        for row in self.rows:
            known[row.instance_type] = known.get(row.instance_type, True) and row.usd_per_hour is not None
        n_known = sum(known.values())
        return n_known, len(known) - n_known

    def to_ref(self, table: S3Pointer) -> PriceTableRef:
        """The state payload for this table once it is stored at ``table``."""
        n_known, n_unknown = self.known_and_unknown()
        return PriceTableRef(
            table=table,
            region=self.region,
            source=self.source,
            instance_types=n_known,
            unknown_prices=n_unknown,
            snapshot_date=self.snapshot_date,
            quotas=None if self.quotas is None else self.quotas.source,
            zero_quota_types=0 if self.quotas is None else self.quotas.zero_quota_types(),
        )


@dataclass(frozen=True, slots=True)
class LivePrice:
    """A Pricing API answer: the price, or ``None`` with the reason in ``note``."""

    usd_per_hour: Decimal | None
    note: str


class PricingApiUnreachableError(Exception):
    """The Pricing API could not be asked (credentials, network, throttling, access). Internal: triggers the
    snapshot fallback and never leaves this module."""


def _products(price_list: Iterable[str | dict[str, Any]], what: str) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """``(product attributes, OnDemand terms)`` of each GetProducts ``PriceList`` entry (a JSON string, or already
    decoded); a malformed entry is logged (naming ``what`` was asked) and skipped."""
    for entry in price_list:
        try:
            item = json.loads(entry) if isinstance(entry, str) else entry
            attributes = item["product"]["attributes"]
            on_demand = item.get("terms", {}).get("OnDemand", {})
        except (ValueError, KeyError, TypeError, AttributeError):
            logger.warning("skipping a malformed PriceList entry for %s", what)
            continue
        yield attributes, on_demand


def parse_on_demand_usd_per_hour(
    price_list: Iterable[str | dict[str, Any]], region: str, instance_type: str, component: Component
) -> LivePrice:
    """Read the on-demand USD/hour from GetProducts ``PriceList`` entries (JSON strings, as the API sends).

    Rows whose attributes do not match the query (region code, instance type, component) are ignored, as
    are non-hourly, zero-priced and malformed price dimensions.

    Returns:
        The single distinct positive price, or ``None`` with a note when there is none or several.
    """
    prices: set[Decimal] = set()
    rows = 0
    for attributes, on_demand in _products(price_list, f"{region} {instance_type} {component.value}"):
        name = attributes.get("instanceName") or attributes.get("instanceType")
        if (
            attributes.get("regionCode") != region
            or name != instance_type
            or attributes.get("platoinstancetype") != component.value
        ):
            continue
        rows += 1
        for offer in on_demand.values():
            for dim in offer.get("priceDimensions", {}).values():
                if str(dim.get("unit", "")).lower() not in ("hrs", "hours", "hour"):
                    continue
                try:
                    usd = Decimal(str(dim["pricePerUnit"]["USD"]))
                except (KeyError, TypeError, InvalidOperation):
                    continue
                if usd.is_finite() and usd > 0:
                    prices.add(usd.normalize())
    if len(prices) == 1:
        return LivePrice(next(iter(prices)), "")
    if not prices:
        what = "no PriceList row" if rows == 0 else f"{rows} row(s) but no positive on-demand USD/hour"
        return LivePrice(None, f"unknown: {what} for {instance_type} {component.value} in {region}")
    listed = ", ".join(str(p) for p in sorted(prices))
    return LivePrice(None, f"unknown: ambiguous, {len(prices)} distinct prices ({listed}) for {instance_type}")


def price_filters(region: str, instance_type: str, component: Component) -> list[dict[str, str]]:
    """GetProducts filters for one (region code, instance type, component)."""
    return [
        {"Type": "TERM_MATCH", "Field": "productFamily", "Value": PRODUCT_FAMILY},
        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
        {"Type": "TERM_MATCH", "Field": "instanceName", "Value": instance_type},
        {"Type": "TERM_MATCH", "Field": "platoinstancetype", "Value": component.value},
    ]


class PricingApi:
    """Adapter over ``boto3.client("pricing")``: on-demand prices, cached.

    Create one per Lambda container (at module level in the handler), so that the boto3 client and the
    answer cache survive between invocations.

    Args:
        client: a boto3 Pricing client (tests pass one wrapped in botocore's Stubber); created lazily in
            :data:`PRICING_API_REGION` when omitted.
        max_workers: concurrent GetProducts calls in :meth:`prices`; 1 calls them in order.
        cache_ttl_seconds: how long an answer is reused.
        clock: monotonic seconds (tests pass a fake).
    """

    def __init__(
        self,
        client: Any = None,
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        cache_ttl_seconds: float = CACHE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._max_workers = max(1, max_workers)
        self._ttl = cache_ttl_seconds
        self._clock = clock
        self._cache: dict[tuple[Any, ...], tuple[float, Any]] = {}
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The boto3 Pricing client, created on first use in :data:`PRICING_API_REGION`."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "pricing",
                region_name=PRICING_API_REGION,
                config=Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=10),
            )
        return self._client

    def _cached(self, key: tuple[Any, ...], ask: Callable[[], Any]) -> Any:
        """The answer cached under ``key`` while fresh, else ``ask()``'s (then cached for the TTL)."""
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        answer = ask()
        with self._lock:
            self._cache[key] = (now + self._ttl, answer)
        return answer

    def _price_list(self, service_code: str, filters: list[dict[str, str]]) -> list[str]:
        """Every GetProducts ``PriceList`` entry for ``filters`` (paginated, 100 a page).

        Raises:
            PricingApiUnreachableError: the API could not be asked.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        price_list: list[str] = []
        try:
            pages = self.client.get_paginator("get_products").paginate(
                ServiceCode=service_code, Filters=filters, FormatVersion="aws_v1", PaginationConfig={"PageSize": 100}
            )
            for page in pages:
                price_list.extend(page.get("PriceList", []))
        except (ClientError, BotoCoreError) as exc:
            raise PricingApiUnreachableError(f"{type(exc).__name__}: {exc}") from exc
        return price_list

    def on_demand(self, region: str, instance_type: str, component: Component) -> LivePrice:
        """The on-demand USD/hour of one (region code, instance type, component), from cache or the API.

        Raises:
            PricingApiUnreachableError: the API could not be asked (the caller falls back to the snapshot).
        """

        def ask() -> LivePrice:
            rows = self._price_list(SERVICE_CODE, price_filters(region, instance_type, component))
            answer = parse_on_demand_usd_per_hour(rows, region, instance_type, component)
            if answer.usd_per_hour is None:
                logger.warning("price %s", answer.note)
            return answer

        found: LivePrice = self._cached((SERVICE_CODE, region, instance_type, component), ask)
        return found

    def token_prices(self, region: str, price_list_model: str) -> LiveTokenPrice:
        """One Bedrock model's on-demand token prices in ``region`` (:func:`parse_bedrock_token_prices`), from
        cache or the API.

        Raises:
            PricingApiUnreachableError: the API could not be asked (the caller falls back to the snapshot).
        """

        def ask() -> LiveTokenPrice:
            rows = self._price_list(BEDROCK_SERVICE_CODE, bedrock_price_filters(region, price_list_model))
            return parse_bedrock_token_prices(rows, region, price_list_model)

        found: LiveTokenPrice = self._cached((BEDROCK_SERVICE_CODE, region, price_list_model), ask)
        return found

    def prices(
        self, region: str, keys: Sequence[tuple[str, Component]]
    ) -> list[LivePrice | PricingApiUnreachableError]:
        """:meth:`on_demand` for many (instance type, component) keys; an unreachable API is returned, not raised."""

        def one(key: tuple[str, Component]) -> LivePrice | PricingApiUnreachableError:
            try:
                return self.on_demand(region, key[0], key[1])
            except PricingApiUnreachableError as exc:
                return exc

        if self._max_workers == 1 or len(keys) <= 1:
            return [one(k) for k in keys]
        with ThreadPoolExecutor(max_workers=self._max_workers) as pool:
            return list(pool.map(one, keys))


def snapshot_price_table(region: str, catalog: Catalog, *, note: str = "") -> PriceTable:
    """A table from the catalog's dated snapshot only (no AWS call): the CLI's default and the fallback."""
    rows = []
    for inst in catalog.instances:
        for component in Component:
            usd = inst.snapshot_prices.get((region, component))
            why = note if usd is not None else f"unknown: no snapshot price for {inst.instance_type} in {region}"
            rows.append(
                PriceRow(
                    instance_type=inst.instance_type, component=component, usd_per_hour=usd, source="snapshot", note=why
                )
            )
    return PriceTable(region=region, snapshot_date=catalog.snapshot_date, fetched_at=datetime.now(UTC), rows=rows)


def lookup_prices(region: str, catalog: Catalog, api: PricingApi | None = None) -> PriceTable:
    """Prices of every catalog instance type in ``region`` for both components.

    Live answers (including *unknown*) win; a row falls back to the snapshot only when the API could not
    be asked. With ``api=None`` the table is the snapshot.

    Args:
        region: AWS region code, e.g. ``eu-west-1``.
        catalog: the instance catalog (hardware figures and snapshot prices).
        api: the Pricing API adapter, or ``None`` for snapshot only.
    """
    if api is None:
        return snapshot_price_table(region, catalog)
    keys = [(inst.instance_type, component) for inst in catalog.instances for component in Component]
    answers = api.prices(region, keys)
    rows: list[PriceRow] = []
    fallbacks = 0
    for (instance_type, component), answer in zip(keys, answers, strict=True):
        if isinstance(answer, LivePrice):
            rows.append(
                PriceRow(
                    instance_type=instance_type,
                    component=component,
                    usd_per_hour=answer.usd_per_hour,
                    source="live",
                    note=answer.note[:512],
                )
            )
            continue
        fallbacks += 1
        inst = catalog.instance(instance_type)
        usd = None if inst is None else inst.snapshot_prices.get((region, component))
        note = f"Pricing API unavailable ({answer}); snapshot {catalog.snapshot_date}"
        if usd is None:
            note = f"unknown: Pricing API unavailable ({answer}) and no snapshot price"
        rows.append(
            PriceRow(
                instance_type=instance_type,
                component=component,
                usd_per_hour=usd,
                source="snapshot",
                note=note[:512],
            )
        )
    if fallbacks:
        logger.warning(
            "Pricing API unavailable for %d of %d prices in %s: used the snapshot", fallbacks, len(keys), region
        )
    live_unknown = sum(1 for r in rows if r.source == "live" and r.usd_per_hour is None)
    if live_unknown and live_unknown == len(rows):
        logger.error("the Pricing API returned no price for any instance type in %s: filters drifted?", region)
    return PriceTable(region=region, snapshot_date=catalog.snapshot_date, fetched_at=datetime.now(UTC), rows=rows)


# ----------------------------------------------------------------------------------------------------------
# Amazon Bedrock on-demand token prices (external teachers).

BEDROCK_SERVICE_CODE = "AmazonBedrock"
#: Words that mark a Price List row or dimension as something other than standard on-demand text tokens
#: (prompt caching, batch inference, provisioned throughput, latency-optimised or priority tiers, media).
_NOT_ON_DEMAND_TOKENS = ("cache", "batch", "provisioned", "latency", "priority", "flex", "image", "video", "audio")
#: Price List token units -> multiplier to USD per 1,000 tokens.
_TOKEN_UNITS = {"1k tokens": 1.0, "1k token": 1.0, "1m tokens": 0.001, "1m token": 0.001, "tokens": 1000.0}


@dataclass(frozen=True, slots=True)
class LiveTokenPrice:
    """A Pricing API answer for one Bedrock model: both prices, or ``None`` with the reason in ``note``."""

    usd_per_1k_input: Decimal | None
    usd_per_1k_output: Decimal | None
    note: str


def parse_bedrock_token_prices(
    price_list: Iterable[str | dict[str, Any]], region: str, price_list_model: str
) -> LiveTokenPrice:
    """Read one Bedrock model's on-demand input and output prices (USD per 1,000 tokens) from GetProducts
    ``PriceList`` entries (service ``AmazonBedrock``; JSON strings, as the API sends).

    A row counts when its ``regionCode`` and ``model`` attributes match; its direction is read from its
    ``inferenceType`` / ``usagetype`` attributes or the dimension's description (``input`` / ``output``).
    Rows and dimensions naming caching, batch, provisioned throughput, latency-optimised or priority tiers or
    media are skipped, as are units other than tokens (``1K tokens``, ``1M tokens``, ``tokens``) and zero prices.

    Returns:
        Both prices when each direction has exactly one distinct price; otherwise ``None`` for both and a note.
    """
    found: dict[str, set[Decimal]] = {"input": set(), "output": set()}
    rows = 0
    for attributes, on_demand in _products(price_list, f"Bedrock {price_list_model} in {region}"):
        if attributes.get("regionCode") != region or attributes.get("model") != price_list_model:
            continue
        rows += 1
        labels = f"{attributes.get('inferenceType', '')} {attributes.get('usagetype', '')}".lower()
        for offer in on_demand.values():
            for dim in offer.get("priceDimensions", {}).values():
                text = f"{labels} {dim.get('description', '')}".lower()
                factor = _TOKEN_UNITS.get(str(dim.get("unit", "")).strip().lower())
                if factor is None or any(word in text for word in _NOT_ON_DEMAND_TOKENS):
                    continue
                directions = [d for d in ("input", "output") if d in text]
                if len(directions) != 1:
                    continue
                try:
                    usd = Decimal(str(dim["pricePerUnit"]["USD"])) * Decimal(str(factor))
                except (KeyError, TypeError, InvalidOperation):
                    continue
                if usd.is_finite() and usd > 0:
                    found[directions[0]].add(usd.normalize())
    if len(found["input"]) == 1 and len(found["output"]) == 1:
        return LiveTokenPrice(next(iter(found["input"])), next(iter(found["output"])), "")
    if rows == 0:
        why = f"no PriceList row for model {price_list_model!r} in {region}"
    else:
        counts = ", ".join(f"{len(v)} {k}" for k, v in found.items())
        why = f"{rows} row(s) for {price_list_model!r} in {region} but not one on-demand price each way ({counts})"
    return LiveTokenPrice(None, None, f"unknown: {why}")


def bedrock_price_filters(region: str, price_list_model: str) -> list[dict[str, str]]:
    """GetProducts filters for one Bedrock model in one region (exact matches)."""
    return [
        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
        {"Type": "TERM_MATCH", "Field": "model", "Value": price_list_model},
    ]


def bedrock_token_prices(region: str, models: Sequence[Any], api: PricingApi | None = None) -> list[TokenPriceRow]:
    """On-demand token prices of ``models`` (:class:`~stratos.planner.external.BedrockModel`) in ``region``:
    the Pricing API's when it lists one input and one output price, else the dated snapshot's with a note
    saying why (the API could not be asked, or its rows for the model did not give one price each way: the
    snapshot names a model offered in the region, and a renamed Price List attribute is likelier than a free
    model). With ``api=None`` every row is the snapshot's.
    """
    from stratos.planner.external import bedrock_snapshot

    date = bedrock_snapshot().snapshot_date
    rows: list[TokenPriceRow] = []
    for model in models:
        note = f"snapshot {date}"
        if api is not None:
            try:
                answer = api.token_prices(region, model.price_list_model)
            except PricingApiUnreachableError as exc:
                answer = LiveTokenPrice(None, None, f"Pricing API unavailable ({exc})")
            if answer.usd_per_1k_input is not None and answer.usd_per_1k_output is not None:
                rows.append(
                    TokenPriceRow(
                        model_id=model.model_id,
                        usd_per_1k_input=answer.usd_per_1k_input,
                        usd_per_1k_output=answer.usd_per_1k_output,
                        source="live",
                    )
                )
                continue
            note = f"{answer.note}; snapshot {date}"
            logger.warning("Bedrock price of %s in %s: %s", model.model_id, region, note)
        rows.append(
            TokenPriceRow(
                model_id=model.model_id,
                usd_per_1k_input=Decimal(str(model.usd_per_1k_input)),
                usd_per_1k_output=Decimal(str(model.usd_per_1k_output)),
                source="snapshot",
                note=note[:512],
            )
        )
    return rows
