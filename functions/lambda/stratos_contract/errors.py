"""The base of every error Stratos raises on purpose, on both sides of the Lambda/container boundary.

:mod:`stratos.errors` (the pipeline's named errors) and ``stratos_train`` (task and hyperparameter errors)
derive from :class:`StratosError`, so a caller such as the ``stratos`` CLI catches either side's errors with
one clause and prints the message, never a traceback.
"""

from __future__ import annotations

from typing import Any, ClassVar


class StratosError(Exception):
    """Base of every error the pipeline raises on purpose.

    Attributes:
        retryable: True when the same call may succeed if repeated later (throttling, a resource that is
            still changing state). The ASL retries exactly the retryable ones, with backoff.
    """

    retryable: ClassVar[bool] = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary ``{"error": <class name>, "message": <str>}`` for run records and the CLI."""
        return {"error": type(self).__name__, "message": str(self)}
