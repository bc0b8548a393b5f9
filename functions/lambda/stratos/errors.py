"""Named errors of the Stratos pipeline.

Every error the pipeline raises on purpose derives from :class:`StratosError`. A Lambda that raises one
of them fails with ``errorType`` equal to the class name, so the state machine routes it by name in its
``Retry`` and ``Catch`` clauses (``"ErrorEquals": ["NoFeasiblePlanError"]``). The class names are
therefore part of the contract with ``statemachine/distillation.asl.json``: renaming one is a breaking
change, and :data:`RETRYABLE_ERRORS` / :data:`TERMINAL_ERRORS` are what the ASL's Retry lists must say
(a functional test checks the two agree).

Rules: subclasses end in ``Error``; raise them ``from`` the underlying exception; the message names the
offending field or resource and the reason, so that a person reading a failed execution knows what to fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The common base lives in the contract (the training container derives its errors from it too).
from stratos_contract.errors import StratosError as StratosError


@dataclass(frozen=True)
class FieldError:
    """One rejected field of an input document.

    Attributes:
        path: dotted path to the field, with list indices, e.g. ``constraints.latency.p50_ms`` or
            ``candidates.teachers[2]``; ``<root>`` for the document itself (at most 200 characters).
        value: the offending value, shortened for display (at most 80 characters).
        reason: why it was rejected, in words a user can act on (at most 300 characters).

    Each part is cut to its limit here, whoever built it, so a huge input never makes a huge message.
    """

    path: str
    value: str
    reason: str

    def __post_init__(self) -> None:
        for name, limit in (("path", 200), ("value", 80), ("reason", 300)):
            text = getattr(self, name)
            if len(text) > limit:
                object.__setattr__(self, name, text[: limit - 3] + "...")

    def __str__(self) -> str:
        return f"{self.path}: {self.reason} (got {self.value})"


#: The most field errors one rejection lists (the rest are counted, not listed).
MAX_FIELD_ERRORS = 50


class InputValidationError(StratosError):
    """An input document (task spec, event, hyperparameters) was rejected.

    Attributes:
        errors: the rejected fields, at most :data:`MAX_FIELD_ERRORS` (never empty).
        omitted: how many more were found and left out (a document with thousands of bad keys must not make a
            megabyte-long message: the first ones say what is wrong).
        source: where the document came from (an S3 URI, a file path or an event name), for the message.
    """

    def __init__(self, errors: Sequence[FieldError], source: str = "input") -> None:
        if not errors:
            raise ValueError("InputValidationError needs at least one FieldError")
        self.errors: tuple[FieldError, ...] = tuple(errors[:MAX_FIELD_ERRORS])
        self.omitted = len(errors) - len(self.errors)
        self.source = source
        lines = "; ".join(str(e) for e in self.errors)
        more = f"; and {self.omitted} more" if self.omitted else ""
        super().__init__(f"{source} is invalid: {lines}{more}")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["errors"] = [{"path": e.path, "value": e.value, "reason": e.reason} for e in self.errors]
        out["errors_omitted"] = self.omitted
        return out


class SpecValidationError(InputValidationError):
    """The task spec failed validation (unknown field, out-of-range value, inconsistent constraints)."""


class EventShapeError(InputValidationError):
    """A triggering event (S3 via EventBridge, Scheduler) does not have a shape the pipeline accepts."""


class SpecNotFoundError(StratosError):
    """The spec object named by an event no longer exists (deleted or overwritten before the run read it)."""


class DataAccessDeniedError(StratosError):
    """S3 refused to let this stack read a data object (403): an error, never taken as "no such object"."""


class PayloadTooLargeError(StratosError):
    """A state payload exceeds its size budget; it must be moved to S3 and referenced by pointer."""


class PricingUnavailableError(StratosError):
    """No price (live or snapshot) is known for a required instance type, region and component."""


class NoFeasiblePlanError(StratosError):
    """No teacher/student/instance combination satisfies the spec's hard constraints.

    The planner attaches which constraint removed how many candidates and the smallest single relaxation
    that would make a plan feasible (see the planner module).

    Attributes:
        rejected: candidates removed, by reason (e.g. ``{"budget": 1200, "latency": 310}``).
        relaxations: single-constraint relaxations that would make a plan feasible, smallest first; each
            ``{"constraint": <spec path>, "current": ..., "needed": ..., "relative_change": ...}``.
    """

    def __init__(
        self,
        message: str,
        *,
        rejected: Mapping[str, int] | None = None,
        relaxations: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        super().__init__(message)
        self.rejected: dict[str, int] = dict(rejected or {})
        self.relaxations: list[dict[str, Any]] = [dict(r) for r in relaxations]

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["rejected"] = self.rejected
        out["relaxations"] = self.relaxations
        return out


class QuotaExceededError(StratosError):
    """The account cannot get the chosen instance type (service quota or capacity); try the next plan."""


class ThrottlingError(StratosError):
    """An AWS API throttled the call; retry with backoff."""

    retryable = True


class ResourceBusyError(StratosError):
    """A resource is changing state (endpoint Creating/Updating); retry later, never act on it now."""

    retryable = True


class TrainingFailedError(StratosError):
    """The SageMaker training job ended Failed; the message carries its FailureReason."""


class TrainingStoppedError(StratosError):
    """The training job ended Stopped (its maximum runtime, which enforces the budget, was reached)."""


class EvaluationRejectedError(StratosError):
    """The evaluation gate rejected the student (below the spec's minimum accuracy, or worse than before)."""


class DeploymentError(StratosError):
    """The endpoint could not be created or updated (and was rolled back or left untouched)."""


class EndpointOwnershipError(StratosError):
    """The endpoint a spec names belongs to someone else: not Stratos, another stack, or another task (the
    message names the endpoint and its owner). Nothing is created or changed."""


class DeploymentSupersededError(StratosError):
    """The endpoint already serves a newer version of this task's spec: a late older run never replaces it."""


class DuplicateRunError(StratosError):
    """Another execution already owns the run of this spec version (a duplicate or re-delivered event).

    Not a failure of the run: the state machine ends the duplicate execution quietly, without touching the
    run record or starting anything, while the owning execution carries on.
    """


class ConfigurationError(StratosError):
    """A required setting (environment variable of a Lambda) is missing or malformed: a deployment bug."""


#: Error names the state machine retries (with backoff). Everything else is terminal.
RETRYABLE_ERRORS: tuple[str, ...] = tuple(sorted(cls.__name__ for cls in (ThrottlingError, ResourceBusyError)))

#: Error names that end a run at once (never retried): bad input, no plan, hard failures.
TERMINAL_ERRORS: tuple[str, ...] = tuple(
    sorted(
        cls.__name__
        for cls in (
            SpecValidationError,
            EventShapeError,
            SpecNotFoundError,
            DataAccessDeniedError,
            PayloadTooLargeError,
            PricingUnavailableError,
            NoFeasiblePlanError,
            QuotaExceededError,
            TrainingFailedError,
            TrainingStoppedError,
            EvaluationRejectedError,
            DeploymentError,
            EndpointOwnershipError,
            DeploymentSupersededError,
            DuplicateRunError,
            ConfigurationError,
        )
    )
)


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters with an ellipsis, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
