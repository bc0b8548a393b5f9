"""Deterministic names for everything a run creates.

All names derive from the spec's identity, :class:`SpecIdentity` (bucket, decoded key, object version,
plus an optional revision for re-runs of the same version), through one hash:

* the same identity always gives the same names, so a duplicate event or a retried state re-finds the
  run's training job instead of starting a second, paid one;
* two different identities get different names even when their readable parts are cut to fit: the
  readable slug is truncated, the hash never is.

Name shapes and limits (AWS service quotas/API references):

============================ ============================================ ======
name                          pattern                                      max
============================ ============================================ ======
run id                        ``^[a-z0-9](-*[a-z0-9]){0,62}$``             63
Step Functions execution      letters, digits, ``-`` and ``_`` only        80
SageMaker training job, model ``^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``        63
endpoint config, endpoint     (same)                                       63
============================ ============================================ ======

The hash is 12 base32 characters of SHA-256 (60 bits): for 10^5 runs the chance of any collision is about
n^2 / 2^61 = 4e-9.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from stratos.types import SafeAscii, Short

#: SageMaker's name pattern for training jobs, models, endpoint configs and endpoints.
SAGEMAKER_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
SAGEMAKER_NAME_MAX = 63
#: Step Functions execution names: <= 80 characters; we use only [A-Za-z0-9-_] so CloudWatch Logs and
#: X-Ray accept them too.
EXECUTION_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
EXECUTION_NAME_MAX = 80
HASH_CHARS = 12


def _unquote(value: object) -> object:
    """S3 APIs return ETags wrapped in double quotes; events do not. Store them bare."""
    return value.strip('"') if isinstance(value, str) else value


class SpecIdentity(BaseModel):
    """What makes a run unique: one version of one spec object, optionally re-run under a new revision.

    Attributes:
        bucket: S3 bucket name.
        key: the object key, DECODED (S3 event notifications URL-encode it; decode exactly once before
            building this).
        version_id: S3 object version id; ``None`` on an unversioned bucket (then ``etag`` identifies the
            content instead: the same bytes re-uploaded are the same run).
        etag: the object's ETag without quotes; may be empty when a version id is present.
        revision: distinguishes deliberate re-runs of the same object version (a scheduled
            re-distillation's timestamp, or ``force-<n>``); ``None`` for the run an upload starts.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    bucket: Annotated[str, Field(min_length=3, max_length=63), AfterValidator(SafeAscii.check), SafeAscii()]
    key: str = Field(min_length=1, max_length=1024)
    version_id: Annotated[str, Field(max_length=1024), AfterValidator(SafeAscii.check), SafeAscii()] | None = None
    etag: Annotated[
        str, BeforeValidator(_unquote), Field(max_length=128), AfterValidator(SafeAscii.check), SafeAscii()
    ] = ""
    revision: Short | None = None

    @property
    def uri(self) -> str:
        """``s3://bucket/key`` (the key as stored, not encoded)."""
        return f"s3://{self.bucket}/{self.key}"

    def digest(self) -> str:
        """12 lowercase base32 characters of SHA-256 over the canonical identity (deterministic)."""
        version = self.version_id if self.version_id not in (None, "null") else f"etag:{self.etag}"
        canonical = json.dumps([self.bucket, self.key, version, self.revision], ensure_ascii=False)
        raw = hashlib.sha256(canonical.encode("utf-8")).digest()
        return base64.b32encode(raw).decode("ascii").lower()[:HASH_CHARS]

    def with_revision(self, revision: str) -> SpecIdentity:
        """The same object version under a new revision (a new run with new names)."""
        return self.model_copy(update={"revision": revision})


def slugify(text: str, max_length: int) -> str:
    """Readable ASCII slug: accents folded, runs of other characters turned into one hyphen, lowercase.

    ``"team_a/Qwen2.5-7B-Instruct_to_Qwen2.5-0.5B (v2).json"`` -> ``"team-a-qwen2-5-7b-instruct-to-..."``.
    May return ``""`` (e.g. for a key made only of symbols or non-Latin script).
    """
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", folded).strip("-")
    return slug[:max_length].rstrip("-")


def _key_stem(key: str) -> str:
    """The readable part of a spec key: its path without the ``specs/`` prefix and the ``.json`` suffix."""
    stem = key.removeprefix("specs/")
    return stem[: -len(".json")] if stem.lower().endswith(".json") else stem


def compose(prefix: str, readable: str, digest: str, suffix: str = "", max_length: int = SAGEMAKER_NAME_MAX) -> str:
    """``prefix-readable-digest[-suffix]`` within ``max_length``; only ``readable`` is ever shortened.

    Raises:
        ValueError: if prefix, digest and suffix alone do not fit.
    """
    fixed = [p for p in (prefix, digest, suffix) if p]
    room = max_length - sum(len(p) for p in fixed) - len(fixed)  # hyphens between parts
    if room < 0:
        raise ValueError(f"name parts {fixed} exceed {max_length} characters")
    slug = slugify(readable, room) if room > 0 else ""
    parts = [p for p in (prefix, slug, digest, suffix) if p]
    return "-".join(parts)


class RunNames(BaseModel):
    """Every name one run uses. Built by :func:`run_names`; carried in the state so no step re-derives them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: Short = Field(max_length=63, description="Run id: DynamoDB key, S3 prefix runs/<run_id>/.")
    execution_name: Short = Field(max_length=80, description="Step Functions execution name.")
    training_job_name: Short = Field(max_length=63, description="SageMaker training job name.")
    model_name: Short = Field(max_length=63, description="SageMaker model name.")
    endpoint_config_name: Short = Field(max_length=63, description="SageMaker endpoint config (blue/green).")
    endpoint_name: Short = Field(max_length=63, description="SageMaker endpoint; stable per task.")


def endpoint_name_for(task_id: str, explicit: str | None = None) -> str:
    """The endpoint a task deploys to: the spec's ``deployment.endpoint_name``, else ``stratos-<task_id>``.

    Stable across runs of the task, so a re-distillation updates the live endpoint in place.
    """
    if explicit:
        return explicit
    name = f"stratos-{slugify(task_id, SAGEMAKER_NAME_MAX - len('stratos-'))}".rstrip("-")
    return name if SAGEMAKER_NAME_RE.match(name) else "stratos-endpoint"


def run_names(identity: SpecIdentity, task_id: str, endpoint_name: str | None = None, attempt: int = 0) -> RunNames:
    """All names for the run of ``identity``.

    Args:
        identity: the spec identity (decoded key).
        task_id: the spec's ``task_id`` (names the endpoint).
        endpoint_name: the spec's explicit endpoint name, if any.
        attempt: 0 for the first plan; n for the n-th fallback plan after a quota error, so the retried
            training job and endpoint config get fresh names (SageMaker never reuses a name).

    Returns:
        :class:`RunNames`, each within its service's length and character limits.
    """
    if attempt < 0 or attempt > 99:
        raise ValueError(f"attempt must be 0..99, got {attempt}")
    digest = identity.digest()
    readable = _key_stem(identity.key)
    run_id = compose("", readable, digest)
    suffix = f"a{attempt}" if attempt else ""
    return RunNames(
        run_id=run_id,
        execution_name=compose("", readable, digest, suffix, EXECUTION_NAME_MAX),
        training_job_name=compose("", readable, digest, suffix),
        model_name=compose("", readable, digest, suffix),
        endpoint_config_name=compose("", readable, digest, suffix or "a0"),
        endpoint_name=endpoint_name_for(task_id, endpoint_name),
    )
