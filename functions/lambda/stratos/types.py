"""Small constrained string types shared by the spec, the names and the state payloads."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field


class SafeAscii:
    """``Annotated`` marker: printable ASCII without ``"`` or ``\\``, so each character is one JSON byte.

    Names, ids, instance types and the S3 URIs the pipeline writes itself are of this kind; the marker
    both validates it and lets :func:`size_upper_bound` count 1 byte a character instead of 6.
    """

    _ALLOWED = frozenset(chr(c) for c in range(0x20, 0x7F)) - {'"', "\\"}

    @classmethod
    def check(cls, value: str) -> str:
        bad = next((ch for ch in value if ch not in cls._ALLOWED), None)
        if bad is not None:
            raise ValueError(f"must be printable ASCII without quotes or backslashes, found {bad!r}")
        return value


#: An id, name or instance type: at most 128 safe ASCII characters.
Short = Annotated[str, Field(max_length=128), AfterValidator(SafeAscii.check), SafeAscii()]
#: An S3 URI the pipeline wrote itself (runs/<run_id>/...): at most 512 safe ASCII characters.
OwnUri = Annotated[str, Field(max_length=512, pattern=r"^s3://"), AfterValidator(SafeAscii.check), SafeAscii()]


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``.

    Raises:
        ValueError: not an ``s3://bucket/key`` URI.
    """
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    if not bucket or not key:
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    return bucket, key
