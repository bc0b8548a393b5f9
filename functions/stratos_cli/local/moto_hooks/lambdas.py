"""Lambda: every invoke runs the function's real handler in-process.

moto 5.2.5 without Docker never runs a function's code (it echoes the payload); this hook replaces
``moto.awslambda_simple.models.LambdaSimpleBackend.invoke``.
"""

from __future__ import annotations

import importlib
import json
import threading
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import patch

from stratos_cli.local.moto_hooks.pin import Patch


@dataclass
class FakeLambdaContext:
    """What a handler reads from its Lambda context (powertools' ``inject_lambda_context`` included)."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    timeout_ms: int = 300_000

    def get_remaining_time_in_millis(self) -> int:
        return self.timeout_ms


@dataclass(frozen=True)
class Invocation:
    """One handler call: function, handler path, event, and its result or error type."""

    function_name: str
    handler: str
    event: Any
    result: Any
    error_type: str | None


class InProcessLambdas:
    """Every Lambda invoke (Step Functions tasks, ``lambda:Invoke``) imports the function's ``Handler``
    (``module.function``, importable because ``functions/lambda/`` is on ``sys.path``) and calls it with the decoded
    payload. An exception becomes ``x-amz-function-error: Unhandled`` with ``{"errorType": <class name>,
    "errorMessage", "stackTrace"}``, exactly what Step Functions routes ``Catch``/``Retry`` on.
    """

    def __init__(self) -> None:
        self.invocations: list[Invocation] = []
        self._lock = threading.Lock()

    def patches(self) -> list[Patch]:
        """``LambdaSimpleBackend.invoke`` -> :meth:`call`."""
        from moto.awslambda_simple.models import LambdaSimpleBackend

        hook = self

        def invoke(
            self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
        ) -> bytes:
            fn = self.get_function(function_name, qualifier)
            return hook.call(
                fn.function_name, fn.function_arn, str(fn.handler), int(fn.timeout or 300), body, response_headers
            )

        return [patch.object(LambdaSimpleBackend, "invoke", invoke)]

    def call(
        self, name: str, arn: str, handler: str, timeout_s: int, body: Any, response_headers: dict[str, str]
    ) -> bytes:
        """Run ``handler`` on ``body``; the bytes Lambda would return."""
        event = json.loads(body) if body else {}
        module_name, func_name = handler.rsplit(".", 1)
        context = FakeLambdaContext(name, arn, timeout_ms=timeout_s * 1000)
        try:
            func = getattr(importlib.import_module(module_name), func_name)
            result = func(event, context)
        except Exception as exc:
            response_headers["x-amz-function-error"] = "Unhandled"
            payload = {
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_exception(exc)[-4:],
            }
            self._record(Invocation(name, handler, event, None, type(exc).__name__))
            return json.dumps(payload).encode("utf-8")
        self._record(Invocation(name, handler, event, result, None))
        return json.dumps(result, default=str).encode("utf-8")

    def _record(self, invocation: Invocation) -> None:
        with self._lock:
            self.invocations.append(invocation)

    def of(self, handler_suffix: str) -> list[Invocation]:
        """The invocations of handlers whose path ends with ``handler_suffix``."""
        with self._lock:
            return [i for i in self.invocations if i.handler.endswith(handler_suffix)]
