"""S3 adapter: the frontier and the price table go to S3; states carry pointers that detect swaps (moto)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from stratos.errors import NoFeasiblePlanError, PricingUnavailableError
from stratos.naming import SpecIdentity, run_names
from stratos.payloads import (
    FRONTIER_INLINE_K,
    STATE_BUDGET_BYTES,
    PlanRef,
    RunContext,
    S3Pointer,
)
from stratos.pipeline.models import PlannedState, Timing
from stratos.planner.catalog import load_catalog
from stratos.planner.plan import fallback_plan_ref, plan
from stratos.planner.pricing import snapshot_price_table
from stratos.planner.steps import look_up_prices, next_plan, select_plan
from stratos.planner.store import PlannerStore
from stratos.spec import parse_spec
from stratos.types import split_uri
from tests.conftest import SPECS

BUCKET = "stratos-artifacts-123456789012-us-east-1"


TIMING = Timing(training_poll_seconds=0, endpoint_poll_seconds=0, max_endpoint_waits=1)


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture(scope="module")
def mahjong():
    spec = parse_spec((SPECS / "mahjong-winning-tiles.json").read_bytes())
    return spec, plan(spec, snapshot_price_table(spec.constraints.region, load_catalog()))


def test_plan_state_stays_small_and_the_frontier_goes_to_s3(s3, mahjong):
    _, result = mahjong
    ref = PlannerStore(s3).put_plan(result, BUCKET, "runs/r1/plan/frontier.json")
    assert ref.frontier.uri == f"s3://{BUCKET}/runs/r1/plan/frontier.json"
    body = s3.get_object(Bucket=BUCKET, Key="runs/r1/plan/frontier.json")["Body"].read()
    assert ref.frontier.sha256 == hashlib.sha256(body).hexdigest() and ref.frontier.bytes == len(body)
    doc = json.loads(body)
    assert len(doc["frontier"]) == len(result.selection.frontier) > FRONTIER_INLINE_K
    assert len(ref.frontier_top) == FRONTIER_INLINE_K
    state = ref.to_state()
    assert len(json.dumps(state).encode()) < len(body) / 4  # the state holds the top, S3 holds the rest
    assert len(json.dumps(state).encode()) <= PlanRef.MAX_BYTES
    assert PlanRef.model_validate(state) == ref


def test_fallback_reads_the_stored_document(s3, mahjong):
    _, result = mahjong
    store = PlannerStore(s3)
    ref = store.put_plan(result, BUCKET, "runs/r1/plan/frontier.json")
    doc = store.get_json(ref.frontier, NoFeasiblePlanError)
    nxt = fallback_plan_ref(ref, doc, [ref.plan.training_instance])
    assert nxt.plan.training_instance != ref.plan.training_instance
    assert nxt.frontier == ref.frontier


def test_price_table_round_trip_and_state_payload(s3):
    table = snapshot_price_table("eu-west-1", load_catalog())
    store = PlannerStore(s3)
    ref = store.put_price_table(table, BUCKET, "runs/r1/prices.json")
    assert ref.region == "eu-west-1" and ref.source == "snapshot"
    assert ref.unknown_prices == 2 and ref.instance_types == len(load_catalog().instances) - 2
    assert store.get_price_table(ref) == table


def test_a_swapped_or_missing_object_is_detected(s3):
    store = PlannerStore(s3)
    ref = store.put_price_table(snapshot_price_table("us-east-1", load_catalog()), BUCKET, "runs/r2/prices.json")
    s3.put_object(Bucket=BUCKET, Key="runs/r2/prices.json", Body=b'{"region": "us-east-1"}')
    with pytest.raises(PricingUnavailableError, match="changed"):
        store.get_price_table(ref)
    s3.delete_object(Bucket=BUCKET, Key="runs/r2/prices.json")
    with pytest.raises(PricingUnavailableError, match="cannot read"):
        store.get_price_table(ref)


def test_whole_pipeline_state_with_a_plan_fits_the_budget(s3, mahjong):
    _, result = mahjong
    ref = PlannerStore(s3).put_plan(result, BUCKET, "runs/r1/plan/frontier.json")
    ident = SpecIdentity(bucket="stratos-specs-1", key="specs/mahjong.json", version_id="v1", etag="e")
    names = run_names(ident, "mahjong-winning-tiles")
    run = RunContext(
        spec=ident,
        names=names,
        task_id="mahjong-winning-tiles",
        region="us-east-1",
        mode_requested="auto",
        trigger="upload",
        started_at=datetime(2026, 11, 29, tzinfo=UTC),
        spec_copy=S3Pointer(uri=f"s3://{BUCKET}/runs/{names.run_id}/spec.json", bytes=10, sha256="0" * 64),
    )
    state = PlannedState(run=run, plan=ref, timing=TIMING).to_state()
    assert len(json.dumps(state).encode()) < STATE_BUDGET_BYTES
    assert PlannedState.model_validate(state).plan == ref


def test_split_uri():
    assert split_uri("s3://b/k/x.json") == ("b", "k/x.json")
    with pytest.raises(ValueError):
        split_uri("https://b/k")


def test_client_is_created_lazily(monkeypatch):
    store = PlannerStore()
    assert store._s3 is None
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert store.s3.meta.service_model.service_name == "s3"


def test_steps_look_up_prices_then_select_plan_then_fall_back(s3):
    spec = parse_spec((SPECS / "gsm8k.json").read_bytes())
    store = PlannerStore(s3)
    prices = look_up_prices("us-west-2", BUCKET, "runs/r3/prices.json", store=store, api=None)
    assert prices.source == "snapshot" and prices.region == "us-west-2"
    ref = select_plan(spec, prices, BUCKET, "runs/r3/plan/frontier.json", store=store)
    assert ref.plan.mode == "alignment" and ref.attempt == 0
    assert s3.head_object(Bucket=BUCKET, Key="runs/r3/plan/frontier.json")["ContentLength"] == ref.frontier.bytes
    nxt = next_plan(ref, [ref.plan.serving_instance], store=store)
    assert nxt.plan.serving_instance != ref.plan.serving_instance and nxt.attempt > 0
    # The same spec against a price table for another region is refused, not silently mispriced.
    other = look_up_prices("eu-west-1", BUCKET, "runs/r3/prices-eu.json", store=store, api=None)
    with pytest.raises(PricingUnavailableError, match="eu-west-1"):
        select_plan(spec, other, BUCKET, "runs/r3/plan/x.json", store=store)
