"""Validation that names the field: JSON documents read strictly, and pydantic's errors turned into
:class:`~stratos.errors.FieldError` lines a person can act on (the spec, step inputs and events all use it).
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from stratos.errors import FieldError, InputValidationError, short_repr


class RuleError(ValueError):
    """A cross-field rule failed; ``path`` (relative to the model that raised it) names the field to fix."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


#: Deepest accepted JSON nesting. The spec's own schema is 4 levels deep.
MAX_JSON_DEPTH = 32


#: Most digits a JSON integer may have: every count and size in Stratos fits in far fewer, and Python refuses
#: to parse more than 4,300 with a message about its own limits.
MAX_INT_DIGITS = 20


class _Unusable:
    """Stands in for a value the document must not hold (NaN, Infinity, an overflowing or huge number, the value
    of a key written twice), so that the error can name where it is rather than fail the whole parse at
    ``<root>``."""

    def __init__(self, text: str, reason: str) -> None:
        self.text, self.reason = text, reason


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: a key written twice keeps an :class:`_Unusable` in its place, so the error names
    the key's path (JSON readers disagree on which of the two values wins, so neither is taken)."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            shown = value.text if isinstance(value, _Unusable) else _shape(value)
            value = _Unusable(shown, f"duplicate key {key!r}: written twice in one object; keep one")
        seen[key] = value
    return seen


def _shape(value: Any) -> str:
    """A value for an error message: scalars as written, containers as ``{...}`` / ``[...]``."""
    if isinstance(value, dict):
        return "{...}"
    if isinstance(value, list):
        return "[...]"
    return short_repr(value)


