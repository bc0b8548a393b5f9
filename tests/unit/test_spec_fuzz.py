"""Fuzzing the spec validator with mutated example specs (issue 14, part 4: "a validator that names every field").

Each mutant is one valid ``events/specs/*.json`` with one nasty change (see ``tests/helpers/spec_mutants.py``).
For every mutant, ``parse_spec`` and ``deployment_checks`` either accept it or raise SpecValidationError; a
mutant the change makes invalid is rejected; every error names a real path at the mutated field (or its parent
or a sibling: cross-field rules), ``<root>`` only for a whole-document problem; every message stays within its
caps and says nothing about Python. ``stratos validate`` agrees with ``parse_spec``, and the JSON Schema rejects
what it can express and never more than the parser. Derandomized, so CI sees the same examples every run.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratos.errors import SpecValidationError
from stratos.pipeline.validate import deployment_checks
from stratos.spec import data_location_errors, parse_data_location, parse_spec, spec_json_schema
from stratos_cli.cli import main as cli_main
from tests.helpers.spec_mutants import (
    ARTIFACTS_BUCKET,
    BASES,
    DATA_BUCKETS,
    NASTY,
    Mutant,
    Raw,
    judge,
    load_base,
    mutate,
    names_the_field,
    parse_path,
    stack_for,
    to_json,
    walk,
)

FUZZ = settings(
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def mutants(draw: Any) -> Mutant:
    return mutate(lambda options: draw(st.sampled_from(options)))


def _describe(mutant: Mutant, verdict: Any) -> str:
    errors = "; ".join(str(e) for e in verdict.errors)
    return f"{mutant.base}: {mutant.kind} {mutant.label} at {mutant.path}: {verdict.outcome} {verdict.crash} {errors}"


def _assert_sound(mutant: Mutant) -> None:
    verdict = judge(mutant)
    detail = _describe(mutant, verdict)
    assert verdict.outcome != "crash", detail
    assert verdict.outcome != "accepted-invalid", detail
    assert not verdict.unnamed, detail
    assert not verdict.unsane, detail


def test_every_example_passes_the_stack_it_is_fuzzed_against():
    """The oracle's ground: unmutated, every base spec is valid for its stack."""
    for base in BASES:
        deployment_checks(parse_spec(to_json(load_base(base))), stack_for(base), base)


@settings(FUZZ, max_examples=2000)
@given(mutants())
def test_mutated_specs_are_accepted_or_rejected_naming_the_field(mutant):
    _assert_sound(mutant)


# Every nasty value, deterministically, at every kind of field of every example: a number, a text, an
# enum, a bool, a list item, the version and each data URI (hypothesis may not draw each pairing).
def _representative_leaves(base: str) -> list[tuple[Any, ...]]:
    leaves = [p for p, v in walk(load_base(base)) if p and not isinstance(v, dict | list)]
    wanted = {("task_id",), ("task", "metric"), ("constraints", "latency", "p50_ms"), ("data", "seed")}
    wanted |= {("constraints", "region"), ("redistill", "on_new_data"), ("constraints", "instance_families", 0)}
    wanted |= {("candidates", "teachers", 0), ("description",), ("data", "source"), ("spec_version",)}
    wanted |= {("deployment", "instance_count"), ("objective", "accuracy"), ("distillation", "domain_notes")}
    return [p for p in leaves if p in wanted or p[-1] in ("uri", "train_uri", "eval_uri")]


MATRIX = [(base, path, nasty) for base in BASES for path in _representative_leaves(base) for nasty in NASTY]


def test_nasty_value_matrix_is_handled_everywhere():
    failures, outcomes = [], Counter()
    for base, path, nasty in MATRIX:
        doc = load_base(base)
        original = doc
        for part in path[:-1]:
            original = original[part]
        before, original[path[-1]] = original[path[-1]], nasty.value
        must = nasty.must_reject(path, before)
        mutant = Mutant(base, "replace", nasty.label, path, doc, must, nasty.schema_expressible, nasty.whole_document)
        verdict = judge(mutant)
        outcomes[verdict.outcome] += 1
        if verdict.outcome in ("crash", "accepted-invalid") or verdict.unnamed or verdict.unsane:
            failures.append(_describe(mutant, verdict))
    assert not failures, "\n".join(failures[:20])
    assert outcomes["rejected"] > len(MATRIX) // 2


# ---------------------------------------------------------------------------------------------------------
# stratos validate agrees with parse_spec (+ the data confinement of --data-buckets).

LOCATIONS = ",".join([f"{ARTIFACTS_BUCKET}/data/", *DATA_BUCKETS])


