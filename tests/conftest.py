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
