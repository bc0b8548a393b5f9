"""The embedded account's Service Quotas (:mod:`stratos_cli.local.moto_hooks.servicequotas`): guards on the moto
internals it patches, and the real adapter (:class:`stratos.aws.quotas.SageMakerQuotas`) reading through it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager

import pytest

from stratos.aws.quotas import PAGE_SIZE, SageMakerQuotas
from stratos_cli.local.moto_hooks import DefaultAccount, ServiceQuotasApi, signature_of
from stratos_cli.local.moto_hooks.servicequotas import quota_code

pytest.importorskip("moto")


class Listing(DefaultAccount):
    def __init__(self, listed: Mapping[str, float] | None) -> None:
        self.listed = listed

    def service_quotas(self) -> Mapping[str, float] | None:
        return self.listed


@contextmanager
def hooked(account: DefaultAccount, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServiceQuotasApi]:
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    hook = ServiceQuotasApi(account)
    with mock_aws(), ExitStack() as patched:
        for patcher in hook.patches():
            patched.enter_context(patcher)
        yield hook


def client(region: str = "eu-west-1"):
    import boto3

    return boto3.client("service-quotas", region_name=region)


def test_moto_servicequotas_still_lacks_what_the_hook_adds():
    from moto.servicequotas.models import ServiceQuotasBackend
    from moto.servicequotas.responses import ServiceQuotasResponse

    assert not hasattr(ServiceQuotasBackend, "list_service_quotas")
    assert not hasattr(ServiceQuotasResponse, "list_service_quotas")
    assert signature_of(ServiceQuotasBackend.list_aws_default_service_quotas) == ["self", "service_code"]
    assert "backend" in vars(ServiceQuotasResponse)


def test_the_adapter_reads_every_page_the_embedded_account_lists(monkeypatch):
    types = [f"ml.g5.{n}xlarge" for n in range(2, 2 + PAGE_SIZE)]  # 100 types, 1 quota each, and one more
    listed = {f"{t} for endpoint usage": 3 for t in types} | {"ml.g5.xlarge for training job usage": 0}
    with hooked(Listing(listed), monkeypatch) as hook:
        got = SageMakerQuotas("eu-west-1", client()).read()
        assert len(hook.requests) == 2 and hook.requests[1]["NextToken"] == str(PAGE_SIZE)  # two pages
        raw = client().list_service_quotas(ServiceCode="sagemaker", MaxResults=1)
    assert got.source == "live" and got.region == "eu-west-1"
    assert got.training == {"ml.g5.xlarge": 0} and got.endpoint == {t: 3 for t in types}
    [entry] = raw["Quotas"]
    assert entry["QuotaCode"] == quota_code(entry["QuotaName"]) and entry["QuotaArn"].startswith(
        "arn:aws:servicequotas:eu-west-1:123456789012:sagemaker/L-"
    )
    assert raw["NextToken"] == "1"


def test_a_denying_account_reads_as_unreadable_and_other_services_keep_motos_answers(monkeypatch):
    with hooked(Listing(None), monkeypatch):
        got = SageMakerQuotas("us-east-1", client("us-east-1")).read()
        vpc = client("us-east-1").list_aws_default_service_quotas(ServiceCode="vpc")["Quotas"]
    assert got.source == "unreadable" and "AccessDeniedException" in got.note
    assert vpc and all(q["ServiceCode"] == "vpc" for q in vpc)


def test_the_default_account_lists_nothing_and_the_patches_come_off(monkeypatch):
    from moto.servicequotas.models import ServiceQuotasBackend

    with hooked(DefaultAccount(), monkeypatch):
        got = SageMakerQuotas("us-east-1", client("us-east-1")).read()
    assert (got.source, got.training, got.spot_training, got.endpoint) == ("live", {}, {}, {})
    assert not hasattr(ServiceQuotasBackend, "list_service_quotas")