@settings(FUZZ, max_examples=150)
@given(mutants())
def test_cli_validate_agrees_with_parse_spec(tmp_path_factory, mutant):
    raw = mutant.text.encode("utf-8", "surrogatepass")  # what a file holds: a raw lone surrogate is not UTF-8
    try:
        spec = parse_spec(raw)
        parsed, accepted = True, not data_location_errors(spec, [parse_data_location(x) for x in LOCATIONS.split(",")])
    except SpecValidationError:
        parsed = accepted = False
    path = Path(tmp_path_factory.mktemp("cli")) / "spec.json"
    path.write_bytes(raw)
    for args, ok in ((["--data-buckets", LOCATIONS], accepted), ([], parsed)):
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = cli_main(["validate", str(path), *args])
        assert code == (0 if ok else 1), err.getvalue()
        assert "Traceback" not in err.getvalue()


# ---------------------------------------------------------------------------------------------------------
# The JSON Schema rejects what it can express, and nothing the parser accepts.

try:
    import jsonschema
except ImportError:  # a dev dependency; the parser's own checks above run without it
    jsonschema = None
VALIDATOR = jsonschema.Draft202012Validator(spec_json_schema()) if jsonschema else None
needs_jsonschema = pytest.mark.skipif(jsonschema is None, reason="jsonschema is not installed (pip install -e .[dev])")


def _no_constant(name: str) -> Any:
    raise ValueError(name)


@needs_jsonschema
@settings(FUZZ, max_examples=1000)
@given(mutants())
def test_json_schema_rejects_what_it_can_express(mutant):
    if mutant.kind == "duplicate-key":
        return  # a JSON object has one value per key: nothing a schema can see
    try:
        doc = json.loads(mutant.text, parse_constant=_no_constant)
    except ValueError:
        return  # NaN, Infinity, a 5,001-digit integer: not JSON a schema validator reads
    schema_ok = VALIDATOR.is_valid(doc)
    try:
        parse_spec(mutant.text)
        parser_ok = True
    except SpecValidationError:
        parser_ok = False
    what = f"{mutant.kind} {mutant.label} at {mutant.path}"
    if not schema_ok:
        assert not parser_ok, f"the schema refuses what the parser accepts: {what}"
    if mutant.must_reject and mutant.schema_expressible:
        assert not schema_ok, f"the schema could refuse but accepts: {what}"


# ---------------------------------------------------------------------------------------------------------
# The gaps the fuzz found, one test each.


def _with(doc: Any, path: tuple[Any, ...], raw: str) -> str:
    doc = copy.deepcopy(doc)
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = Raw(raw)
    return to_json(doc)


def _errors(text: str) -> list[tuple[str, str, str]]:
    with pytest.raises(SpecValidationError) as caught:
        parse_spec(text)
    return [(e.path, e.value, e.reason) for e in caught.value.errors]


GSM8K = load_base("gsm8k.json")


def test_a_duplicate_key_is_named_where_it_is():
    text = _with(GSM8K, ("constraints", "latency"), '{"p50_ms": 4000, "p50_ms": 4000}')
    [(path, value, reason)] = _errors(text)
    assert path == "constraints.latency.p50_ms" and value == "4000"
    assert reason.startswith("duplicate key 'p50_ms'")
    # The document's own keys too, and an object written twice shows as {...}.
    text = to_json(GSM8K)[:-1] + ', "task": {"kind": "x"}}'
    assert _errors(text) == [("task", "{...}", "duplicate key 'task': written twice in one object; keep one")]


@pytest.mark.parametrize("raw", ['"\\ud800"', '"ok \\udfff"', '"\ud800"'])
def test_a_lone_surrogate_is_named_where_it_is(raw):
    """A lone UTF-16 surrogate used to reach pydantic's JSON parser and come back as ``<root>: Invalid JSON``."""
    [(path, _, reason)] = _errors(_with(GSM8K, ("description",), raw))
    assert path == "description" and "unpaired UTF-16 surrogate" in reason
    [(path, value, reason)] = _errors(_with(GSM8K, ("candidates",), '{"\\udc00x": 1}'))
    assert path == 'candidates["\\udc00x"]' and reason.startswith("the key holds an unpaired UTF-16 surrogate")
    assert value == "'\\udc00x'"


def test_a_bad_model_id_key_is_named_as_the_key():
    """Pydantic marks a rejected dict key ``<key>.[key]``; the user wrote the key, so the path ends there."""
    text = _with(GSM8K, ("candidates", "accuracy_priors"), '{"not an id": 0.5, "[key]": 0.2, "ok": 2}')
    errors = _errors(text)
    assert [(path, value) for path, value, _ in errors] == [
        ('candidates.accuracy_priors["not an id"]', "'not an id'"),
        ('candidates.accuracy_priors["[key]"]', "'[key]'"),
        ("candidates.accuracy_priors.ok", "2"),
    ]
    assert errors[0][2].startswith("must be a model id")


