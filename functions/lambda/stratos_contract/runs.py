"""A run's lifecycle as the runs table records it: its status and the stage it reached.

Both the Lambdas (which write the record) and the local CLI and report (which read it) use these names.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """Whether the run is going, done or failed."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class Stage(StrEnum):
    """The last step that wrote the run's record, in the order a successful run passes them."""

    VALIDATING = "validating"
    """ValidateSpec claimed the run; the spec is being read."""
    VALIDATED = "validated"
    """The spec is valid and copied under the run's prefix."""
    PLANNED = "planned"
    """SelectPlan chose a plan."""
    REPLANNED = "replanned"
    """FallBackToNextPlan chose the next plan after a quota refusal."""
    TRAINING = "training"
    """PrepareTrainingJob asked for the training job."""
    EVALUATED = "evaluated"
    """EvaluationGate read the job's metrics and decided."""
    DEPLOYING = "deploying"
    """Deploy created or updated the endpoint."""
    DEPLOYED = "deployed"
    """FinishDeployment saw the endpoint InService on this run's config."""
    DONE = "done"
    """RecordSuccess closed the run."""
    FAILED = "failed"
    """RecordFailure (or the abandoned-execution handler) closed the run."""
