"""S3 adapter for the planner's large results: price tables and frontier documents.

State payloads stay small (:mod:`stratos.payloads`): LookUpPrices writes the full price table and SelectPlan
the full frontier document to the artifacts bucket, and each state carries an
:class:`~stratos.payloads.S3Pointer` (URI, size, SHA-256). Reading back checks the hash, so a replaced
object is detected instead of silently planned on.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from stratos.errors import PricingUnavailableError, StratosError
from stratos.payloads import PlanRef, PriceTableRef, S3Pointer
from stratos.planner.plan import PlanResult
from stratos.planner.pricing import PriceTable
from stratos.types import split_uri


class PlannerStore:
    """JSON documents in S3 with integrity pointers.

    Args:
        s3_client: a boto3 S3 client; created lazily (``boto3.client("s3")``) when omitted.
    """

    def __init__(self, s3_client: Any = None) -> None:
        self._s3 = s3_client

    @property
    def s3(self) -> Any:
        """The boto3 S3 client, created on first use."""
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3")
        return self._s3

    def put_bytes(self, bucket: str, key: str, body: bytes) -> S3Pointer:
        """Write ``body`` as ``application/json`` and return its pointer."""
        self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
        return S3Pointer(uri=f"s3://{bucket}/{key}", bytes=len(body), sha256=hashlib.sha256(body).hexdigest())

    def get_json(self, pointer: S3Pointer, error: type[StratosError]) -> Any:
        """Read and decode the document ``pointer`` names, checking its SHA-256.

        Raises:
            error: the object is missing, unreadable, not JSON, or not the one the pointer was made for.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = split_uri(pointer.uri)
        try:
            body: bytes = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise error(f"cannot read {pointer.uri}: {exc}") from exc
        digest = hashlib.sha256(body).hexdigest()
        if digest != pointer.sha256:
            raise error(f"{pointer.uri} changed since it was written (sha256 {digest} != {pointer.sha256})")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise error(f"{pointer.uri} is not JSON: {exc}") from exc

    # Price tables (LookUpPrices -> SelectPlan).

    def put_price_table(self, table: PriceTable, bucket: str, key: str) -> PriceTableRef:
        """Store a price table; returns the LookUpPrices state payload."""
        body = table.model_dump_json().encode("utf-8")
        return table.to_ref(self.put_bytes(bucket, key, body))

    def get_price_table(self, ref: PriceTableRef) -> PriceTable:
        """Load the table a PriceTableRef points to.

        Raises:
            PricingUnavailableError: the table is missing, changed or malformed.
        """
        doc = self.get_json(ref.table, PricingUnavailableError)
        try:
            return PriceTable.model_validate(doc)
        except ValueError as exc:
            raise PricingUnavailableError(f"{ref.table.uri} is not a price table: {exc}") from exc

    # Frontier documents (SelectPlan).

    def put_plan(self, result: PlanResult, bucket: str, key: str) -> PlanRef:
        """Store the frontier document and return the SelectPlan state payload (which points to it)."""
        return result.plan_ref(self.put_bytes(bucket, key, result.frontier_bytes()))
