"""EventBridge: a rule delivers to its Step Functions and Lambda targets, with S3 events shaped as AWS sends them.

moto 5.2.5 raises NotImplementedError for state-machine and Lambda targets; this hook wraps
``moto.events.models.Rule.send_to_targets`` and hands moto only the targets it can deliver to.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any
from unittest.mock import patch
from urllib.parse import quote_plus

from stratos_cli.local.moto_hooks.pin import Patch


def normalise_s3_event(event: dict[str, Any]) -> dict[str, Any]:
    """moto's S3 EventBridge events differ from AWS's: ``eTag`` (AWS: ``etag``) and a raw key (AWS
    URL-encodes it, form style). Return the event as AWS would send it."""
    detail = event.get("detail")
    if event.get("source") != "aws.s3" or not isinstance(detail, dict):
        return event
    obj = dict(detail.get("object") or {})
    if "eTag" not in obj:
        return event
    obj["etag"] = obj.pop("eTag")
    obj["key"] = quote_plus(str(obj.get("key", "")), safe="/")
    return {**event, "detail": {**detail, "object": obj}}


def _is_state_machine(arn: str) -> bool:
    return ":states:" in arn and ":stateMachine:" in arn


def _is_function(arn: str) -> bool:
    return ":lambda:" in arn and ":function:" in arn


class RulesToExecutions:
    """An EventBridge rule whose target is a state machine starts an execution (as EventBridge does, with
    a generated name), with the event as input; a Lambda target is invoked with the event; everything else
    moto delivers as before."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str, dict[str, Any], str]] = []
        self._lock = threading.RLock()

    def patches(self) -> list[Patch]:
        """``Rule.send_to_targets`` -> moto's own for the targets it supports, :meth:`start` / :meth:`invoke`
        for the rest."""
        from moto.events.models import Rule

        original = Rule.send_to_targets
        hook = self

        def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
            # moto raises NotImplementedError for state-machine and Lambda targets: hand it only the others.
            ours = [t for t in self.targets if _is_state_machine(t["Arn"]) or _is_function(t["Arn"])]
            if not ours:
                original(self, original_event, transform_input)
                return
            with hook._lock:
                everything = self.targets
                self.targets = [t for t in everything if t not in ours]
                try:
                    if self.targets:
                        original(self, original_event, transform_input)
                finally:
                    self.targets = everything
            if self.state != "ENABLED" or not self.event_pattern.matches_event(original_event):
                return
            event = normalise_s3_event(dict(original_event))
            for target in ours:
                if _is_state_machine(target["Arn"]):
                    hook.start(self.account_id, self.region_name, target["Arn"], event)
                else:
                    hook.invoke(self.account_id, self.region_name, target["Arn"], event)

        return [patch.object(Rule, "send_to_targets", send_to_targets)]

    def invoke(self, account: str, region: str, function_arn: str, event: dict[str, Any]) -> None:
        """Invoke a Lambda target with the event (EventBridge invokes asynchronously; here it runs at once)."""
        from moto.awslambda.utils import get_backend

        headers: dict[str, str] = {}
        body = json.dumps(event, default=str)
        get_backend(account, region).invoke(function_arn, None, body, {}, headers)
        with self._lock:
            self.deliveries.append((function_arn, event, headers.get("x-amz-function-error", "")))

    def start(self, account: str, region: str, state_machine_arn: str, event: dict[str, Any]) -> str:
        """Start an execution of ``state_machine_arn`` with ``event`` (a fresh uuid name, like EventBridge)."""
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        backend = stepfunctions_parser_backends[account][region]
        execution = backend.start_execution(
            state_machine_arn, name=str(uuid.uuid4()), execution_input=json.dumps(event, default=str)
        )
        with self._lock:
            self.deliveries.append((state_machine_arn, event, execution.execution_arn))
        return str(execution.execution_arn)
