"""Which SageMaker resources a Stratos stack owns, read from their tags.

Everything a stack creates in SageMaker (training jobs, models, endpoint configs, endpoints) carries
:data:`MANAGED_BY` = the stack's name, plus the task and run it belongs to. IAM enforces the same rule
(template.yaml: Create needs the tag on the request, Update/Delete need it on the resource); the code checks
it first so that a refusal reads as a reason rather than an AccessDenied:

================================================ ==============================================================
endpoint found                                   Deploy
================================================ ==============================================================
no :data:`MANAGED_BY` tag, or another stack's    :class:`~stratos.errors.EndpointOwnershipError`, nothing made
this stack's, another task's                     the same error, unless the spec lists that task in
                                                 ``deployment.replaces_tasks``
this stack's and task's, from a NEWER spec       :class:`~stratos.errors.DeploymentSupersededError`: a late run
version (:data:`SPEC_MODIFIED` later than ours)  of an older spec version never replaces a newer deployment
otherwise                                        deploy (create / blue-green update / recreate)
================================================ ==============================================================

Spec versions are ordered by their S3 ``LastModified`` (whole seconds); versions uploaded within the same
second count as the same age, and a scheduled re-distillation of a version is as new as that version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from stratos.errors import DeploymentSupersededError, EndpointOwnershipError

#: Tag keys Stratos puts on what it creates.
MANAGED_BY = "stratos:managed-by"
TASK = "stratos:task-id"
RUN = "stratos:run-id"
SPEC_MODIFIED = "stratos:spec-modified-at"
STUDENT = "stratos:student"


def ownership_tags(stack: str, task_id: str, run_id: str) -> list[dict[str, str]]:
    """The tags every Stratos-created SageMaker resource carries (SageMaker ``Tags`` shape)."""
    return [{"Key": MANAGED_BY, "Value": stack}, {"Key": TASK, "Value": task_id}, {"Key": RUN, "Value": run_id}]


def tag_map(tags: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """SageMaker ``[{"Key", "Value"}]`` tags as a dict (a later duplicate key wins, as AddTags overwrites)."""
    return {str(t["Key"]): str(t["Value"]) for t in tags}


def timestamp(moment: datetime | None) -> str:
    """A tag value for :data:`SPEC_MODIFIED`: ISO 8601, UTC, whole seconds (``""`` when unknown)."""
    return moment.replace(microsecond=0).isoformat() if moment else ""


@dataclass(frozen=True)
class Owner:
    """Who an existing resource belongs to, from its tags (empty strings where a tag is absent)."""

    stack: str
    task: str
    run: str
    spec_modified_at: str

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Owner:
        return cls(tags.get(MANAGED_BY, ""), tags.get(TASK, ""), tags.get(RUN, ""), tags.get(SPEC_MODIFIED, ""))

    def describe(self) -> str:
        """In words, for error messages."""
        if not self.stack:
            return "not managed by Stratos (no stratos:managed-by tag)"
        return f"stack {self.stack!r}, task {self.task or '?'!r}, run {self.run or '?'!r}"


def check_endpoint_owner(
    endpoint: str,
    owner: Owner,
    *,
    stack: str,
    task_id: str,
    replaces_tasks: Iterable[str],
    spec_modified_at: datetime | None,
) -> None:
    """Refuse to touch an endpoint this run does not own (see the module table).

    Args:
        endpoint: the endpoint's name (for messages).
        owner: its tags, read with ListTags.
        stack: this stack's name; task_id: this run's task; replaces_tasks: other tasks the spec may take over.
        spec_modified_at: this run's spec version's LastModified, ``None`` when unknown (then no ordering check).

    Raises:
        EndpointOwnershipError: another stack's, not Stratos's, or another task's (not in ``replaces_tasks``).
        DeploymentSupersededError: it serves a newer version of this task's spec.
    """
    if owner.stack != stack:
        raise EndpointOwnershipError(
            f"endpoint {endpoint} is {owner.describe()}; this stack ({stack}) only changes endpoints it created: "
            "choose another deployment.endpoint_name"
        )
    if owner.task != task_id and owner.task not in set(replaces_tasks):
        raise EndpointOwnershipError(
            f"endpoint {endpoint} serves task {owner.task!r} (run {owner.run or '?'}); task {task_id!r} may "
            f"replace it only if its spec lists {owner.task!r} in deployment.replaces_tasks"
        )
    ours = timestamp(spec_modified_at)
    if owner.task == task_id and ours and owner.spec_modified_at and owner.spec_modified_at > ours:
        raise DeploymentSupersededError(
            f"endpoint {endpoint} serves run {owner.run or '?'} from a newer version of task {task_id!r}'s spec "
            f"(modified {owner.spec_modified_at}); this run's spec version (modified {ours}) is older, so its "
            "student is not deployed"
        )