@pytest.mark.parametrize(
    ("data", "value"),
    [('{"source": "csv"}', "'csv'"), ('{"source": 3}', "3"), ('{"name": "gsm8k"}', "<missing>")],
)
def test_the_data_source_tag_is_named(data, value):
    """A wrong or missing tag used to be ``data: Input tag 'csv' found using 'source' does not match ...``."""
    [(path, got, reason)] = _errors(_with(GSM8K, ("data",), data))
    assert (path, got, reason) == ("data.source", value, "must be one of 'generator', 'builtin', 'jsonl'")


@needs_jsonschema
def test_the_schema_says_ids_are_unique_and_prior_keys_are_model_ids():
    for doc in (
        {**GSM8K, "candidates": {"students": ["a", "a"]}},
        {**GSM8K, "candidates": {"accuracy_priors": {"not an id": 0.5}}},
        {**GSM8K, "constraints": {**GSM8K["constraints"], "instance_families": []}},
        {**GSM8K, "constraints": {**GSM8K["constraints"], "instance_allowlist": ["ml.g5.xlarge"] * 2}},
    ):
        assert not VALIDATOR.is_valid(doc)
        with pytest.raises(SpecValidationError):
            parse_spec(json.dumps(doc))
    # What the parser accepts, the schema does too: a leading "ml." on a family is dropped on parse.
    doc = {**GSM8K, "constraints": {**GSM8K["constraints"], "instance_families": ["ml.g5", "g6"]}}
    assert VALIDATOR.is_valid(doc)
    assert parse_spec(json.dumps(doc)).constraints.instance_families == ["g5", "g6"]


def test_parse_path_reads_what_field_error_writes():
    assert parse_path('candidates.accuracy_priors["a b"].x[3]') == ("candidates", "accuracy_priors", "a b", "x", 3)
    assert parse_path("constraints.latency.p50_ms") == ("constraints", "latency", "p50_ms")
    assert parse_path("a..b") is None and parse_path("a[x]") is None


def test_names_the_field_refuses_a_wrong_or_invented_path():
    from stratos.errors import FieldError

    doc = load_base("gsm8k.json")
    mutant = Mutant("gsm8k.json", "replace", "x", ("constraints", "latency", "p50_ms"), doc, True, True)
    assert names_the_field(mutant, FieldError("constraints.latency.p50_ms", "1", "r"))
    assert names_the_field(mutant, FieldError("constraints.latency", "1", "r"))  # the parent
    assert not names_the_field(mutant, FieldError("<root>", "1", "r"))
    assert not names_the_field(mutant, FieldError("constraints", "1", "r"))  # above the parent
    assert not names_the_field(mutant, FieldError("task_id", "1", "r"))  # elsewhere
    assert not names_the_field(mutant, FieldError("constraints.latency.p50_ms.x", "1", "r"))  # not in the doc


# ---------------------------------------------------------------------------------------------------------
# The corpus of specs that parse but that a stack must refuse (tests/data/invalid_specs/stack/): each names
# its field in deployment_checks, and `stratos validate --data-buckets` refuses the data ones too.

STACK_CORPUS = Path(__file__).resolve().parents[1] / "data" / "invalid_specs" / "stack"
STACK_EXPECTED: dict[str, str] = json.loads((STACK_CORPUS / "expected_paths.json").read_text())


def test_every_stack_corpus_file_has_an_expectation():
    files = {p.name for p in STACK_CORPUS.glob("*.json")} - {"expected_paths.json", "stack.json"}
    assert files == set(STACK_EXPECTED)


@pytest.mark.parametrize("name", sorted(STACK_EXPECTED))
def test_stack_corpus_spec_is_refused_naming_the_field(name):
    from stratos.pipeline.settings import Settings

    stack = Settings.model_validate(json.loads((STACK_CORPUS / "stack.json").read_text()))
    raw = (STACK_CORPUS / name).read_bytes()
    spec = parse_spec(raw, source=name)  # a valid spec...
    with pytest.raises(SpecValidationError) as caught:
        deployment_checks(spec, stack, name)  # ...this stack may not run
    assert [e.path for e in caught.value.errors] == [STACK_EXPECTED[name]]
    if STACK_EXPECTED[name].startswith("data."):
        locations = ",".join([f"{stack.artifacts_bucket}/data/", *stack.data_buckets])
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            assert cli_main(["validate", str(STACK_CORPUS / name), "--data-buckets", locations]) == 1
        assert STACK_EXPECTED[name] in err.getvalue()
