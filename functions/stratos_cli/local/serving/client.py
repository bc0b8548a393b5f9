"""The client side of a local endpoint: ``POST /invocations`` by endpoint name, through the registry.

Plain urllib: invoking loads neither torch nor a model.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from stratos.errors import StratosError
from stratos_cli.local.serving.processes import pid_alive
from stratos_cli.local.serving.registry import EndpointInfo, EndpointUnavailableError, get_endpoint, read_entry

DEFAULT_INVOKE_TIMEOUT_S = 600.0
"""HTTP timeout of :func:`invoke`, s (long CPU generations)."""
DEFAULT_BUSY_RETRIES = 3
"""How many times :func:`invoke` retries a 503 (busy or loading) after the server's ``Retry-After``."""


class InvocationError(StratosError):
    """The server answered an invocation with an error status.

    Attributes:
        status: HTTP status code (400 bad request, 415 wrong content type, 500 generation failed, 503 busy, ...).
        field: the request field the server named (``None`` when not about one field).
        retry_after_s: the server's ``Retry-After`` on a 503, s (``None`` when it sent none).
    """

    def __init__(self, message: str, status: int, field: str | None = None, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.retry_after_s = retry_after_s


def _post(info: EndpointInfo, body: bytes, timeout_s: float) -> Any:
    """POST ``body`` to the endpoint's ``/invocations``; the decoded JSON answer.

    Raises:
        InvocationError: the server answered with an error status.
        urllib.error.URLError, OSError: nothing answered (connection refused, reset, timeout).
    """
    request = urllib.request.Request(
        f"{info.url}/invocations", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read().decode("utf-8"))
        except (ValueError, OSError):
            error = {}
        if not isinstance(error, dict):
            error = {}
        message = error.get("error") or exc.reason
        retry_after = (exc.headers.get("Retry-After") or "").strip() if exc.headers is not None else ""
        raise InvocationError(
            f"endpoint {info.name}: HTTP {exc.code}: {message}",
            exc.code,
            error.get("field"),
            int(retry_after) if retry_after.isdigit() else None,
        ) from exc


def _post_when_free(info: EndpointInfo, body: bytes, timeout_s: float, busy_retries: int) -> Any:
    """:func:`_post`, retrying a 503 that carries ``Retry-After`` up to ``busy_retries`` times while the wait
    fits in ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    retries = 0
    while True:
        try:
            return _post(info, body, max(1.0, deadline - time.monotonic()))
        except InvocationError as exc:
            wait = exc.retry_after_s
            if exc.status != 503 or wait is None or retries >= busy_retries or time.monotonic() + wait >= deadline:
                raise
            retries += 1
            time.sleep(wait)


def invoke(
    name: str,
    payload: Mapping[str, Any] | str,
    *,
    timeout_s: float = DEFAULT_INVOKE_TIMEOUT_S,
    busy_retries: int = DEFAULT_BUSY_RETRIES,
) -> list[dict[str, Any]]:
    """``POST /invocations`` to endpoint ``name``.

    Args:
        name: endpoint name.
        payload: the JSON body (``{"inputs": ..., "parameters": ...}``), or a prompt string (sent as
            ``{"inputs": prompt}``).
        timeout_s: HTTP timeout, s; also bounds the waits between busy retries.
        busy_retries: how many times a 503 with ``Retry-After`` (server busy or loading) is retried after
            waiting that long (0 = never).

    Returns:
        The server's answer, TGI's shape: ``[{"generated_text": "..."}]``.

    Raises:
        EndpointNotFoundError: no such endpoint.
        EndpointUnavailableError: the server process is gone or does not answer.
        InvocationError: the server rejected the request (status, message and field from its JSON error), or
            was still busy after the retries (status 503, ``retry_after_s`` set).
    """
    info = get_endpoint(name)
    if not pid_alive(info.pid):
        raise EndpointUnavailableError(
            f"endpoint {name}: server pid {info.pid} is not running (see {info.log_path}); "
            f"restart it or remove it with `stratos endpoints --stop {name}`"
        )
    body = json.dumps({"inputs": payload} if isinstance(payload, str) else dict(payload)).encode("utf-8")
    try:
        answer = _post_when_free(info, body, timeout_s, busy_retries)
    except (urllib.error.URLError, OSError) as exc:
        # Blue/green: the entry may have switched to a new server (and the old one stopped) between reading the
        # registry and connecting. Retry once against the current entry before calling it down.
        current = read_entry(name)
        if current is None or current.url == info.url or not pid_alive(current.pid):
            raise EndpointUnavailableError(f"endpoint {name} at {info.url} does not answer: {exc}") from exc
        try:
            answer = _post_when_free(current, body, timeout_s, busy_retries)
        except (urllib.error.URLError, OSError) as again:
            raise EndpointUnavailableError(f"endpoint {name} at {current.url} does not answer: {again}") from again
    if not isinstance(answer, list) or not all(isinstance(a, dict) and "generated_text" in a for a in answer):
        raise InvocationError(f"endpoint {name}: unexpected answer shape {str(answer)[:200]}", 200)
    return answer


class LocalTransport:
    """:class:`stratos.loadtest.Transport` over a registered local endpoint, for ``stratos loadtest``: a 503 is not
    retried (a load test counts it as the endpoint's error instead of hiding it behind a retry).

    Args:
        name: the endpoint's name (see ``stratos endpoints``).
        timeout_s: HTTP timeout of one request, s (a CPU generation can be long).
    """

    def __init__(self, name: str, timeout_s: float = DEFAULT_INVOKE_TIMEOUT_S) -> None:
        get_endpoint(name)  # EndpointNotFoundError now, not once per request
        self.name = name
        self.timeout_s = timeout_s

    def invoke(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        """:func:`invoke` with ``body``, no busy retries."""
        return invoke(self.name, body, timeout_s=self.timeout_s, busy_retries=0)
