"""Names: within service limits for any key, deterministic, collision-free where truncation bites."""

from __future__ import annotations

import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratos.naming import (
    EXECUTION_NAME_RE,
    SAGEMAKER_NAME_RE,
    SpecIdentity,
    compose,
    endpoint_name_for,
    run_names,
    slugify,
)

BUCKET = "stratos-specs-123456789012-us-east-1"


def _assert_valid(names) -> None:
    for field in ("run_id", "training_job_name", "model_name", "endpoint_config_name", "endpoint_name"):
        value = getattr(names, field)
        assert len(value) <= 63 and SAGEMAKER_NAME_RE.match(value), (field, value)
    assert len(names.execution_name) <= 80 and EXECUTION_NAME_RE.match(names.execution_name)
    assert names.run_id == names.run_id.lower()


def test_field_case_underscores_dots_colons():
    """`distill-<team>_<model>-<timestamp>` style keys break SageMaker's pattern; ours never do."""
    key = "specs/team_a/Qwen2.5-7B-Instruct_to_Qwen2.5-0.5B (v2).json"
    names = run_names(SpecIdentity(bucket=BUCKET, key=key, version_id="v1"), "qwen-distill")
    _assert_valid(names)
    assert names.run_id.startswith("team-a-qwen2-5-7b-instruct-to-qwen2-5-0-5b-v2-")


def test_truncated_keys_do_not_collide():
    """Two long keys that differ only after the truncation point get different names."""
    stem = "specs/" + "very-long-team-name/" * 5
    a = run_names(SpecIdentity(bucket=BUCKET, key=stem + "spec-a.json", version_id="1"), "t")
    b = run_names(SpecIdentity(bucket=BUCKET, key=stem + "spec-b.json", version_id="1"), "t")
    assert a.run_id[:40] == b.run_id[:40]  # the readable part was cut to the same prefix
    for field in ("run_id", "execution_name", "training_job_name", "model_name", "endpoint_config_name"):
        assert getattr(a, field) != getattr(b, field)


def test_same_identity_same_names_and_new_version_new_names():
    ident = SpecIdentity(bucket=BUCKET, key="specs/x.json", version_id="v1", etag="e")
    assert run_names(ident, "x") == run_names(SpecIdentity(**ident.model_dump()), "x")
    assert run_names(ident, "x") != run_names(ident.model_copy(update={"version_id": "v2"}), "x")
    assert run_names(ident, "x").run_id != run_names(ident.with_revision("redistill-2026-12-01"), "x").run_id


def test_unversioned_bucket_uses_etag():
    a = SpecIdentity(bucket=BUCKET, key="specs/x.json", version_id="null", etag='"abc"')
    b = SpecIdentity(bucket=BUCKET, key="specs/x.json", version_id=None, etag="abc")
    c = SpecIdentity(bucket=BUCKET, key="specs/x.json", version_id=None, etag="def")
    assert a.digest() == b.digest() != c.digest()


def test_attempts_get_fresh_job_and_config_names():
    ident = SpecIdentity(bucket=BUCKET, key="specs/x.json", version_id="v1")
    first, second = run_names(ident, "x", attempt=0), run_names(ident, "x", attempt=1)
    assert first.run_id == second.run_id
    assert first.training_job_name != second.training_job_name
    assert first.endpoint_config_name != second.endpoint_config_name
    assert first.endpoint_name == second.endpoint_name
    _assert_valid(second)
    with pytest.raises(ValueError):
        run_names(ident, "x", attempt=100)


def test_endpoint_name_stable_per_task():
    assert endpoint_name_for("mahjong-winning-tiles") == "stratos-mahjong-winning-tiles"
    assert endpoint_name_for("x", "my-endpoint") == "my-endpoint"
    assert len(endpoint_name_for("a" * 48)) <= 63


def test_symbol_only_and_non_latin_keys_still_get_valid_names():
    for key in ("specs/)))(((.json", "specs/中文任务.json", "specs/-.json", "specs/" + "é" * 400 + ".json"):
        _assert_valid(run_names(SpecIdentity(bucket=BUCKET, key=key, version_id="1"), "t"))


def test_compose_only_shortens_the_readable_part():
    name = compose("stratos", "x" * 200, "abcdefghijkl", "a3")
    assert len(name) == 63 and name.startswith("stratos-x") and name.endswith("-abcdefghijkl-a3")
    with pytest.raises(ValueError):
        compose("p" * 60, "x", "abcdefghijkl")


def test_slugify():
    assert slugify("Team A/Spec+V2 (1) é", 100) == "team-a-spec-v2-1-e"
    assert slugify("a--b", 2) == "a"


@settings(max_examples=500, deadline=None)
@given(st.text(min_size=1, max_size=300), st.text(max_size=40) | st.none(), st.integers(0, 99))
def test_adversarial_keys_always_valid(key_tail, version, attempt):
    ident = SpecIdentity(bucket=BUCKET, key=("specs/" + key_tail)[:1024], version_id=None, etag="e")
    if version is not None and all(0x20 <= ord(c) < 0x7F and c not in '"\\' for c in version):
        ident = ident.model_copy(update={"version_id": version})
    _assert_valid(run_names(ident, "t", attempt=attempt))


def test_no_collisions_on_1e5_near_identical_keys():
    """10^5 keys differing in one character near the end (after truncation) or only in version."""
    rng = random.Random(0)
    base = "specs/" + "shared-team-prefix/" * 4 + "distill-qwen2.5-7b-to-0.5b-"
    seen: set[str] = set()
    jobs: set[str] = set()
    for i in range(100_000):
        suffix = "".join(rng.choices(string.ascii_letters + string.digits + " _.", k=6))
        key = f"{base}{suffix}-{i}.json" if i % 2 else f"{base}{i:06d}.json"
        version = str(i % 3)
        names = run_names(SpecIdentity(bucket=BUCKET, key=key, version_id=version), "t")
        seen.add(names.run_id)
        jobs.add(names.training_job_name)
    assert len(seen) == 100_000
    assert len(jobs) == 100_000
