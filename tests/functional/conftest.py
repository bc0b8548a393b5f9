"""Functional tier: the real state machine definition, executed by moto, calling the real handlers in-process.

Every stack is built from template.yaml by :class:`stratos_cli.local.stack.EmbeddedStack`; poll intervals are the
template's parameters, set to 0 s here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stratos_cli.local.stack import EmbeddedStack
from tests.conftest import SPECS
from tests.doubles import EndpointScript, Quotas, Script, ScriptedAccount, ScriptedTrainingRunner

FAST = {
    "TrainingPollSeconds": "0",
    "EndpointPollSeconds": "0",
    "MaxEndpointWaits": "30",
    "PriceSource": "snapshot",
}
#: Step Functions' limit on a state's input or output, bytes.
SFN_LIMIT = 256 * 1024


def mahjong_spec(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SPECS / "mahjong-winning-tiles.json").read_text(encoding="utf-8"))
    for key, value in overrides.items():
        node = doc
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return doc


class Run:
    """What a test reads back from one stack."""

    def __init__(self, stack: EmbeddedStack) -> None:
        self.stack = stack
        self.queue_url = ""

    @property
    def sagemaker(self) -> Any:
        assert self.stack.hooks is not None
        return self.stack.hooks.sagemaker

    @property
    def lambdas(self) -> Any:
        assert self.stack.hooks is not None
        return self.stack.hooks.lambdas

    def capture_run_events(self) -> None:
        """Route the pipeline's EventBridge events (source stratos.pipeline) to an SQS queue."""
        sqs, events = self.stack.client("sqs"), self.stack.client("events")
        self.queue_url = sqs.create_queue(QueueName="run-events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="run-events", EventPattern=json.dumps({"source": ["stratos.pipeline"]}))
        events.put_targets(Rule="run-events", Targets=[{"Id": "q", "Arn": arn}])

    def run_events(self) -> list[dict[str, Any]]:
        sqs = self.stack.client("sqs")
        out = []
        while True:
            got = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return out
            for m in got:
                out.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])

    def upload_and_wait(
        self, spec: dict[str, Any], key: str = "specs/mahjong.json", timeout: float = 60
    ) -> dict[str, Any]:
        """Upload ``spec``, wait for the execution it starts; its DescribeExecution."""
        before = {e["executionArn"] for e in self.stack.executions()}
        self.stack.upload_spec(spec, key=key)
        arns = self.stack.wait_for_executions(len(before) + 1)
        [arn] = [a for a in arns if a not in before]
        return self.stack.wait(arn, timeout)

    def outputs(self, execution_arn: str) -> list[tuple[str, dict[str, Any], int]]:
        """``(state, parsed output, size in bytes)`` of every state the execution left."""
        return [
            (name, json.loads(text) if text else {}, len(text.encode("utf-8")))
            for name, text in self.stack.state_outputs(execution_arn)
        ]

    def endpoints(self) -> list[dict[str, Any]]:
        sm = self.stack.client("sagemaker")
        return [sm.describe_endpoint(EndpointName=e["EndpointName"]) for e in sm.list_endpoints()["Endpoints"]]


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Any]:
    """``make_stack(script=..., quotas=..., endpoint_script=..., **parameters)`` -> a :class:`Run`."""
    opened: list[EmbeddedStack] = []

    def make(
        script: Script | None = None,
        quotas: Quotas | None = None,
        endpoint_script: EndpointScript | None = None,
        **parameters: str,
    ) -> Run:
        holder: dict[str, EmbeddedStack] = {}
        runner = ScriptedTrainingRunner(lambda b, k, body: holder["stack"].upload(b, k, body), script)
        account = ScriptedAccount(quotas or Quotas(), endpoint_script or EndpointScript())
        stack = EmbeddedStack(parameters={**FAST, **parameters}, runner=runner, account=account)
        holder["stack"] = stack
        stack.__enter__()
        opened.append(stack)
        run = Run(stack)
        run.capture_run_events()
        return run

    yield make
    while opened:
        opened.pop().__exit__(None, None, None)
