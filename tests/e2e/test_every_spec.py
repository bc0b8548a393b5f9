"""Every example spec under ``events/specs/`` runs through ``stratos run`` (tiny models, the real ASL, handlers and
training container), so a documented example cannot silently stop working."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratos_cli.local.run import LocalRunOptions, run_local
from tests.conftest import SPECS
from tests.e2e.test_local_run import TINY_SOURCES  # tiny config-built stand-ins for every local catalog model

TINY_OVERRIDES = {
    "max_steps": "2",
    "train_size": "16",
    "eval_size": "4",
    "max_new_tokens": "8",
    "probe_size": "4",
    "bf16": "false",
    "logging_steps": "1",
    "extra_eval": "false",
}
#: GSM8K's file format, a few rows: the builtin-dataset specs read `train.jsonl` / `test.jsonl` from --data.
GSM8K_ROWS = [
    {"question": f"Tom has {a} apples and buys {b} more. How many apples does he have?", "answer": f"#### {a + b}"}
    for a, b in [(3, 4), (6, 2), (10, 5), (7, 7), (1, 8), (2, 9)]
]


@pytest.fixture(scope="module")
def gsm8k_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gsm8k")
    for name in ("train.jsonl", "test.jsonl"):
        (folder / name).write_text("".join(json.dumps(row) + "\n" for row in GSM8K_ROWS * 4), encoding="utf-8")
    return folder


def _shipped_data(data: dict[str, str]) -> Path | None:
    """A JSONL spec's files ship in ``events/data/<its S3 folder>`` (e.g. ``.../datasets/word-forms/train.jsonl``
    in ``events/data/word-forms``), the folder the README passes as ``--data``."""
    if data.get("source") != "jsonl":
        return None
    folder = SPECS.parent / "data" / data["train_uri"].rsplit("/", 2)[-2]
    assert (folder / data["eval_uri"].rsplit("/", 1)[-1]).is_file(), f"no shipped data for {data} in {folder}"
    return folder


@pytest.mark.parametrize("spec", sorted(SPECS.glob("*.json")), ids=lambda p: p.name)
def test_example_spec_runs_end_to_end(spec: Path, tmp_path: Path, gsm8k_dir: Path) -> None:
    doc = json.loads(spec.read_text(encoding="utf-8"))
    data = {"builtin": gsm8k_dir, "jsonl": _shipped_data(doc["data"])}.get(doc["data"]["source"])
    options = LocalRunOptions(spec_path=spec, data_dir=data, serve=False, home=tmp_path / "home")
    options.model_sources = dict(TINY_SOURCES)
    options.overrides.update(TINY_OVERRIDES)
    states: list[str] = []
    result = run_local(options, on_state=states.append)
    assert result.status == "SUCCEEDED", (result.error, result.reason, states)
    assert f":{doc['constraints']['region']}:" in result.execution_arn
    assert result.plan and result.plan["student"] in TINY_SOURCES
    wanted = doc["distillation"]["mode"]
    if wanted != "auto":
        assert result.mode == wanted
    assert result.report and Path(result.report).exists()
