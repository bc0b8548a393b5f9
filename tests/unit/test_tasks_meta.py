"""Every task of the contract is implemented, specs select tasks, and the complexity priors are measured."""

from __future__ import annotations

import json

import pytest

from stratos.spec import validate_spec_document
from stratos.tasks_meta import TASK_NAMES, TASKS, task_meta, task_name
from stratos_train.tasks import TASK_NAMES as IMPLEMENTED
from stratos_train.tasks import get_task
from stratos_train.tasks.mahjong import generate_examples
from tests.conftest import SPECS


def test_every_contract_task_is_implemented() -> None:
    """The facts are written once (stratos_contract.tasks); the container implements each named task."""
    assert TASK_NAMES == IMPLEMENTED
    for name in TASKS:
        assert get_task(name, **({"format": "chat"} if name == "jsonl" else {})).name == name


def test_spec_data_sections_select_tasks() -> None:
    for path in sorted(SPECS.glob("*.json")):
        spec = validate_spec_document(json.loads(path.read_text(encoding="utf-8")))
        meta = task_meta(task_name(spec.data))
        assert meta.source == spec.data.source
        assert meta.kind in (None, spec.task.kind)
        assert meta.metric in (None, spec.task.metric)


def test_unknown_task() -> None:
    with pytest.raises(KeyError, match="unknown task 'chess'"):
        task_meta("chess")


def test_mahjong_prior_is_the_generators_mean() -> None:
    examples = generate_examples(2000, 1, "train").examples
    mean = sum(ex.meta["arrangements"] for ex in examples) / len(examples)
    prior = task_meta("mahjong-winning-tiles").complexity_prior
    assert prior is not None and mean == pytest.approx(prior, rel=0.05)
