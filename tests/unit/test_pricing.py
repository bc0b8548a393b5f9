"""Pricing API client under botocore's Stubber (moto has no pricing service).

Responses are shaped like the real GetProducts answer: ``PriceList`` is a list of JSON *strings*, each a
product (attributes ``regionCode``, ``instanceName``, ``platoinstancetype``, ...) with OnDemand terms whose
``pricePerUnit.USD`` is a decimal string.
"""

from __future__ import annotations

import json
from decimal import Decimal

import boto3
from botocore.config import Config
from botocore.stub import Stubber

from stratos.planner.catalog import Component, load_catalog
from stratos.planner.pricing import (
    PricingApi,
    lookup_prices,
    parse_on_demand_usd_per_hour,
    price_filters,
    snapshot_price_table,
)

LOCATIONS = {"us-east-1": "US East (N. Virginia)", "eu-west-1": "EU (Ireland)", "us-west-2": "US West (Oregon)"}
USAGE_PREFIX = {"us-east-1": "USE1", "eu-west-1": "EU", "us-west-2": "USW2"}


def product(region: str, instance_type: str, component: str, usd: str, *, sku: str = "ABCDEFGH12345678") -> str:
    """One PriceList entry as the API returns it: a JSON string."""
    usage = "Train" if component == "Training" else "Host"
    doc = {
        "product": {
            "productFamily": "ML Instance",
            "attributes": {
                "regionCode": region,
                "location": LOCATIONS[region],
                "locationType": "AWS Region",
                "instanceName": instance_type,
                "instanceType": instance_type,
                "platoinstancetype": component,
                "usagetype": f"{USAGE_PREFIX[region]}-{usage}:{instance_type}",
                "operation": "RunInstance",
                "vCpu": "4",
                "memory": "16 GiB",
                "servicecode": "AmazonSageMaker",
                "servicename": "Amazon SageMaker",
            },
            "sku": sku,
        },
        "serviceCode": "AmazonSageMaker",
        "terms": {
            "OnDemand": {
                f"{sku}.JRTCKXETXF": {
                    "priceDimensions": {
                        f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                            "unit": "Hrs",
                            "endRange": "Inf",
                            "description": f"${usd} per {component} {instance_type} in {LOCATIONS[region]}",
                            "appliesTo": [],
                            "rateCode": f"{sku}.JRTCKXETXF.6YS6EN2CT7",
                            "beginRange": "0",
                            "pricePerUnit": {"USD": usd},
                        }
                    },
                    "sku": sku,
                    "effectiveDate": "2026-10-01T00:00:00Z",
                    "offerTermCode": "JRTCKXETXF",
                    "termAttributes": {},
                }
            }
        },
        "version": "20261001000000",
        "publicationDate": "2026-10-01T00:00:00Z",
    }
    return json.dumps(doc)


def expected_params(region: str, instance_type: str, component: Component, token: str | None = None):
    params = {
        "ServiceCode": "AmazonSageMaker",
        "Filters": price_filters(region, instance_type, component),
        "FormatVersion": "aws_v1",
        "MaxResults": 100,
    }
    if token:
        params["NextToken"] = token
    return params


