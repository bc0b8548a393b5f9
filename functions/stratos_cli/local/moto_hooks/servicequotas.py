"""Service Quotas: SageMaker's instance quotas, as the embedded account sets them.

moto 5.2.5 has no ``ListServiceQuotas`` (NotImplementedError) and answers ``ListAWSDefaultServiceQuotas`` for
``vpc`` only (``NoSuchResourceException`` otherwise). This hook patches ``moto.servicequotas.models
.ServiceQuotasBackend`` (adds ``list_service_quotas``; ``list_aws_default_service_quotas`` for ``sagemaker``) and
``ServiceQuotasResponse`` (the new action, paged by ``MaxResults`` / ``NextToken`` as the API pages).

What the account's quotas are is asked of the
:meth:`~stratos_cli.local.moto_hooks.sagemaker.SageMakerAccount.service_quotas` of the account: its values are
listed as applied quotas (``ListServiceQuotas``), SageMaker's defaults list nothing, and ``None`` answers both
calls with ``AccessDeniedException`` (a role without ``servicequotas:List*``). The default account lists none, so a
local run plans as before.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from unittest.mock import patch

from stratos_cli.local.moto_hooks.pin import Patch
from stratos_cli.local.moto_hooks.sagemaker import SageMakerAccount

#: Service Quotas' service code and name of SageMaker.
SERVICE_CODE = "sagemaker"
SERVICE_NAME = "Amazon SageMaker"
#: ListServiceQuotas' page size when the request sets no MaxResults, and its ceiling (the API's: 1..100).
MAX_RESULTS = 100


def quota_code(name: str) -> str:
    """A stable ``L-XXXXXXXX`` code for a quota name (AWS's codes are opaque; the embedded ones only need to be
    distinct and repeatable)."""
    return "L-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:8].upper()


def quota_entry(name: str, value: float, region: str, account_id: str) -> dict[str, Any]:
    """One ``ServiceQuota`` in the shape ``ListServiceQuotas`` returns it (an applied, account-level value)."""
    code = quota_code(name)
    return {
        "ServiceCode": SERVICE_CODE,
        "ServiceName": SERVICE_NAME,
        "QuotaArn": f"arn:aws:servicequotas:{region}:{account_id}:{SERVICE_CODE}/{code}",
        "QuotaCode": code,
        "QuotaName": name,
        "Value": float(value),
        "Unit": "None",
        "Adjustable": True,
        "GlobalQuota": False,
        "QuotaAppliedAtLevel": "ACCOUNT",
    }


def _access_denied(action: str) -> Exception:
    from moto.core.exceptions import JsonRESTError

    return JsonRESTError(
        "AccessDeniedException",
        f"You don't have sufficient permission to perform servicequotas:{action} (the embedded account denies it).",
    )


class ServiceQuotasApi:
    """``ListServiceQuotas`` / ``ListAWSDefaultServiceQuotas`` for ``sagemaker``, from the account.

    Args:
        account: the embedded account (its :meth:`service_quotas`).
    """

    def __init__(self, account: SageMakerAccount) -> None:
        self.account = account
        self.requests: list[dict[str, Any]] = []

    def patches(self) -> list[Patch]:
        """The backend's two list calls and the response action moto lacks."""
        from moto.servicequotas import models as sq
        from moto.servicequotas.exceptions import NoSuchResource
        from moto.servicequotas.responses import ServiceQuotasResponse

        Backend = sq.ServiceQuotasBackend
        hook = self
        orig_defaults = Backend.list_aws_default_service_quotas

        def list_service_quotas(self: Any, service_code: str) -> list[dict[str, Any]]:
            if service_code != SERVICE_CODE:
                raise NoSuchResource
            listed = hook.account.service_quotas()
            if listed is None:
                raise _access_denied("ListServiceQuotas")
            return [quota_entry(n, v, self.region_name, self.account_id) for n, v in sorted(listed.items())]

        def list_aws_default_service_quotas(self: Any, service_code: str) -> list[dict[str, Any]]:
            if service_code != SERVICE_CODE:
                return orig_defaults(self, service_code)
            if hook.account.service_quotas() is None:
                raise _access_denied("ListAWSDefaultServiceQuotas")
            return []

        def list_service_quotas_response(self: Any) -> str:
            params = json.loads(self.body)
            hook.requests.append(params)
            quotas = self.backend.list_service_quotas(str(params.get("ServiceCode")))
            size = max(1, min(int(params.get("MaxResults") or MAX_RESULTS), MAX_RESULTS))
            start = int(params.get("NextToken") or 0)
            page: dict[str, Any] = {"Quotas": quotas[start : start + size]}
            if start + size < len(quotas):
                page["NextToken"] = str(start + size)
            return json.dumps(page)

        return [
            patch.object(Backend, "list_service_quotas", list_service_quotas, create=True),
            patch.object(Backend, "list_aws_default_service_quotas", list_aws_default_service_quotas),
            patch.object(ServiceQuotasResponse, "list_service_quotas", list_service_quotas_response, create=True),
        ]
