"""Fixtures shared by unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from stratos.planner.pricing import PRICING_API_REGION


@pytest.fixture
def pricing_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Stubber]]:
    """A Pricing API client in us-east-1 under botocore's Stubber (moto has no pricing service), one attempt per
    call; every queued response must be used."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("pricing", region_name=PRICING_API_REGION, config=Config(retries={"max_attempts": 1}))
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()
