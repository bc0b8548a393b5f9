"""Lazily created, cached boto3 clients and the translation of AWS errors into named Stratos errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from stratos.errors import ThrottlingError

#: Error codes AWS services use for "slow down" (retried by the state machine with backoff).
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "SlowDown",
    }
)

_lock = threading.Lock()
_clients: dict[tuple[str, str | None], Any] = {}


def client(service: str, region: str | None = None) -> Any:
    """The boto3 client for ``service`` (in ``region``, default the process's region), created once.

    The SDK's own retries use the ``standard`` mode (3 attempts with jittered backoff) so a brief throttle is
    absorbed inside the call; anything longer surfaces as :class:`~stratos.errors.ThrottlingError` and the
    state machine retries the whole step.
    """
    key = (service, region)
    with _lock:
        found = _clients.get(key)
        if found is None:
            import boto3
            from botocore.config import Config

            config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30)
            found = boto3.session.Session().client(service, region_name=region, config=config)
            _clients[key] = found
    return found


def reset_clients() -> None:
    """Drop every cached client (the local harness rebuilds its embedded AWS between stacks)."""
    with _lock:
        _clients.clear()


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` (``""`` for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def error_message(exc: BaseException) -> str:
    """The AWS error message of a botocore ``ClientError`` (``str(exc)`` for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Message", "")) or str(exc)
    return str(exc)


@contextmanager
def throttling_as_retryable(what: str) -> Iterator[None]:
    """Re-raise an AWS throttling error as :class:`~stratos.errors.ThrottlingError` (``what`` names the call).

    Other errors pass through unchanged for the caller to name.
    """
    from botocore.exceptions import ClientError

    try:
        yield
    except ClientError as exc:
        if error_code(exc) in THROTTLING_CODES:
            raise ThrottlingError(f"{what}: throttled by AWS ({error_code(exc)}): {error_message(exc)}") from exc
        raise