def test_client_is_created_in_us_east_1_whatever_the_lambda_region(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert PricingApi().client.meta.region_name == "us-east-1"


def test_filters_use_the_region_code_never_the_location_name():
    filters = price_filters("eu-west-1", "ml.g5.xlarge", Component.HOSTING)
    fields = {f["Field"]: f["Value"] for f in filters}
    assert fields == {
        "productFamily": "ML Instance",
        "regionCode": "eu-west-1",
        "instanceName": "ml.g5.xlarge",
        "platoinstancetype": "Hosting",
    }
    assert all(f["Type"] == "TERM_MATCH" for f in filters)
    assert "location" not in fields


def test_reads_the_on_demand_price_as_a_decimal(pricing_client):
    client, stubber = pricing_client
    stubber.add_response(
        "get_products",
        {"FormatVersion": "aws_v1", "PriceList": [product("eu-west-1", "ml.g5.xlarge", "Hosting", "1.5770000000")]},
        expected_params("eu-west-1", "ml.g5.xlarge", Component.HOSTING),
    )
    answer = PricingApi(client, max_workers=1).on_demand("eu-west-1", "ml.g5.xlarge", Component.HOSTING)
    assert answer.usd_per_hour == Decimal("1.577")
    assert isinstance(answer.usd_per_hour, Decimal)


def test_empty_price_list_is_unknown_never_free(pricing_client):
    # What a query by location name returns once AWS renames the location: nothing.
    client, stubber = pricing_client
    stubber.add_response(
        "get_products",
        {"FormatVersion": "aws_v1", "PriceList": []},
        expected_params("eu-west-1", "ml.g6.xlarge", Component.TRAINING),
    )
    answer = PricingApi(client, max_workers=1).on_demand("eu-west-1", "ml.g6.xlarge", Component.TRAINING)
    assert answer.usd_per_hour is None
    assert answer.usd_per_hour != 0
    assert "no PriceList row" in answer.note


def test_ambiguous_prices_are_unknown():
    rows = [
        product("us-east-1", "ml.g5.xlarge", "Hosting", "1.4080000000", sku="AAAAAAAAAAAAAAA1"),
        product("us-east-1", "ml.g5.xlarge", "Hosting", "1.9000000000", sku="AAAAAAAAAAAAAAA2"),
    ]
    answer = parse_on_demand_usd_per_hour(rows, "us-east-1", "ml.g5.xlarge", Component.HOSTING)
    assert answer.usd_per_hour is None and "ambiguous" in answer.note and "1.408" in answer.note


def test_duplicate_rows_with_one_price_are_not_ambiguous():
    rows = [
        product("us-east-1", "ml.g5.xlarge", "Hosting", "1.4080000000", sku="AAAAAAAAAAAAAAA1"),
        product("us-east-1", "ml.g5.xlarge", "Hosting", "1.408", sku="AAAAAAAAAAAAAAA2"),
    ]
    assert parse_on_demand_usd_per_hour(rows, "us-east-1", "ml.g5.xlarge", Component.HOSTING).usd_per_hour == Decimal(
        "1.408"
    )


def test_zero_priced_rows_and_other_products_are_ignored():
    rows = [
        product("us-east-1", "ml.g5.xlarge", "Hosting", "0.0000000000"),  # free-tier style row
        product("us-east-1", "ml.g5.xlarge", "Training", "1.4080000000"),  # other component
        product("us-west-2", "ml.g5.xlarge", "Hosting", "1.4080000000"),  # other region
        product("us-east-1", "ml.g5.2xlarge", "Hosting", "1.5150000000"),  # other instance
        "{not json",
    ]
    answer = parse_on_demand_usd_per_hour(rows, "us-east-1", "ml.g5.xlarge", Component.HOSTING)
    assert answer.usd_per_hour is None
    assert "no positive" in answer.note


def test_pages_are_followed(pricing_client):
    client, stubber = pricing_client
    key = ("us-east-1", "ml.g6.xlarge", Component.TRAINING)
    stubber.add_response("get_products", {"PriceList": [], "NextToken": "page-2"}, expected_params(*key))
    stubber.add_response(
        "get_products",
        {"PriceList": [product("us-east-1", "ml.g6.xlarge", "Training", "1.0064000000")]},
        expected_params(*key, token="page-2"),
    )
    assert PricingApi(client, max_workers=1).on_demand(*key).usd_per_hour == Decimal("1.0064")


def test_answers_are_cached_until_the_ttl(pricing_client):
    client, stubber = pricing_client
    key = ("us-east-1", "ml.g5.xlarge", Component.HOSTING)
    now = [0.0]
    api = PricingApi(client, max_workers=1, cache_ttl_seconds=60, clock=lambda: now[0])
    response = {"PriceList": [product("us-east-1", "ml.g5.xlarge", "Hosting", "1.4080000000")]}
    stubber.add_response("get_products", response, expected_params(*key))
    assert api.on_demand(*key).usd_per_hour == Decimal("1.408")
    now[0] = 59.0
    assert api.on_demand(*key).usd_per_hour == Decimal("1.408")  # no second call: the Stubber would fail
    now[0] = 61.0
    stubber.add_response("get_products", response, expected_params(*key))
    assert api.on_demand(*key).usd_per_hour == Decimal("1.408")


def test_lookup_falls_back_to_the_snapshot_only_when_the_api_cannot_be_asked(pricing_client):
    client, stubber = pricing_client
    catalog = load_catalog()
    g5 = catalog.instance("ml.g5.xlarge")
    small = catalog.replace(instances=[g5])
    stubber.add_response(
        "get_products",
        {"PriceList": [product("eu-west-1", "ml.g5.xlarge", "Training", "1.5800000000")]},
        expected_params("eu-west-1", "ml.g5.xlarge", Component.TRAINING),
    )
    stubber.add_client_error(
        "get_products",
        service_error_code="ThrottlingException",
        service_message="Rate exceeded",
        http_status_code=400,
        expected_params=expected_params("eu-west-1", "ml.g5.xlarge", Component.HOSTING),
    )
    table = lookup_prices("eu-west-1", small, PricingApi(client, max_workers=1))
    training = next(r for r in table.rows if r.component is Component.TRAINING)
    hosting = next(r for r in table.rows if r.component is Component.HOSTING)
    assert (training.source, training.usd_per_hour) == ("live", Decimal("1.58"))
    assert hosting.source == "snapshot"
    assert hosting.usd_per_hour == g5.snapshot_prices[("eu-west-1", Component.HOSTING)]
    assert "ThrottlingException" in hosting.note
    assert table.source == "mixed"
    assert table.as_floats() == {"ml.g5.xlarge": (1.58, float(hosting.usd_per_hour))}


def test_a_live_unknown_price_is_not_replaced_by_the_snapshot(pricing_client):
    client, stubber = pricing_client
    small = load_catalog().replace(instances=[load_catalog().instance("ml.g5.xlarge")])
    for component in Component:
        stubber.add_response("get_products", {"PriceList": []}, expected_params("eu-west-1", "ml.g5.xlarge", component))
    table = lookup_prices("eu-west-1", small, PricingApi(client, max_workers=1))
    assert table.source == "live"
    assert [r.usd_per_hour for r in table.rows] == [None, None]
    assert table.as_floats() == {"ml.g5.xlarge": (None, None)}
    assert table.known_and_unknown() == (0, 1)


def test_access_denied_and_no_network_fall_back(monkeypatch):
    catalog = load_catalog()
    small = catalog.replace(instances=[catalog.instance("ml.g6.xlarge")])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("pricing", region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
    with Stubber(client) as stubber:
        for _ in Component:
            stubber.add_client_error("get_products", "AccessDeniedException", "no pricing:GetProducts", 400)
        table = lookup_prices("us-west-2", small, PricingApi(client, max_workers=1))
    assert table.source == "snapshot"
    assert all(r.usd_per_hour is not None for r in table.rows)


def test_lookup_maps_answers_to_keys_in_order(pricing_client):
    client, stubber = pricing_client
    catalog = load_catalog()
    small = catalog.replace(instances=[catalog.instance("ml.g5.xlarge")])
    stubber.add_response(
        "get_products",
        {"PriceList": [product("us-west-2", "ml.g5.xlarge", "Training", "1.4080000000")]},
        expected_params("us-west-2", "ml.g5.xlarge", Component.TRAINING),
    )
    stubber.add_response(
        "get_products",
        {"PriceList": [product("us-west-2", "ml.g5.xlarge", "Hosting", "1.4080000000")]},
        expected_params("us-west-2", "ml.g5.xlarge", Component.HOSTING),
    )
    table = lookup_prices("us-west-2", small, PricingApi(client, max_workers=1))
    assert [(r.component, r.usd_per_hour) for r in table.rows] == [
        (Component.TRAINING, Decimal("1.408")),
        (Component.HOSTING, Decimal("1.408")),
    ]


def test_snapshot_table_marks_missing_regions_unknown():
    catalog = load_catalog()
    table = snapshot_price_table("eu-west-1", catalog)
    p4de = [r for r in table.rows if r.instance_type == "ml.p4de.24xlarge"]
    assert [r.usd_per_hour for r in p4de] == [None, None]
    assert all("unknown" in r.note for r in p4de)
    b200 = [r for r in table.rows if r.instance_type == "ml.p6-b200.48xlarge"]
    assert [r.usd_per_hour for r in b200] == [None, None]
    known, unknown = table.known_and_unknown()
    assert unknown == 2 and known == len(catalog.instances) - 2


def test_price_table_survives_json_with_exact_decimals():
    table = snapshot_price_table("us-east-1", load_catalog())
    again = type(table).model_validate_json(table.model_dump_json())
    assert again == table
    assert again.usd_per_hour("ml.g6.xlarge", Component.HOSTING) == Decimal("1.0064")


class _FakePricingClient:
    """Thread-safe stand-in for the boto3 client: answers by the request's filters, in any call order."""

    def __init__(self, prices):
        self.prices = prices
        self.calls = 0

    def get_paginator(self, name):
        assert name == "get_products"
        return self

    def paginate(self, ServiceCode, Filters, FormatVersion, PaginationConfig):
        assert ServiceCode == "AmazonSageMaker" and PaginationConfig == {"PageSize": 100}
        self.calls += 1
        f = {x["Field"]: x["Value"] for x in Filters}
        usd = self.prices.get((f["instanceName"], f["platoinstancetype"]))
        rows = [] if usd is None else [product(f["regionCode"], f["instanceName"], f["platoinstancetype"], usd)]
        return [{"PriceList": rows}]


def test_concurrent_lookup_is_keyed_correctly():
    catalog = load_catalog()
    types = [i.instance_type for i in catalog.instances if i.family in ("g5", "g6")]
    prices = {}
    for n, t in enumerate(types):
        prices[(t, "Training")] = f"{n + 1}.25"
        prices[(t, "Hosting")] = f"{n + 1}.5"
    fake = _FakePricingClient(prices)
    small = catalog.replace(instances=[catalog.instance(t) for t in types])
    table = lookup_prices("us-west-2", small, PricingApi(fake, max_workers=8))
    assert fake.calls == 2 * len(types)
    for n, t in enumerate(types):
        assert table.usd_per_hour(t, Component.TRAINING) == Decimal(f"{n + 1}.25")
        assert table.usd_per_hour(t, Component.HOSTING) == Decimal(f"{n + 1}.5")
