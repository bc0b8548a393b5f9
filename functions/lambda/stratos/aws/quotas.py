"""The account's SageMaker instance quotas, read through the Service Quotas API (service code ``sagemaker``).

SageMaker keeps one quota per instance type and usage; its name is the instance type followed by the usage
(Service Quotas console and ``aws service-quotas list-service-quotas --service-code sagemaker``; SageMaker's
``ResourceLimitExceeded`` message quotes the same name, e.g. "The account-level service limit 'ml.g5.xlarge for
training job usage' is 0 Instances"). The three this module reads (:data:`QUOTA_NAME`):

* ``<instance type> for training job usage`` — instances of the type all on-demand training jobs may hold at once
  (e.g. quota code L-3F53BF0F is ``ml.g4dn.xlarge for training job usage``);
* ``<instance type> for spot training job usage`` — the same for managed spot training jobs;
* ``<instance type> for endpoint usage`` — instances of the type behind all endpoints.

Every other SageMaker quota (processing, transform, notebook, cluster, warm pool, ...) is ignored.

How they are read: ``ListAWSDefaultServiceQuotas`` gives the defaults ("a default value does not reflect any
quota increases") and ``ListServiceQuotas`` the applied values ("if the applied quota value is not available for
a quota, the quota is not retrieved"); both are paged with boto3's paginators, and an applied value replaces the
default. A type listed in neither has no known quota and limits nothing. The values are limits, not headroom:
instances that other jobs or endpoints hold at the time are not subtracted (a refusal at CreateTrainingJob /
CreateEndpoint still reaches the state machine's quota fallback).

When the role cannot read them (``AccessDeniedException``, throttling after the SDK's retries, no endpoint or
credentials), :meth:`SageMakerQuotas.read` logs a warning and returns a table marked ``unreadable``, so the run
goes on restricted by the instance allow-lists only (the stack's ``InstanceAllowList`` and the spec's
``constraints.instance_allowlist``): reading quotas never fails a run.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stratos.payloads import QuotaSource
from stratos.types import Short

logger = logging.getLogger(__name__)

#: Service Quotas' service code of SageMaker.
SERVICE_CODE = "sagemaker"
#: Quotas per ListServiceQuotas / ListAWSDefaultServiceQuotas page (the API's maximum, 100).
PAGE_SIZE = 100
#: Most instance types a table keeps per usage (SageMaker lists a few hundred; LookUpPrices keeps the catalog's 46).
MAX_TYPES = 2048

#: The usage a quota limits: on-demand training jobs, managed spot training jobs, endpoints.
Usage = Literal["training", "spot-training", "endpoint"]
#: The quota name's usage words -> :data:`Usage`.
USAGE_WORDS: dict[str, Usage] = {
    "training job": "training",
    "spot training job": "spot-training",
    "endpoint": "endpoint",
}
#: ``<instance type> for <usage> usage`` (the instance-type syntax of the spec's ``InstanceType``).
QUOTA_NAME = re.compile(r"^(ml\.[a-z][a-z0-9-]*\.[0-9]*[a-z]+) for (training job|spot training job|endpoint) usage$")


def parse_quota_name(name: str) -> tuple[str, Usage] | None:
    """``(instance type, usage)`` of a SageMaker instance quota's name, or ``None`` for any other quota.

    >>> parse_quota_name("ml.g5.xlarge for spot training job usage")
    ('ml.g5.xlarge', 'spot-training')
    >>> parse_quota_name("ml.g5.xlarge for processing job usage") is None
    True
    """
    match = QUOTA_NAME.match(name.strip())
    if match is None:
        return None
    return match.group(1), USAGE_WORDS[match.group(2)]


class InstanceQuotas(BaseModel):
    """The account's SageMaker per-instance-type quotas in one region: what LookUpPrices stores with the price
    table and SelectPlan plans under (:func:`stratos.planner.quotas.apply_quotas`).

    Each map is ``{instance type: most instances at once}`` (the quota's value, rounded down); a type that is
    absent has no known quota and is not limited.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: Short = Field(description="AWS region code the quotas apply in (quotas are per region).")
    source: QuotaSource = Field(description="live = read from the Service Quotas API; unreadable = it did not answer.")
    training: dict[Short, int] = Field(
        default_factory=dict, max_length=MAX_TYPES, description="'<type> for training job usage', instances."
    )
    spot_training: dict[Short, int] = Field(
        default_factory=dict, max_length=MAX_TYPES, description="'<type> for spot training job usage', instances."
    )
    endpoint: dict[Short, int] = Field(
        default_factory=dict, max_length=MAX_TYPES, description="'<type> for endpoint usage', instances."
    )
    note: str = Field(default="", max_length=512, description="Why the quotas are unreadable (the AWS error).")
    fetched_at: datetime = Field(description="When the quotas were read, UTC.")

    def max_instances(self, usage: Usage, instance_type: str) -> int | None:
        """The quota of ``instance_type`` for ``usage``, instances; ``None`` when unknown (not limited)."""
        table = {"training": self.training, "spot-training": self.spot_training, "endpoint": self.endpoint}[usage]
        return table.get(instance_type)

    def zero_quota_types(self) -> int:
        """Instance types with a quota of 0 for at least one usage, count."""
        return len(
            {t for table in (self.training, self.spot_training, self.endpoint) for t, n in table.items() if n < 1}
        )


def quotas_from_listing(
    region: str,
    defaults: Iterable[Mapping[str, Any]],
    applied: Iterable[Mapping[str, Any]],
    instance_types: Iterable[str] | None = None,
    *,
    fetched_at: datetime | None = None,
) -> InstanceQuotas:
    """An :class:`InstanceQuotas` from ``Quotas`` entries of the two list calls (the API's ``ServiceQuota`` shape:
    ``QuotaName``, ``Value``, ...). Applied values replace defaults; entries that are not instance quotas
    (:func:`parse_quota_name`), have no finite ``Value`` (e.g. only an ``ErrorReason``), or name a type outside
    ``instance_types`` (when given) are skipped.
    """
    keep = None if instance_types is None else set(instance_types)
    tables: dict[Usage, dict[str, int]] = {"training": {}, "spot-training": {}, "endpoint": {}}
    for entry in (*defaults, *applied):  # applied last: it wins
        parsed = parse_quota_name(str(entry.get("QuotaName", "")))
        value = entry.get("Value")
        if parsed is None or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            continue
        instance_type, usage = parsed
        if keep is None or instance_type in keep:
            tables[usage][instance_type] = math.floor(value)
    return InstanceQuotas(
        region=region,
        source="live",
        training=tables["training"],
        spot_training=tables["spot-training"],
        endpoint=tables["endpoint"],
        fetched_at=fetched_at or datetime.now(UTC),
    )


class SageMakerQuotas:
    """Adapter over ``boto3.client("service-quotas")`` in one region: SageMaker's instance quotas.

    Args:
        region: the region whose quotas are read (Service Quotas answers per region).
        client: a boto3 Service Quotas client (tests pass one wrapped in botocore's Stubber); the shared lazy
            client of ``region`` when omitted.
    """

    def __init__(self, region: str, client: Any = None) -> None:
        self.region = region
        self._client = client

    @property
    def client(self) -> Any:
        """The boto3 Service Quotas client of :attr:`region`, created on first use."""
        if self._client is None:
            from stratos.aws.clients import client

            self._client = client("service-quotas", self.region)
        return self._client

    def _pages(self, operation: str) -> Iterator[Mapping[str, Any]]:
        """Every ``Quotas`` entry of a paginated list call, or nothing when SageMaker has none listed here
        (``NoSuchResourceException``)."""
        from botocore.exceptions import ClientError

        from stratos.aws.clients import error_code

        paginator = self.client.get_paginator(operation)
        try:
            for page in paginator.paginate(ServiceCode=SERVICE_CODE, PaginationConfig={"PageSize": PAGE_SIZE}):
                yield from page.get("Quotas", [])
        except ClientError as exc:
            if error_code(exc) != "NoSuchResourceException":
                raise

    def read(self, instance_types: Iterable[str] | None = None) -> InstanceQuotas:
        """The region's training, spot training and endpoint quotas per instance type (module docstring).

        Args:
            instance_types: keep only these types (e.g. the catalog's); all when omitted.

        Returns:
            A ``live`` table, or, when the API cannot be asked, an ``unreadable`` one with the error in ``note``
            (logged as a warning; never raised).
        """
        from botocore.exceptions import BotoCoreError, ClientError

        from stratos.aws.clients import error_code, error_message

        types = None if instance_types is None else list(instance_types)
        try:
            defaults = list(self._pages("list_aws_default_service_quotas"))
            applied = list(self._pages("list_service_quotas"))
        except (ClientError, BotoCoreError) as exc:
            what = f"{error_code(exc)}: {error_message(exc)}" if error_code(exc) else f"{type(exc).__name__}: {exc}"
            logger.warning(
                "cannot read the SageMaker service quotas in %s (%s): planning with the instance allow-lists only "
                "(grant servicequotas:ListServiceQuotas and servicequotas:ListAWSDefaultServiceQuotas)",
                self.region,
                what,
            )
            return InstanceQuotas(
                region=self.region, source="unreadable", note=what[:512], fetched_at=datetime.now(UTC)
            )
        return quotas_from_listing(self.region, defaults, applied, types)
