"""Mutated task specs and the judge of the validator's answer to each (issue 14, part 4).

A mutant is a valid example spec (``events/specs/*.json``) with one change: a leaf replaced with a nasty value
(NaN, a 5,001-digit integer, a lone surrogate, an S3 URI that climbs...), a key deleted, an unknown key added,
a key written twice in the JSON text, or a list item (a candidate id) repeated. Each mutant carries an oracle:
whether the change makes the spec invalid for sure (``must_reject``) and whether a ``<root>`` error is right
(only for a whole-document problem: nesting too deep).

:func:`judge` runs ``parse_spec`` and ``deployment_checks`` (with :func:`stack_for`'s Settings) on a mutant and
sorts the answer: accepted (valid or, wrongly, invalid), rejected naming the field, rejected without naming it,
rejected with an oversized message, or a crash. ``tests/unit/test_spec_fuzz.py`` drives it with hypothesis and
``benchmarks/spec_fuzz.py`` with a seeded ``random.Random`` for the counts; both choose through :class:`Choose`.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from stratos.errors import FieldError, SpecValidationError
from stratos.pipeline.settings import Settings
from stratos.pipeline.validate import deployment_checks
from stratos.spec import parse_spec, spec_json_schema

SPECS = Path(__file__).resolve().parents[2] / "events" / "specs"
BASES: tuple[str, ...] = tuple(sorted(p.name for p in SPECS.glob("*.json")))

#: The stack every mutant is checked against (its region is the base spec's, so only a changed region differs).
SPECS_BUCKET, ARTIFACTS_BUCKET = "st-specs", "st-artifacts"
DATA_BUCKET = "stratos-data-123456789012-us-east-1"
DATA_BUCKETS = (DATA_BUCKET, "stratos-data-123456789012-us-west-2")

#: Fields of free text: an empty string, a URI or a region code there is a valid value.
FREE_TEXT: frozenset[tuple[str | int, ...]] = frozenset({("description",), ("distillation", "domain_notes")})

#: Text that leaks the implementation instead of saying what to fix.
INTERNAL_PHRASES = ("int_max_str_digits", "Invalid JSON", "[key]", "Input tag", "Traceback", "object at 0x")

#: Deepest accepted JSON nesting is 32 levels; this nests further from any leaf.
DEEP_LEVELS = 40

Path_ = tuple[str | int, ...]
T = TypeVar("T")


class Choose(Protocol):
    """Where a mutation's choices come from: hypothesis's ``draw`` or a seeded ``random.Random``."""

    def __call__(self, options: Sequence[T]) -> T: ...


def random_chooser(rng: random.Random) -> Choose:
    def choose(options: Sequence[T]) -> T:
        return options[rng.randrange(len(options))]

    return choose


@dataclass(frozen=True)
class Raw:
    """JSON text written as is: ``NaN``, ``1e400``, a 5,001-digit integer, an escaped lone surrogate."""

    text: str


class Pairs(list[tuple[str, Any]]):
    """An object written with these ``(key, value)`` pairs, a key twice included."""


Oracle = Callable[[Path_, Any], bool]


def _always(path: Path_, original: Any) -> bool:
    return True


def _unless_free_text(path: Path_, original: Any) -> bool:
    return path not in FREE_TEXT


def _unless_bool_field(path: Path_, original: Any) -> bool:
    return not isinstance(original, bool)


def _where_text_or_bool(path: Path_, original: Any) -> bool:
    return isinstance(original, str | bool)


def _at_region(path: Path_, original: Any) -> bool:
    return path == ("constraints", "region")


def _never(path: Path_, original: Any) -> bool:
    return False


@dataclass(frozen=True)
class Nasty:
    """A replacement value, whether it must be rejected where it lands, and whether JSON Schema can say so."""

    label: str
    value: Any
    must_reject: Oracle
    schema_expressible: bool
    whole_document: bool = False


def _uri(label: str, uri: str, schema_expressible: bool = False) -> Nasty:
    return Nasty(f"uri: {label}", uri, _unless_free_text, schema_expressible)


NASTY: tuple[Nasty, ...] = (
    Nasty("NaN", Raw("NaN"), _always, False),
    Nasty("Infinity", Raw("Infinity"), _always, False),
    Nasty("-Infinity", Raw("-Infinity"), _always, False),
    Nasty("1e400", Raw("1e400"), _always, True),
    Nasty("10**30", Raw(str(10**30)), _always, True),
    Nasty("-10**25", Raw(str(-(10**25))), _always, True),
    Nasty("10**5000", Raw("1" + "0" * 5000), _always, False),  # Python's json refuses it: no schema check
    Nasty("true", True, _unless_bool_field, True),
    Nasty("false", False, _unless_bool_field, True),
    Nasty("int 7", 7, _where_text_or_bool, True),
    Nasty("int 0", 0, _where_text_or_bool, True),
    Nasty("empty string", "", _unless_free_text, True),
    Nasty("5,000 characters", "x" * 5000, _always, True),
    Nasty("lone surrogate escaped", Raw('"\\ud800"'), _always, False),
    Nasty("lone low surrogate escaped", Raw('"ab\\udc00cd"'), _always, False),
    Nasty("lone surrogate raw", "tile \udfff", _always, False),
    Nasty("nested arrays", [[["x"]]], _always, True),
    Nasty("nested too deep", Raw("[" * DEEP_LEVELS + "]" * DEEP_LEVELS), _always, True, whole_document=True),
    Nasty("null", None, _never, False),
    Nasty("another region", "eu-west-1", _at_region, False),
    _uri("..", f"s3://{DATA_BUCKET}/datasets/../runs/r1/spec.json"),
    _uri("%2e%2e", f"s3://{DATA_BUCKET}/datasets/%2e%2e/runs/spec.json"),
    _uri("?versionId=1", f"s3://{DATA_BUCKET}/datasets/train.jsonl?versionId=1"),
    _uri("#fragment", f"s3://{DATA_BUCKET}/datasets/train.jsonl#x"),
    _uri("//", f"s3://{DATA_BUCKET}/datasets//train.jsonl"),
    _uri("./", f"s3://{DATA_BUCKET}/./datasets/train.jsonl"),
    _uri("bucket ab", "s3://ab/train.jsonl", schema_expressible=True),
    _uri("bucket a..b", "s3://a..b/train.jsonl"),
    _uri("bucket a.-b", "s3://a.-b/train.jsonl"),
    _uri("bucket 192.168.1.1", "s3://192.168.1.1/train.jsonl"),
    _uri("bucket xn--x", "s3://xn--x/train.jsonl"),
    _uri("bucket -s3alias", "s3://data-s3alias/train.jsonl"),
    _uri("bucket upper case", "s3://Team-Data/train.jsonl", schema_expressible=True),
    _uri("no key", f"s3://{DATA_BUCKET}", schema_expressible=True),
    _uri("https", f"https://{DATA_BUCKET}.s3.amazonaws.com/train.jsonl", schema_expressible=True),
    _uri("foreign bucket", "s3://someone-elses-prod-data/pii/customers.jsonl"),
    _uri("artifacts runs/", f"s3://{ARTIFACTS_BUCKET}/runs/r1/spec.json"),
    _uri("artifacts specs/", f"s3://{ARTIFACTS_BUCKET}/specs/task.json"),
    _uri("artifacts models/", f"s3://{ARTIFACTS_BUCKET}/models/m/config.json"),
    _uri("artifacts data without /", f"s3://{ARTIFACTS_BUCKET}/database/x.jsonl"),
    _uri("artifacts data/../runs", f"s3://{ARTIFACTS_BUCKET}/data/../runs/r1/spec.json"),
    _uri("specs bucket", f"s3://{SPECS_BUCKET}/specs/other.json"),
    Nasty("uri: artifacts data/ (valid)", f"s3://{ARTIFACTS_BUCKET}/data/team/train.jsonl", _never, False),
    Nasty("uri: data bucket (valid)", f"s3://{DATA_BUCKET}/other/train.jsonl", _never, False),
)

#: Keys added where none belongs: a typo, case, a hyphen, non-ASCII, a space, empty, longer than a path may be.
UNKNOWN_KEYS: tuple[str, ...] = ("latncy", "Task_ID", "spec-version", "ключ", "a b", "", "__proto__", "k" * 300)

Kind = Literal["replace", "delete", "add", "duplicate-key", "duplicate-item", "data-uri"]
KINDS: tuple[Kind, ...] = (
    "replace",
    "replace",
    "replace",
    "delete",
    "add",
    "duplicate-key",
    "duplicate-item",
    "data-uri",
)


@dataclass
class Mutant:
    """One mutated spec. ``path`` is the field the change made or touched; ``doc`` holds :class:`Raw` and
    :class:`Pairs` markers, ``text`` is the JSON written from it."""

    base: str
    kind: Kind
    label: str
    path: Path_
    doc: Any
    must_reject: bool
    schema_expressible: bool
    whole_document: bool = False
    text: str = field(init=False)

    def __post_init__(self) -> None:
        self.text = to_json(self.doc)


def to_json(node: Any) -> str:
    """JSON text of ``node``: :class:`Raw` as written, :class:`Pairs` with every pair, non-ASCII kept raw."""
    if isinstance(node, Raw):
        return node.text
    if isinstance(node, Pairs | dict):
        items = node if isinstance(node, Pairs) else list(node.items())
        return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {to_json(v)}" for k, v in items) + "}"
    if isinstance(node, list):
        return "[" + ", ".join(to_json(v) for v in node) + "]"
    return json.dumps(node, ensure_ascii=False)


@cache
def _base_text(name: str) -> str:
    return (SPECS / name).read_text(encoding="utf-8")


def load_base(name: str) -> Any:
    return json.loads(_base_text(name))


def stack_for(base: str) -> Settings:
    """The fixed stack a mutant of ``base`` is checked against: the base's region, its data buckets, and the
    external teachers it names as the ones the stack's training role may invoke (as ``stratos run`` deploys it)."""
    doc = load_base(base)
    external = (doc.get("candidates") or {}).get("external_teachers") or []
    return Settings(
        region=doc["constraints"]["region"],
        specs_bucket=SPECS_BUCKET,
        artifacts_bucket=ARTIFACTS_BUCKET,
        data_buckets=DATA_BUCKETS,
        bedrock_teachers=tuple(t["model_id"] for t in external if t.get("kind") == "bedrock"),
        teacher_endpoints=tuple(t["endpoint_name"] for t in external if t.get("kind") == "sagemaker-endpoint"),
    )


