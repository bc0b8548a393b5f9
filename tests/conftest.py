"""Shared fixtures. Paths are resolved from the repository root so tests run from any directory."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO / "events"
SPECS = EVENTS / "specs"
#: GSM8K and other shared data live beside the repository (../shared/data); tests needing it skip without it.
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def isolated_stratos_home() -> Iterator[Path]:
    """Every test session gets its own empty ``STRATOS_HOME``: what the user's local runs left in ``~/.stratos``
    (run records that calibrate `stratos plan`, a measured machine profile, endpoints) never changes a result."""
    home = Path(tempfile.mkdtemp(prefix="stratos-test-home-"))
    before = os.environ.get("STRATOS_HOME")
    os.environ["STRATOS_HOME"] = str(home)
    yield home
    if before is None:
        os.environ.pop("STRATOS_HOME", None)
    else:
        os.environ["STRATOS_HOME"] = before
    shutil.rmtree(home, ignore_errors=True)


def offline_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **extra: str) -> None:
    """Fake credentials and no AWS config or credentials files (plus ``extra`` variables): nothing a test does with
    boto3 may reach AWS or read the machine's profile."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        **extra,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def load_event(name: str) -> Any:
    """A sample event from events/ (the same files `sam local invoke` would use)."""
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


@pytest.fixture
def mahjong_spec_doc() -> dict[str, Any]:
    return json.loads((SPECS / "mahjong-winning-tiles.json").read_text(encoding="utf-8"))


@pytest.fixture
def gsm8k_data_dir() -> Path:
    path = SHARED_DATA / "gsm8k"
    if not (path / "train.jsonl").exists():
        pytest.skip(f"GSM8K not found at {path} (../shared/data is absent on this machine)")
    return path
