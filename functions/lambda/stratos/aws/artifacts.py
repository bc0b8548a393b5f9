"""S3 adapter: read a spec at its exact version, write run artifacts, read the training job's outputs.

Everything the pipeline writes goes to the artifacts bucket under ``runs/<run_id>/``; :meth:`ArtifactStore.put`
refuses any key under ``specs/``, the prefix the EventBridge rule watches, so no step can trigger a run.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from datetime import UTC, datetime
from typing import Any

from stratos.aws.clients import client, error_code, error_message, throttling_as_retryable
from stratos.errors import (
    DataAccessDeniedError,
    FieldError,
    SpecNotFoundError,
    SpecValidationError,
    TrainingFailedError,
)
from stratos.events import SPECS_PREFIX
from stratos.naming import SpecIdentity
from stratos.payloads import S3Pointer
from stratos.spec import MAX_SPEC_BYTES
from stratos.types import split_uri

#: The largest training ``output.tar.gz`` the evaluation gate will stream through, bytes (metrics.json is a few
#: KB; the archive also holds config.json and whatever else the container left in output/data).
MAX_OUTPUT_ARCHIVE_BYTES = 512 * 1024 * 1024
#: The largest metrics.json accepted, bytes.
MAX_METRICS_BYTES = 1024 * 1024


class OutputLocationError(ValueError):
    """A write was aimed under the watched ``specs/`` prefix (it would start a run by itself)."""


class ArtifactStore:
    """Run artifacts in S3.

    Args:
        bucket: the artifacts bucket.
        s3_client: a boto3 S3 client; the shared lazy one when omitted.
    """

    def __init__(self, bucket: str, s3_client: Any = None) -> None:
        self.bucket = bucket
        self._s3 = s3_client

    @property
    def s3(self) -> Any:
        """The boto3 S3 client."""
        if self._s3 is None:
            self._s3 = client("s3")
        return self._s3

    def put(self, key: str, body: bytes, content_type: str = "application/json") -> S3Pointer:
        """Write ``body`` to ``s3://<artifacts>/<key>`` and return its pointer (size, SHA-256).

        Raises:
            OutputLocationError: ``key`` is under ``specs/``.
            ThrottlingError: S3 throttled the write.
        """
        if key.startswith(SPECS_PREFIX):
            raise OutputLocationError(f"refusing to write {key!r}: outputs never go under {SPECS_PREFIX}")
        with throttling_as_retryable(f"s3:PutObject {self.bucket}/{key}"):
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        return S3Pointer(uri=f"s3://{self.bucket}/{key}", bytes=len(body), sha256=hashlib.sha256(body).hexdigest())

    def put_json(self, key: str, document: Any) -> S3Pointer:
        """:meth:`put` of ``document`` as compact UTF-8 JSON."""
        body = json.dumps(document, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")
        return self.put(key, body)

    def get(self, pointer: S3Pointer) -> bytes:
        """The bytes ``pointer`` names, checked against its SHA-256.

        Raises:
            SpecNotFoundError: the object is gone or changed since it was written.
        """
        from botocore.exceptions import ClientError

        bucket, key = split_uri(pointer.uri)
        try:
            with throttling_as_retryable(f"s3:GetObject {pointer.uri}"):
                body: bytes = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            raise SpecNotFoundError(f"cannot read {pointer.uri}: {error_message(exc)}") from exc
        if hashlib.sha256(body).hexdigest() != pointer.sha256:
            raise SpecNotFoundError(f"{pointer.uri} changed since it was written (SHA-256 differs)")
        return body

    def read_spec(self, identity: SpecIdentity) -> bytes:
        """The spec object's bytes (see :meth:`read_spec_version`)."""
        return self.read_spec_version(identity)[0]

    def read_spec_version(self, identity: SpecIdentity) -> tuple[bytes, datetime | None]:
        """The spec object at exactly the version the event named (``VersionId``; else the ETag must match),
        and that version's ``LastModified`` (UTC; ``None`` if S3 did not say).

        Raises:
            SpecNotFoundError: the version (or the object) no longer exists.
            SpecValidationError: the object is larger than a spec may be (the limit is in the message).
        """
        from botocore.exceptions import ClientError

        args: dict[str, Any] = {"Bucket": identity.bucket, "Key": identity.key}
        if identity.version_id not in (None, "", "null"):
            args["VersionId"] = identity.version_id
        elif identity.etag:
            args["IfMatch"] = f'"{identity.etag}"'
        try:
            with throttling_as_retryable(f"s3:GetObject {identity.uri}"):
                response = self.s3.get_object(**args)
        except ClientError as exc:
            code = error_code(exc)
            raise SpecNotFoundError(
                f"{identity.uri} (version {identity.version_id or identity.etag or '?'}) cannot be read: "
                f"{code or 'error'}: {error_message(exc)}"
            ) from exc
        size = int(response.get("ContentLength", 0))
        if size > MAX_SPEC_BYTES:
            raise SpecValidationError(
                [FieldError("<root>", f"{size:,} bytes", f"a spec may be at most {MAX_SPEC_BYTES:,} bytes")],
                identity.uri,
            )
        body: bytes = response["Body"].read(MAX_SPEC_BYTES + 1)
        modified = response.get("LastModified")
        return body, modified.astimezone(UTC) if isinstance(modified, datetime) else None

    def object_version(self, uri: str) -> str | None:
        """``VersionId`` (else the ETag) of the object at ``uri``; ``None`` when there is no such object.

        Raises:
            DataAccessDeniedError: S3 answered 403: this stack's roles may not read the object (never read as
                "no object": a denied read would otherwise look like deleted data).
            ThrottlingError: throttled.
            botocore ClientError: any other failure.
        """
        from botocore.exceptions import ClientError

        bucket, key = split_uri(uri)
        try:
            with throttling_as_retryable(f"s3:HeadObject {uri}"):
                head = self.s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            code = error_code(exc)
            if code in ("403", "AccessDenied", "Forbidden"):
                raise DataAccessDeniedError(
                    f"reading {uri} was denied (S3 {code}): this stack's roles may not read it"
                ) from exc
            if code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                return None
            raise
        version = head.get("VersionId")
        if version and version != "null":
            return str(version)
        return str(head.get("ETag", "")).strip('"') or None

    def read_archive_member(self, uri: str, member: str) -> bytes:
        """One file out of a ``.tar.gz`` in S3 (the training job's ``output.tar.gz``), streamed, never whole.

        Args:
            uri: the archive.
            member: the file's path inside (a leading ``./`` is ignored).

        Raises:
            TrainingFailedError: the archive is missing, too large, unreadable, or lacks ``member``.
        """
        from botocore.exceptions import ClientError

        bucket, key = split_uri(uri)
        try:
            with throttling_as_retryable(f"s3:GetObject {uri}"):
                response = self.s3.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            raise TrainingFailedError(f"the training job left no {uri}: {error_message(exc)}") from exc
        if int(response.get("ContentLength", 0)) > MAX_OUTPUT_ARCHIVE_BYTES:
            raise TrainingFailedError(f"{uri} is {response['ContentLength']} bytes; larger than the gate reads")
        wanted = member.removeprefix("./")
        try:
            with tarfile.open(fileobj=response["Body"], mode="r|gz") as archive:
                for info in archive:
                    if info.name.removeprefix("./") != wanted:
                        continue
                    if not info.isfile() or info.size > MAX_METRICS_BYTES:
                        raise TrainingFailedError(f"{wanted} in {uri} is not a file of at most {MAX_METRICS_BYTES} B")
                    handle = archive.extractfile(info)
                    if handle is None:
                        break
                    return handle.read()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise TrainingFailedError(f"{uri} is not a readable .tar.gz: {exc}") from exc
        raise TrainingFailedError(f"{uri} has no {wanted}: the container did not write output/data/{wanted}")


def tar_gz(files: dict[str, bytes]) -> bytes:
    """A ``.tar.gz`` holding ``files`` (name -> bytes), as SageMaker packs ``output/data`` (tests, local mode)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
