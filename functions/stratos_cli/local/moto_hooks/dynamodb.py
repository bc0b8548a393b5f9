"""DynamoDB: a condition check and its write happen atomically, as in DynamoDB.

moto 5.2.5 checks a condition and then writes, unlocked, so two executions' threads can both pass a
condition meant to let only one through; this hook serialises ``moto.dynamodb.models.DynamoDBBackend``'s
``put_item`` / ``update_item`` / ``delete_item``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from unittest.mock import patch

from stratos_cli.local.moto_hooks.pin import Patch

#: The backend's conditional writes.
WRITES = ("put_item", "update_item", "delete_item")


class AtomicDynamoDB:
    """Serialise moto's DynamoDB writes so a conditional put is atomic across threads (executions)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def patches(self) -> list[Patch]:
        """Each of :data:`WRITES`, run under one lock."""
        from moto.dynamodb.models import DynamoDBBackend

        return [patch.object(DynamoDBBackend, name, self._locked(getattr(DynamoDBBackend, name))) for name in WRITES]

    def _locked(self, original: Callable[..., Any]) -> Callable[..., Any]:
        lock = self._lock

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return original(*args, **kwargs)

        return wrapper
