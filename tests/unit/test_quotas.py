"""Service Quotas client under botocore's Stubber (moto 5.2.5 has no ListServiceQuotas).

Responses are shaped like the real answers of ``ListAWSDefaultServiceQuotas`` / ``ListServiceQuotas`` for service
code ``sagemaker``: ``Quotas`` is a list of ``ServiceQuota`` objects (``QuotaName``, ``QuotaCode``, ``Value`` as a
float, ``Unit`` ``"None"``, ...) and ``NextToken`` is present while more pages follow. The quota names are
SageMaker's (``<type> for training job usage`` etc.); quota codes L-3F53BF0F (ml.g4dn.xlarge for training job
usage) and L-82E1C851 (ml.p5.48xlarge for training job usage) are AWS's, the others stand in.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from stratos.aws.quotas import (
    PAGE_SIZE,
    InstanceQuotas,
    SageMakerQuotas,
    parse_quota_name,
    quotas_from_listing,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"


def quota(name: str, value: float, code: str, *, applied: bool = True, **extra: Any) -> dict[str, Any]:
    """One ``ServiceQuota`` as the list calls return it (a default has no account in its ARN)."""
    account = ACCOUNT if applied else ""
    instance, _, usage = name.partition(" for ")
    entry = {
        "ServiceCode": "sagemaker",
        "ServiceName": "Amazon SageMaker",
        "QuotaArn": f"arn:aws:servicequotas:{REGION}:{account}:sagemaker/{code}",
        "QuotaCode": code,
        "QuotaName": name,
        "Value": value,
        "Unit": "None",
        "Adjustable": True,
        "GlobalQuota": False,
        "UsageMetric": {
            "MetricNamespace": "AWS/Usage",
            "MetricName": "ResourceCount",
            "MetricDimensions": {
                "Class": "None",
                "Resource": f"{usage.removesuffix(' usage').replace(' ', '-')}/{instance}",
                "Service": "SageMaker",
                "Type": "Resource",
            },
            "MetricStatisticRecommendation": "Maximum",
        },
    }
    if applied:
        entry["QuotaAppliedAtLevel"] = "ACCOUNT"
    entry.update(extra)
    return entry


def params(token: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"ServiceCode": "sagemaker", "MaxResults": PAGE_SIZE}
    if token:
        out["NextToken"] = token
    return out


@pytest.fixture
def quotas_client(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("service-quotas", region_name=REGION, config=Config(retries={"max_attempts": 1}))
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("ml.g5.xlarge for training job usage", ("ml.g5.xlarge", "training")),
        ("ml.g6e.48xlarge for spot training job usage", ("ml.g6e.48xlarge", "spot-training")),
        ("ml.p6-b200.48xlarge for endpoint usage", ("ml.p6-b200.48xlarge", "endpoint")),
        ("ml.c7i.large for endpoint usage", ("ml.c7i.large", "endpoint")),
        ("ml.g5.xlarge for processing job usage", None),
        ("ml.g5.xlarge for transform job usage", None),
        ("ml.g5.xlarge for training warm pool usage", None),
        ("Number of instances across all training jobs", None),
        ("g5.xlarge for training job usage", None),
        ("ml.g5.xlarge for training job usage (preview)", None),
    ],
)
def test_quota_names_map_to_instance_type_and_usage(name, parsed):
    assert parse_quota_name(name) == parsed


def test_applied_values_replace_defaults_and_other_quotas_are_ignored():
    defaults = [
        quota("ml.g5.xlarge for training job usage", 2.0, "L-D1", applied=False),
        quota("ml.g5.xlarge for endpoint usage", 4.0, "L-D2", applied=False),
        quota("ml.g5.xlarge for processing job usage", 0.0, "L-D3", applied=False),
    ]
    applied = [
        quota("ml.g5.xlarge for training job usage", 0.0, "L-D1"),
        quota("ml.g4dn.xlarge for training job usage", 1.5, "L-3F53BF0F"),
        quota("ml.p5.48xlarge for training job usage", 0.0, "L-82E1C851"),
        # An applied value the API could not fetch carries an ErrorReason and no Value: skipped, not read as 0.
        {
            "QuotaName": "ml.g6.xlarge for endpoint usage",
            "QuotaCode": "L-E1",
            "ErrorReason": {"ErrorCode": "SERVICE_QUOTA_NOT_AVAILABLE_ERROR", "ErrorMessage": "not available"},
        },
    ]
    fixed = datetime(2026, 12, 1, tzinfo=UTC)
    got = quotas_from_listing(REGION, defaults, applied, fetched_at=fixed)
    assert got == InstanceQuotas(
        region=REGION,
        source="live",
        training={"ml.g5.xlarge": 0, "ml.g4dn.xlarge": 1, "ml.p5.48xlarge": 0},
        endpoint={"ml.g5.xlarge": 4},
        fetched_at=fixed,
    )
    assert got.max_instances("training", "ml.g5.xlarge") == 0
    assert got.max_instances("endpoint", "ml.g6.xlarge") is None  # not listed: unknown, not limited
    assert got.zero_quota_types() == 2
    only = quotas_from_listing(REGION, defaults, applied, ["ml.g5.xlarge"])
    assert set(only.training) == {"ml.g5.xlarge"}


def test_reads_every_page_of_both_lists(quotas_client):
    client, stubber = quotas_client
    stubber.add_response(
        "list_aws_default_service_quotas",
        {"Quotas": [quota("ml.g5.2xlarge for endpoint usage", 2.0, "L-D4", applied=False)]},
        params(),
    )
    stubber.add_response(
        "list_service_quotas",
        {"Quotas": [quota("ml.g5.xlarge for training job usage", 0.0, "L-A1")], "NextToken": "page-2"},
        params(),
    )
    stubber.add_response(
        "list_service_quotas",
        {
            "Quotas": [
                quota("ml.g5.xlarge for spot training job usage", 8.0, "L-A2"),
                quota("ml.g5.2xlarge for endpoint usage", 0.0, "L-D4"),
            ]
        },
        params("page-2"),
    )
    got = SageMakerQuotas(REGION, client).read()
    assert (got.source, got.region, got.note) == ("live", REGION, "")
    assert got.training == {"ml.g5.xlarge": 0}
    assert got.spot_training == {"ml.g5.xlarge": 8}
    assert got.endpoint == {"ml.g5.2xlarge": 0}  # the applied 0 (page 2) replaced the default 2


def test_no_sagemaker_defaults_listed_is_not_an_error(quotas_client):
    client, stubber = quotas_client
    stubber.add_client_error(
        "list_aws_default_service_quotas",
        "NoSuchResourceException",
        "This service is not available in the current Region.",
        400,
        expected_params=params(),
    )
    stubber.add_response(
        "list_service_quotas", {"Quotas": [quota("ml.g6.xlarge for endpoint usage", 1.0, "L-A3")]}, params()
    )
    got = SageMakerQuotas(REGION, client).read(["ml.g6.xlarge"])
    assert (got.source, got.endpoint) == ("live", {"ml.g6.xlarge": 1})


@pytest.mark.parametrize(
    ("code", "failing"),
    [
        ("AccessDeniedException", "list_aws_default_service_quotas"),
        ("AccessDeniedException", "list_service_quotas"),
        ("TooManyRequestsException", "list_service_quotas"),
        ("ServiceException", "list_aws_default_service_quotas"),
    ],
)
def test_an_unreadable_api_falls_back_with_a_warning_and_never_raises(quotas_client, caplog, code, failing):
    client, stubber = quotas_client
    if failing == "list_service_quotas":
        stubber.add_response("list_aws_default_service_quotas", {"Quotas": []}, params())
    stubber.add_client_error(failing, code, "not allowed here", 400, expected_params=params())
    with caplog.at_level(logging.WARNING, logger="stratos.aws.quotas"):
        got = SageMakerQuotas(REGION, client).read()
    assert (got.source, got.training, got.spot_training, got.endpoint) == ("unreadable", {}, {}, {})
    assert code in got.note
    [record] = caplog.records
    assert record.levelno == logging.WARNING and "allow-lists" in record.getMessage() and code in record.getMessage()


def test_no_credentials_or_network_fall_back_too(monkeypatch):
    from botocore.exceptions import EndpointConnectionError

    class Unreachable:
        def get_paginator(self, operation: str) -> Any:
            raise EndpointConnectionError(endpoint_url=f"https://servicequotas.{REGION}.amazonaws.com")

    got = SageMakerQuotas(REGION, Unreachable()).read()
    assert got.source == "unreadable" and "EndpointConnectionError" in got.note


def test_the_lazy_client_is_the_shared_one_of_the_runs_region(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    from stratos.aws.clients import client

    adapter = SageMakerQuotas("eu-west-1")
    assert adapter.client is client("service-quotas", "eu-west-1")
    assert adapter.client.meta.region_name == "eu-west-1"


def test_only_the_look_up_prices_function_may_list_quotas_and_only_read_them():
    """The two List actions have no resource-level permissions (Resource "*"); no other principal gets them and
    no other servicequotas action is granted."""
    from tests.unit.test_template import CASES, _actions, _statements

    for case in CASES:
        granted = [
            (name, s) for name, s in _statements(**case) if any(a.startswith("servicequotas:") for a in _actions(s))
        ]
        assert [(name, sorted(_actions(s)), s["Resource"], s["Effect"]) for name, s in granted] == [
            (
                "LookUpPricesFunction",
                ["servicequotas:ListAWSDefaultServiceQuotas", "servicequotas:ListServiceQuotas"],
                "*",
                "Allow",
            )
        ]