def walk(node: Any, prefix: Path_ = ()) -> list[tuple[Path_, Any]]:
    """Every ``(path, value)`` under ``node``, ``node`` itself first."""
    out = [(prefix, node)]
    if isinstance(node, Pairs | dict):
        for key, value in node if isinstance(node, Pairs) else node.items():
            out += walk(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += walk(value, (*prefix, i))
    return out


def lookup(doc: Any, path: Sequence[str | int]) -> tuple[bool, Any]:
    """``(exists, value)`` of ``path`` in a document (markers included)."""
    node = doc
    for part in path:
        if isinstance(node, Pairs):
            node = dict(node)
        in_dict = isinstance(node, dict) and isinstance(part, str) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_dict or in_list):
            return False, None
        node = node[part]
    return True, node


def _set(doc: Any, path: Path_, value: Any) -> None:
    parent = lookup(doc, path[:-1])[1]
    parent[path[-1]] = value


# -----------------------------------------------------------------------------------------------------------
# The spec's JSON Schema says which keys are required and which objects take no other keys.


@cache
def _schema() -> dict[str, Any]:
    return spec_json_schema()


def _resolve(node: dict[str, Any] | None, value: Any) -> dict[str, Any] | None:
    """Follow ``$ref`` and pick the ``anyOf``/``oneOf`` member ``value`` is meant as (tagged by ``source``)."""
    for _ in range(8):
        if node is None:
            return None
        if "$ref" in node:
            node = _schema()["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        elif "anyOf" in node or "oneOf" in node:
            members = [_resolve(m, value) for m in node.get("anyOf", node.get("oneOf", []))]
            wanted = "object" if isinstance(value, dict) else "array" if isinstance(value, list) else None
            typed = [m for m in members if m and m.get("type") == wanted] or [m for m in members if m]
            if wanted == "object" and isinstance(value, dict):
                tag = value.get("source")
                typed = [m for m in typed if m.get("properties", {}).get("source", {}).get("const") == tag] or typed
            node = typed[0] if typed else None
        else:
            return node
    return node


def schema_at(doc: Any, path: Path_) -> dict[str, Any] | None:
    """The schema of the object or value at ``path`` of a base document."""
    node = _resolve(_schema(), doc)
    value = doc
    for part in path:
        if node is None:
            return None
        if isinstance(part, int):
            child = node.get("items")
        else:
            child = node.get("properties", {}).get(part)
            if child is None and isinstance(node.get("additionalProperties"), dict):
                child = node["additionalProperties"]
        value = lookup(value, (part,))[1]
        node = _resolve(child, value)
    return node


# -----------------------------------------------------------------------------------------------------------
# Mutations.


def mutate(choose: Choose, base: str | None = None) -> Mutant:
    """One mutant of a base spec (``base`` or one chosen), its kind chosen from :data:`KINDS`."""
    name = base or choose(BASES)
    doc = load_base(name)
    kind = choose(KINDS)
    if kind == "replace":
        leaves = [(p, v) for p, v in walk(doc) if p and not isinstance(v, dict | list)]
        path, original = choose(leaves)
        nasty = choose(NASTY)
        _set(doc, path, nasty.value)
        must = nasty.must_reject(path, original)
        return Mutant(name, kind, nasty.label, path, doc, must, nasty.schema_expressible, nasty.whole_document)
    if kind == "delete":
        keys = [p for p, _ in walk(doc) if p and isinstance(p[-1], str)]
        path = choose(keys)
        parent = lookup(doc, path[:-1])[1]
        del parent[path[-1]]
        required = path[-1] in ((schema_at(load_base(name), path[:-1]) or {}).get("required") or [])
        return Mutant(name, kind, "delete a key", path, doc, required, True)
    if kind == "add":
        objects = [p for p, v in walk(doc) if isinstance(v, dict)]
        parent_path = choose(objects)
        key = choose(UNKNOWN_KEYS)
        lookup(doc, parent_path)[1][key] = 1
        closed = (schema_at(load_base(name), parent_path) or {}).get("additionalProperties") is False
        return Mutant(name, kind, f"add key {key!r}", (*parent_path, key), doc, closed, True)
    if kind == "duplicate-key":
        objects = [(p, v) for p, v in walk(doc) if isinstance(v, dict) and v]
        parent_path, obj = choose(objects)
        key = choose(sorted(obj))
        items = list(obj.items())
        at = [k for k, _ in items].index(key)
        second = copy.deepcopy(obj[key]) if choose((True, False)) else 0  # the same value, or another one
        pairs = Pairs([*items[: at + 1], (key, second), *items[at + 1 :]])
        if parent_path:
            _set(doc, parent_path, pairs)
        else:
            doc = pairs
        return Mutant(name, kind, "a key twice", (*parent_path, key), doc, True, False)
    if kind == "duplicate-item":
        lists = [(p, v) for p, v in walk(doc) if isinstance(v, list) and v]
        role = choose(("teachers", "students"))
        if not any(p[:1] == ("candidates",) for p, _ in lists):  # no candidates: write a list with a repeat
            doc["candidates"] = {role: ["qwen2.5-0.5b-instruct"]}
            lists.append((("candidates", role), doc["candidates"][role]))
        list_path, items = choose(lists)
        items.append(copy.deepcopy(choose(items)))
        return Mutant(name, kind, "a list item twice", (*list_path, len(items) - 1), doc, True, True)
    # data-uri: a data URI (a generator spec's data becomes JSONL first) set to an S3 URI nasty.
    uris = [n for n in NASTY if n.label.startswith("uri:")]
    nasty = choose(uris)
    if doc["data"]["source"] == "generator":
        good = f"s3://{DATA_BUCKET}/datasets/mahjong/"
        doc["data"] = {"source": "jsonl", "format": "chat", "train_uri": f"{good}train.jsonl"}
        doc["data"]["eval_uri"] = f"{good}eval.jsonl"
    fields = [p for p, v in walk(doc) if p[:1] == ("data",) and isinstance(v, str) and v.startswith("s3://")]
    path = choose(fields)
    _set(doc, path, nasty.value)
    return Mutant(name, "data-uri", nasty.label, path, doc, nasty.must_reject(path, ""), nasty.schema_expressible)


# -----------------------------------------------------------------------------------------------------------
# The judge.


def parse_path(text: str) -> Path_ | None:
    """``a.b[0]["odd key"]`` as ``("a", "b", 0, "odd key")``; None when it is not a path FieldError writes."""
    parts: list[str | int] = []
    i = 0
    decoder = json.JSONDecoder()
    while i < len(text):
        if text[i] == "[":
            if text.startswith('["', i):
                try:
                    key, end = decoder.raw_decode(text, i + 1)
                except json.JSONDecodeError:
                    return None
                if not text.startswith("]", end):
                    return None
                parts.append(key)
                i = end + 1
            else:
                end = text.find("]", i)
                if end < 0 or not text[i + 1 : end].isdigit():
                    return None
                parts.append(int(text[i + 1 : end]))
                i = end + 1
        else:
            if parts and text[i] != ".":
                return None
            i += 1 if parts else 0
            end = min([j for j in (text.find(".", i), text.find("[", i)) if j >= 0], default=len(text))
            if end == i:
                return None
            parts.append(text[i:end])
            i = end
    return tuple(parts) if parts else None


Outcome = Literal["accepted-valid", "accepted-invalid", "rejected", "crash"]


@dataclass
class Verdict:
    """What the validator did with a mutant, and what was wrong with its answer."""

    outcome: Outcome
    errors: tuple[FieldError, ...] = ()
    unnamed: list[FieldError] = field(default_factory=list)  # path not the mutated field, its parent or a sibling
    unsane: list[FieldError] = field(default_factory=list)  # a part over its cap, internal text, not UTF-8-able
    crash: str = ""


def format_path(parts: Sequence[str | int]) -> str:
    """``a.b[0]["odd key"]``: how FieldError writes a path."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text


def names_the_field(mutant: Mutant, error: FieldError) -> bool:
    """The error's path is a real path of the mutant that names the mutated field, one of its siblings (a
    cross-field rule of the same object) or its parent; ``<root>`` only for a whole-document mutation. A path
    cut at its 200-character cap must begin the mutated field's path."""
    if error.path == "<root>":
        return mutant.whole_document
    if len(error.path) == 200 and error.path.endswith("..."):
        return format_path(mutant.path).startswith(error.path[:-3])
    parts = parse_path(error.path)
    if parts is None:
        return False
    parent = mutant.path[:-1]
    if parts[: len(parent)] != parent:
        return False
    exists, _ = lookup(mutant.doc, parts)
    if exists or parts == mutant.path:  # the mutated field itself, even deleted (its default then fails)
        return True
    # A missing field or the unknown key itself: its object must exist.
    parent_exists, node = lookup(mutant.doc, parts[:-1])
    return parent_exists and isinstance(node, dict) and error.value == "<missing>"


def sane(error: FieldError) -> bool:
    text = str(error)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return (
        len(error.path) <= 200
        and len(error.value) <= 80
        and len(error.reason) <= 300
        and len(text) <= 600
        and bool(error.reason)
        and not any(phrase in text for phrase in INTERNAL_PHRASES)
    )


def judge(mutant: Mutant) -> Verdict:
    """``parse_spec`` then ``deployment_checks`` (:func:`stack_for`) on the mutant, sorted into a Verdict."""
    try:
        spec = parse_spec(mutant.text, source=f"{mutant.base} ({mutant.label})")
        deployment_checks(spec, stack_for(mutant.base), mutant.base)
    except SpecValidationError as exc:
        errors = exc.errors
        return Verdict(
            "rejected",
            errors,
            unnamed=[e for e in errors if not names_the_field(mutant, e)],
            unsane=[e for e in errors if not sane(e)],
        )
    except Exception as exc:  # counting crashes is the point
        return Verdict("crash", crash=f"{type(exc).__name__}: {str(exc)[:200]}")
    return Verdict("accepted-invalid" if mutant.must_reject else "accepted-valid")
