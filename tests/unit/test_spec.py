"""The task spec contract: examples parse, bad specs name the field, nothing but validation errors escape."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratos.errors import SpecValidationError
from stratos.spec import (
    DEFAULT_WEIGHTS,
    MAX_SPEC_BYTES,
    DistillationMode,
    GeneratorData,
    TaskSpec,
    parse_spec,
    spec_json_schema,
    validate_spec_document,
)
from stratos_cli.cli import main as cli_main
from tests.conftest import REPO, SPECS

INVALID = REPO / "tests" / "data" / "invalid_specs"
EXPECTED_PATHS: dict[str, str] = json.loads((INVALID / "expected_paths.json").read_text())


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.json")), ids=lambda p: p.name)
def test_example_specs_parse(path):
    spec = parse_spec(path.read_bytes(), source=str(path))
    assert isinstance(spec, TaskSpec)
    weights = spec.objective
    assert weights.accuracy + weights.latency + weights.training_time + weights.cost == pytest.approx(1.0)


def test_mahjong_example_fields(mahjong_spec_doc):
    spec = parse_spec(json.dumps(mahjong_spec_doc))
    assert isinstance(spec.data, GeneratorData)
    assert spec.data.generator == "mahjong-winning-tiles"
    assert spec.distillation.mode is DistillationMode.AUTO
    assert spec.constraints.latency.concurrency == 4
    assert spec.constraints.instance_families == ["g5", "g6", "g6e", "c7i", "m7i"]


def test_every_invalid_spec_has_an_expectation():
    files = {p.name for p in INVALID.glob("*.json")} - {"expected_paths.json"}
    assert files == set(EXPECTED_PATHS)


@pytest.mark.parametrize("name", sorted(EXPECTED_PATHS))
def test_invalid_spec_names_the_field(name, capsys):
    path = INVALID / name
    with pytest.raises(SpecValidationError) as info:
        parse_spec(path.read_bytes(), source=name)
    paths = [e.path for e in info.value.errors]
    assert EXPECTED_PATHS[name] in paths, paths
    for err in info.value.errors:
        assert err.reason and err.value
    # And through the CLI: exit 1, the field named on stderr.
    assert cli_main(["validate", str(path)]) == 1
    assert EXPECTED_PATHS[name] in capsys.readouterr().err


def test_cli_validate_examples_exit_zero(capsys):
    assert cli_main(["validate", *map(str, sorted(SPECS.glob("*.json")))]) == 0
    assert capsys.readouterr().out.count(": OK") == len(list(SPECS.glob("*.json")))


def test_cli_validate_mixed_exit_one_and_reports_each(capsys):
    bad = INVALID / "negative-latency.json"
    assert cli_main(["validate", str(SPECS / "gsm8k.json"), str(bad), "/nonexistent/spec.json"]) == 1
    captured = capsys.readouterr()
    assert "gsm8k.json: OK" in captured.out
    assert "constraints.latency.p50_ms" in captured.err
    assert "cannot read" in captured.err


def test_cli_validate_data_buckets_confines_the_data(capsys):
    """--data-buckets applies ValidateSpec's data confinement: a generator spec reads no S3, gsm8k's prefix must
    lie in a named location, and a malformed location is a usage error (exit 2)."""
    gsm8k, mahjong = str(SPECS / "gsm8k.json"), str(SPECS / "mahjong-winning-tiles.json")
    data_bucket = json.loads((SPECS / "gsm8k.json").read_text())["data"]["uri"].split("/")[2]
    assert cli_main(["validate", mahjong, "--data-buckets", "my-artifacts/data/"]) == 0
    assert cli_main(["validate", gsm8k, "--data-buckets", f"my-artifacts/data/,{data_bucket}"]) == 0
    capsys.readouterr()
    assert cli_main(["validate", gsm8k, "--data-buckets", "s3://my-artifacts/data"]) == 1
    err = capsys.readouterr().err
    assert f"data.uri: bucket '{data_bucket}' is not one this stack reads data from" in err
    assert "allowed: s3://my-artifacts/data/" in err
    with pytest.raises(SystemExit) as usage:
        cli_main(["validate", gsm8k, "--data-buckets", "my-artifacts/../specs/"])
    assert usage.value.code == 2


def test_console_script_installed():
    """`stratos` is a real console command (pip install -e . created it)."""
    exe = REPO / ".venv" / "bin" / "stratos"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "stratos_cli.cli"]
    ok = subprocess.run([*cmd, "validate", str(SPECS / "mahjong-winning-tiles.json")], capture_output=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([*cmd, "validate", str(INVALID / "typo-in-field-name.json")], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "did you mean 'latency'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_schema_is_json_schema(capsys):
    assert cli_main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "Stratos task spec"
    assert schema["additionalProperties"] is False
    assert {"task_id", "task", "data", "constraints"} <= set(schema["required"])
    assert "pattern" in schema["$defs"]["JsonlData"]["properties"]["train_uri"]


def test_schema_validates_examples_with_jsonschema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = spec_json_schema()
    for path in SPECS.glob("*.json"):
        jsonschema.validate(json.loads(path.read_text()), schema)


def test_weights_default_and_normalise(mahjong_spec_doc):
    doc = copy.deepcopy(mahjong_spec_doc)
    doc.pop("objective")
    spec = parse_spec(json.dumps(doc))
    total = sum(DEFAULT_WEIGHTS.values())
    assert spec.objective.accuracy == pytest.approx(DEFAULT_WEIGHTS["accuracy"] / total)
    doc["objective"] = {"accuracy": 2, "cost": 2, "latency": 0, "training_time": 0}
    spec = parse_spec(json.dumps(doc))
    assert (spec.objective.accuracy, spec.objective.cost, spec.objective.latency) == (0.5, 0.5, 0.0)


def test_ml_prefix_on_families_is_dropped(mahjong_spec_doc):
    mahjong_spec_doc["constraints"]["instance_families"] = ["ml.g5", "p4d"]
    assert parse_spec(json.dumps(mahjong_spec_doc)).constraints.instance_families == ["g5", "p4d"]


def test_duplicate_keys_rejected(mahjong_spec_doc):
    text = json.dumps(mahjong_spec_doc)[:-1] + ', "task_id": "other"}'
    with pytest.raises(SpecValidationError, match="duplicate key 'task_id'"):
        parse_spec(text)


def test_oversized_and_non_utf8_rejected():
    with pytest.raises(SpecValidationError, match="larger than"):
        parse_spec(b"{" + b" " * MAX_SPEC_BYTES + b"}")
    with pytest.raises(SpecValidationError, match="UTF-8"):
        parse_spec(b'{"task_id": "\xff"}')


def test_deep_nesting_is_a_validation_error():
    with pytest.raises(SpecValidationError, match="nested"):
        parse_spec("[" * 5000 + "]" * 5000)


def test_spec_is_immutable(mahjong_spec_doc):
    spec = parse_spec(json.dumps(mahjong_spec_doc))
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError on frozen assignment
        spec.task_id = "other"  # type: ignore[misc]


def test_budget_breakdown(mahjong_spec_doc):
    mahjong_spec_doc["deployment"]["instance_count"] = 2
    spec = parse_spec(json.dumps(mahjong_spec_doc))
    split = spec.budget_breakdown(hosting_usd_per_hour=0.1)
    assert split["serving_usd"] == pytest.approx(0.1 * 730 * 1 * 2)
    assert split["training_usd"] == pytest.approx(400 - 146)


# ---------------------------------------------------------------------------------------------------------
# Property-based: no input makes the parser raise anything but SpecValidationError naming a field.

TOP_LEVEL = set(TaskSpec.model_fields)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


def _first_key(path: str) -> str:
    if path.startswith('["'):
        return json.JSONDecoder().raw_decode(path[1:])[0]
    return re.split(r"[.\[]", path, maxsplit=1)[0]


def _check_errors(exc: SpecValidationError) -> None:
    assert exc.errors
    for err in exc.errors:
        assert err.path, "every error names a field path"
        assert err.reason
        unusable_number = err.reason.endswith(("is not a number JSON allows", "for a 64-bit float")) or (
            err.reason.startswith("a number of ")
        )
        if err.path != "<root>" and not unusable_number:  # a bad number is named wherever it is
            key = _first_key(err.path)
            assert key in TOP_LEVEL or err.reason.startswith("unknown field"), err


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_only_validation_errors(value):
    try:
        parse_spec(json.dumps(value))
    except SpecValidationError as exc:
        _check_errors(exc)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_validation_errors(raw):
    try:
        parse_spec(raw)
    except SpecValidationError as exc:
        _check_errors(exc)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += _paths(value, (*prefix, i))
    return out


@st.composite
def mutated_specs(draw):
    base = json.loads((SPECS / draw(st.sampled_from(["mahjong-winning-tiles.json", "gsm8k.json"]))).read_text())
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(base) if p]
        path = draw(st.sampled_from(paths))
        parent = base
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(json_values)
    return base


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_specs())
def test_mutated_specs_only_validation_errors(doc):
    try:
        spec = parse_spec(json.dumps(doc))
    except SpecValidationError as exc:
        _check_errors(exc)
        for err in exc.errors:
            assert err.path != "<root>" or err.reason, "a root error still says why"
    else:
        assert isinstance(spec, TaskSpec)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("", "empty"),
        ("\\d*", "matches the empty string"),
        ("(x)?", "matches the empty string"),
        ("(a)\\1", "not a valid RE2 regular expression (invalid escape sequence: \\1)"),
        ("(?=x)x", "not a valid RE2 regular expression"),
        ("(", "not a valid RE2 regular expression"),
    ],
)
def test_answer_regex_must_be_re2_and_not_match_empty(mahjong_spec_doc, pattern, reason):
    """The scorer runs RE2 (linear time); a pattern matching "" would score every completion correct."""
    doc = copy.deepcopy(mahjong_spec_doc)
    doc["task"] = {"kind": "extraction", "metric": "regex-match", "answer_regex": pattern}
    with pytest.raises(SpecValidationError) as caught:
        validate_spec_document(doc)
    [error] = caught.value.errors
    assert error.path == "task.answer_regex" and reason in error.reason


def test_a_backtracking_pattern_is_linear_time_under_re2(mahjong_spec_doc):
    doc = copy.deepcopy(mahjong_spec_doc)
    doc["task"] = {"kind": "extraction", "metric": "regex-match", "answer_regex": "(a+)+$"}
    uri = "s3://stratos-data-123456789012-us-east-1/datasets/ids"
    doc["data"] = {"source": "jsonl", "format": "chat", "train_uri": f"{uri}/train.jsonl", "eval_uri": f"{uri}/e.jsonl"}
    assert validate_spec_document(doc).task.answer_regex == "(a+)+$"  # accepted: RE2 cannot blow up on it


def test_an_oversized_spec_object_is_invalid_stating_the_limit():
    """ValidateSpec reads the uploaded object: one over the size limit is an invalid spec saying the limit."""
    import boto3
    from moto import mock_aws

    from stratos.aws.artifacts import ArtifactStore
    from stratos.naming import SpecIdentity

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="specs")
        s3.put_object(Bucket="specs", Key="specs/big.json", Body=b" " * (MAX_SPEC_BYTES + 1))
        identity = SpecIdentity(bucket="specs", key="specs/big.json", version_id=None, etag="")
        with pytest.raises(SpecValidationError) as caught:
            ArtifactStore("artifacts", s3_client=s3).read_spec(identity)
    [error] = caught.value.errors
    assert error.path == "<root>" and error.reason == f"a spec may be at most {MAX_SPEC_BYTES:,} bytes"


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("s3://data..bucket/train.jsonl", "not a valid S3 bucket name"),
        ("s3://10.0.0.1/train.jsonl", "IP address"),
        ("s3://xn--data/train.jsonl", "reserves"),
        ("s3://data-bucket/data/../runs/r1/spec.json", "'..' segments"),
        ("s3://data-bucket/data/%2e%2e/runs/spec.json", "percent-encoded"),
        ("s3://data-bucket/train.jsonl?versionId=3", "query"),
        ("s3://data-bucket/data//train.jsonl", "empty segments"),
    ],
)
def test_data_uris_name_one_object_the_way_they_read(mahjong_spec_doc, uri, reason):
    doc = copy.deepcopy(mahjong_spec_doc)
    doc["task"] = {"kind": "extraction", "metric": "exact-match"}
    ok = "s3://data-bucket/data/eval.jsonl"
    doc["data"] = {"source": "jsonl", "format": "chat", "train_uri": uri, "eval_uri": ok}
    with pytest.raises(SpecValidationError) as caught:
        validate_spec_document(doc)
    [error] = caught.value.errors
    assert error.path == "data.train_uri" and reason in error.reason
    doc["data"]["train_uri"] = "s3://data-bucket/data/train.jsonl"
    assert validate_spec_document(doc).data.train_uri == "s3://data-bucket/data/train.jsonl"  # type: ignore[union-attr]


def test_deployment_replaces_tasks_names_task_ids_once_each():
    doc = json.loads((SPECS / "mahjong-winning-tiles.json").read_text())
    ok = validate_spec_document({**doc, "deployment": {"replaces_tasks": ["task-a", "task-b"]}})
    assert ok.deployment.replaces_tasks == ["task-a", "task-b"]
    for bad, reason in ((["task-a", "task-a"], "lists 'task-a' twice"), (["Task A"], "lowercase letters")):
        with pytest.raises(SpecValidationError, match=rf"deployment.replaces_tasks.*{reason}"):
            validate_spec_document({**doc, "deployment": {"replaces_tasks": bad}})


@pytest.mark.parametrize("key", ["datasets/gsm8k/\u0000", "data\tsets/gsm8k/", "datasets\\gsm8k/", "data\u007f/"])
def test_control_characters_and_backslashes_in_s3_keys_are_refused(key):
    doc = json.loads((SPECS / "gsm8k.json").read_text())
    bucket = doc["data"]["uri"].split("/")[2]
    with pytest.raises(SpecValidationError, match="data.uri: .*control characters or backslashes"):
        validate_spec_document({**doc, "data": {**doc["data"], "uri": f"s3://{bucket}/{key}"}})
