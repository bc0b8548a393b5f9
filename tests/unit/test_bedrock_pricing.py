"""Bedrock on-demand token prices from the Pricing API (service AmazonBedrock) under botocore's Stubber, the
snapshot fallback, and the live prices reaching the plan and the training job's hyperparameters."""

from __future__ import annotations

import json
from decimal import Decimal

from stratos.planner.catalog import load_catalog
from stratos.planner.external import bedrock_snapshot, external_teachers
from stratos.planner.pricing import (
    PricingApi,
    TokenPriceRow,
    bedrock_price_filters,
    bedrock_token_prices,
    parse_bedrock_token_prices,
)
from stratos.spec import parse_spec
from tests.conftest import SPECS

NOVA_LITE = "amazon.nova-lite-v1:0"


def token_product(
    region: str, model: str, direction: str, usd: str, *, unit: str = "1K tokens", usage: str = "", sku: str = "SKU1"
) -> str:
    """One AmazonBedrock PriceList entry, as the API returns it: a JSON string."""
    usage = usage or f"USE1-{model.replace(' ', '')}-{direction}-tokens"
    doc = {
        "product": {
            "productFamily": "Amazon Bedrock",
            "attributes": {
                "regionCode": region,
                "model": model,
                "inferenceType": f"{direction.title()} tokens",
                "usagetype": usage,
                "servicecode": "AmazonBedrock",
            },
            "sku": sku,
        },
        "serviceCode": "AmazonBedrock",
        "terms": {
            "OnDemand": {
                f"{sku}.T": {
                    "priceDimensions": {
                        f"{sku}.T.D": {
                            "unit": unit,
                            "description": f"${usd} per {unit} {direction} for {model} in {region}",
                            "pricePerUnit": {"USD": usd},
                        }
                    }
                }
            }
        },
    }
    return json.dumps(doc)


LIVE = [
    token_product("us-east-1", "Nova Lite", "input", "0.00006"),
    token_product("us-east-1", "Nova Lite", "output", "0.00024", sku="SKU2"),
    # Not standard on-demand text tokens: skipped.
    token_product("us-east-1", "Nova Lite", "input", "0.000015", usage="USE1-NovaLite-cache-read-input-tokens"),
    token_product("us-east-1", "Nova Lite", "output", "0.00012", usage="USE1-NovaLite-batch-output-tokens"),
    # Another region and another model: ignored.
    token_product("us-west-2", "Nova Lite", "input", "0.00009"),
    token_product("us-east-1", "Nova Pro", "input", "0.0008"),
]


def test_the_on_demand_input_and_output_prices_are_read_and_the_rest_skipped() -> None:
    found = parse_bedrock_token_prices(LIVE, "us-east-1", "Nova Lite")
    assert (found.usd_per_1k_input, found.usd_per_1k_output) == (Decimal("0.00006"), Decimal("0.00024"))
    per_million = [
        token_product("us-east-1", "Nova Lite", d, p, unit="1M tokens")
        for d, p in [("input", "0.06"), ("output", "0.24")]
    ]
    found = parse_bedrock_token_prices(per_million, "us-east-1", "Nova Lite")
    assert (found.usd_per_1k_input, found.usd_per_1k_output) == (Decimal("0.00006"), Decimal("0.00024"))


def test_no_row_or_two_prices_one_way_is_unknown_with_the_reason() -> None:
    none = parse_bedrock_token_prices(LIVE, "eu-west-1", "Nova Lite")
    assert none.usd_per_1k_input is None and "no PriceList row for model 'Nova Lite' in eu-west-1" in none.note
    two = parse_bedrock_token_prices(
        [*LIVE, token_product("us-east-1", "Nova Lite", "input", "0.00007")], "us-east-1", "Nova Lite"
    )
    assert two.usd_per_1k_output is None and "2 input, 1 output" in two.note


def _params(region: str, model: str) -> dict:
    return {
        "ServiceCode": "AmazonBedrock",
        "Filters": bedrock_price_filters(region, model),
        "FormatVersion": "aws_v1",
        "MaxResults": 100,
    }


def test_live_prices_win_and_the_snapshot_stands_in_with_its_reason(pricing_client) -> None:
    client, stubber = pricing_client
    snapshot = bedrock_snapshot()
    lite, pro, micro = (snapshot.model(m) for m in (NOVA_LITE, "amazon.nova-pro-v1:0", "amazon.nova-micro-v1:0"))
    stubber.add_response("get_products", {"PriceList": LIVE}, _params("us-east-1", "Nova Lite"))
    stubber.add_response("get_products", {"PriceList": []}, _params("us-east-1", "Nova Pro"))
    stubber.add_client_error(
        "get_products", "AccessDeniedException", "not allowed", 400, expected_params=_params("us-east-1", "Nova Micro")
    )
    rows = bedrock_token_prices("us-east-1", [lite, pro, micro], PricingApi(client, max_workers=1))
    assert [(r.model_id, r.source) for r in rows] == [
        (NOVA_LITE, "live"),
        ("amazon.nova-pro-v1:0", "snapshot"),
        ("amazon.nova-micro-v1:0", "snapshot"),
    ]
    assert rows[0].usd_per_1k_output == Decimal("0.00024")
    assert rows[1].usd_per_1k_input == Decimal(str(pro.usd_per_1k_input))
    assert "no PriceList row" in rows[1].note and snapshot.snapshot_date in rows[1].note
    assert "Pricing API unavailable" in rows[2].note and "AccessDeniedException" in rows[2].note
    assert [r.source for r in bedrock_token_prices("us-east-1", [lite], None)] == ["snapshot"]


def test_the_plan_prices_a_bedrock_teacher_at_what_lookup_prices_read() -> None:
    doc = json.loads((SPECS / "gsm8k.json").read_text())
    doc["candidates"] = {"external_teachers": [{"kind": "bedrock", "model_id": NOVA_LITE}]}
    doc["distillation"]["mode"] = "auto"
    spec = parse_spec(json.dumps(doc).encode(), "s.json")
    live = TokenPriceRow(
        model_id=NOVA_LITE, usd_per_1k_input=Decimal("0.0001"), usd_per_1k_output=Decimal("0.0004"), source="live"
    )
    [teacher], errors = external_teachers(spec, load_catalog(), [live])
    assert not errors and teacher.access is not None
    assert (teacher.access.usd_per_1k_input, teacher.access.usd_per_1k_output) == (0.0001, 0.0004)
    assert teacher.access.price_source == "live Pricing API"
    [stale], _ = external_teachers(spec, load_catalog())
    assert stale.access is not None and stale.access.price_source.startswith("snapshot ")
