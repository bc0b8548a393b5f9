"""The example user data shipped in events/data is what its build script writes, and its splits are disjoint."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORD_FORMS = REPO / "events" / "data" / "word-forms"


def _build_module():
    spec = importlib.util.spec_from_file_location("word_forms_build", WORD_FORMS / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_word_forms_files_are_the_build_output():
    built = _build_module().build()
    for split, rows in built.items():
        shipped = [json.loads(line) for line in (WORD_FORMS / f"{split}.jsonl").read_text().splitlines()]
        assert shipped == rows, f"{split}.jsonl differs from build.py's output: rerun build.py"


def test_word_forms_splits_share_no_question_and_hold_every_stratum():
    module = _build_module()
    built = module.build()
    questions = {split: {row["messages"][2]["content"] for row in rows} for split, rows in built.items()}
    assert not questions["train"] & questions["eval"]
    for relation, kind, pairs in module.STRATA:
        template = module.RELATIONS[relation][0]
        for split in ("train", "eval"):
            held = [w for w in pairs if template.format(w) in questions[split]]
            assert held, f"{split} has no {kind} {relation} example"
        assert sum(template.format(w) in questions["eval"] for w in pairs) == round(len(pairs) * module.EVAL_SHARE)


def test_word_forms_records_load_as_the_jsonl_task():
    from stratos_train.tasks import get_task

    task = get_task(
        "jsonl",
        format="chat",
        metric="exact-match",
        train=str(WORD_FORMS / "train.jsonl"),
        eval=str(WORD_FORMS / "eval.jsonl"),
    )
    train, held_out = task.examples("train"), task.examples("eval")
    assert (len(train), len(held_out)) == (346, 87)
    example = held_out[0]
    assert len(task.prompt(example)) == 3  # the worked example's two turns, then the question
    assert task.score(example, f"Answer: {example.answer}").correct
    assert not task.score(example, "Answer: nothing").correct