def _lone_surrogate(text: str) -> bool:
    """Whether ``text`` holds half of a UTF-16 surrogate pair (JSON ``"\\ud800"``): no UTF-8 encodes it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


_SURROGATE_REASON = "holds an unpaired UTF-16 surrogate (a lone \\ud800-\\udfff escape), which no UTF-8 text can carry"


def _constant(name: str) -> _Unusable:
    return _Unusable(name, f"{name} is not a number JSON allows")


def _int(text: str) -> int | _Unusable:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        return _Unusable(f"{text[:12]}... ({digits} digits)", f"a number of {digits} digits; at most {MAX_INT_DIGITS}")
    return int(text)


def _float(text: str) -> float | _Unusable:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        return _Unusable(text[:24], "a number too large for a 64-bit float")
    return value


def _scan(doc: Any) -> tuple[int, list[FieldError]]:
    """One pass over ``doc``: its nesting depth, and every :class:`_Unusable` value (a bad number, a duplicate
    key) and every text with a lone surrogate (a key or a value), each with its path (sorted).
    Iterative, so a hostile document cannot blow the Python stack here."""
    deepest, found = 0, []
    stack: list[tuple[Any, list[str | int]]] = [(doc, [])]
    while stack:
        node, parts = stack.pop()
        deepest = max(deepest, len(parts) + 1)
        if isinstance(node, _Unusable):
            found.append(FieldError(_format_path(parts) or "<root>", node.text, node.reason))
        elif isinstance(node, str) and _lone_surrogate(node):
            found.append(FieldError(_format_path(parts) or "<root>", short_repr(node), _SURROGATE_REASON))
        elif isinstance(node, dict):
            for key in node:
                if _lone_surrogate(key):
                    reason = f"the key {_SURROGATE_REASON}"
                    found.append(FieldError(_format_path([*parts, key]), short_repr(key), reason))
            stack.extend((v, [*parts, k]) for k, v in node.items() if not _lone_surrogate(k))
        elif isinstance(node, list):
            stack.extend((v, [*parts, i]) for i, v in enumerate(node))
    return deepest, sorted(found, key=lambda e: e.path)


def load_json_document(
    raw: bytes | str,
    source: str,
    *,
    error_cls: type[InputValidationError],
    max_bytes: int,
) -> Any:
    """Decode a JSON document strictly: UTF-8, size-capped, depth-capped, and no duplicate key, NaN, Infinity,
    overflowing float, integer of more than :data:`MAX_INT_DIGITS` digits or lone surrogate (each of these named
    by its path).

    Raises:
        error_cls: (an :class:`~stratos.errors.InputValidationError` subclass) with a ``<root>`` FieldError for
            a whole-document problem (size, encoding, syntax, depth), else one FieldError per bad value's path.
    """
    size = len(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise error_cls([FieldError("<root>", f"{size} bytes", f"document larger than {max_bytes} bytes")], source)
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error_cls([FieldError("<root>", f"byte {exc.start}", "not valid UTF-8")], source) from exc
    raw = raw.removeprefix("\ufeff")  # a BOM from Windows editors is harmless
    try:
        doc = json.loads(
            raw, object_pairs_hook=_no_duplicate_keys, parse_constant=_constant, parse_int=_int, parse_float=_float
        )
    except json.JSONDecodeError as exc:
        reason = f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        raise error_cls([FieldError("<root>", short_repr(raw[:40]), reason)], source) from exc
    except (ValueError, RecursionError) as exc:
        reason = "JSON nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise error_cls([FieldError("<root>", short_repr(raw[:40]), reason)], source) from exc
    depth, unusable = _scan(doc)
    if depth > MAX_JSON_DEPTH:
        raise error_cls([FieldError("<root>", "...", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")], source)
    if unusable:
        raise error_cls(unusable, source)
    return doc


def field_errors(exc: ValidationError, doc: Any, model: type[BaseModel]) -> list[FieldError]:
    """Turn a pydantic ValidationError into FieldErrors whose paths follow the user's document.

    Pydantic puts the discriminator value of a tagged union into ``loc`` (``data.jsonl.train_uri``); the
    user wrote ``data.train_uri``, so tags are dropped (the spec's unions are tagged by ``source`` or ``kind``).
    A wrong or missing tag is named at the tag field (``data.source``) with the allowed tags; a rejected dict key
    at the key (pydantic adds ``[key]``). Unknown-field errors list the allowed names and the closest match.
    """
    out: list[FieldError] = []
    for err in exc.errors(include_url=False):
        path_parts: list[str | int] = []
        node: Any = doc
        present = True
        tag_skipped_at: Any = None
        loc = err["loc"]
        for i, part in enumerate(loc):
            tagged = isinstance(node, dict) and part in (node.get("source"), node.get("kind"))
            if tagged and tag_skipped_at is not node:
                tag_skipped_at = node  # the union tag pydantic inserts right after the union field
                continue
            if part == "[key]" and i == len(loc) - 1 and path_parts and not (isinstance(node, dict) and part in node):
                # pydantic's marker of a rejected dict key (``accuracy_priors.<key>.[key]``): the key is the value
                err, present = {**err, "input": path_parts[-1]}, True
                continue
            path_parts.append(part)
            node, present = _child(node, part)
        ctx = err.get("ctx") or {}
        if err["type"] in ("union_tag_invalid", "union_tag_not_found") and "discriminator" in ctx:
            # A tagged union names its tag field: ``data.source``, not ``data`` with pydantic's sentence.
            tag = str(ctx["discriminator"]).strip("'")
            path_parts.append(tag)
            node, present = _child(node, tag)
            expected = ctx.get("expected_tags") or _expected_tags(model, doc, path_parts[:-1])
            err = {**err, "input": node, "msg": f"must be one of {expected}" if expected else "unknown kind"}
        rule = ctx.get("error")
        if isinstance(rule, RuleError):
            for text in rule.path.split("."):
                step: str | int = int(text) if text.isdigit() else text  # "students.2": the list's third item
                path_parts.append(step)
                node, present = _child(node, step)
            err = {**err, "input": node}
        path = _format_path(path_parts)
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            allowed = _allowed_fields(model, doc, path_parts[:-1])
            if allowed:
                close = difflib.get_close_matches(str(path_parts[-1]), allowed, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                reason = f"unknown field{hint} (allowed: {', '.join(allowed)})"
            else:
                reason = "unknown field"
        value = "<missing>" if err["type"] == "missing" or not present else short_repr(err.get("input"))
        out.append(FieldError(path or "<root>", value, reason))
    return out


def _child(node: Any, part: str | int) -> tuple[Any, bool]:
    """``node[part]`` for a dict key or list index, and whether it exists."""
    if isinstance(node, dict) and isinstance(part, str):
        return node.get(part), part in node
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part], True
    return None, False


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _format_path(parts: list[str | int]) -> str:
    """``a.b[0].c``; a key that is not a plain identifier is written ``["key"]`` so the path stays unambiguous."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text


def _allowed_fields(model: type[BaseModel], doc: Any, parts: list[str | int]) -> list[str]:
    """Field names of the model at ``parts`` of the document, following nested models and tagged unions."""
    fields = getattr(_model_at(model, doc, parts), "model_fields", None)
    return sorted(fields) if fields else []


def _expected_tags(model: type[BaseModel], doc: Any, parts: list[str | int]) -> str:
    """``'a', 'b'``: the tags of the tagged union at ``parts`` (pydantic lists them only for a wrong tag, not a
    missing one); ``""`` when ``parts`` is not a tagged union field."""
    if not parts or isinstance(parts[-1], int):
        return ""
    fields = getattr(_model_at(model, doc, parts[:-1]), "model_fields", None)
    if not fields or parts[-1] not in fields:
        return ""
    members = [m for m in get_args(fields[parts[-1]].annotation) if isinstance(m, type) and issubclass(m, BaseModel)]
    return ", ".join(repr(tag) for tag in map(_tag_of, members) if tag is not None)


def _model_at(model: type[BaseModel], doc: Any, parts: list[str | int]) -> Any:
    """The model at ``parts`` of the document (None when there is none), following tagged unions."""
    current: Any = model
    node: Any = doc
    for part in parts:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            current = _unwrap(current, node)
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return None
        node = node.get(part) if isinstance(node, dict) else None
        current = _unwrap(fields[part].annotation, node)
    return current


def _unwrap(annotation: Any, node: Any) -> Any:
    """Reduce ``X | None``, ``list[X]``, ``Annotated[...]`` and tagged unions to the model that ``node`` is."""
    for _ in range(8):
        origin = get_origin(annotation)
        if origin is Annotated or origin is list:
            annotation = get_args(annotation)[0]
        elif origin is Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
            members = [a for a in get_args(annotation) if a is not type(None)]
            tag = node.get("source") if isinstance(node, dict) else None
            chosen = [
                m
                for m in members
                if isinstance(m, type) and issubclass(m, BaseModel) and (len(members) == 1 or _tag_of(m) == tag)
            ]
            if not chosen:
                return None
            annotation = chosen[0]
        else:
            return annotation
    return annotation


def _tag_of(model: type[BaseModel]) -> Any:
    field = model.model_fields.get("source")
    if field is None:
        return None
    args = get_args(field.annotation)
    return args[0] if args else None
