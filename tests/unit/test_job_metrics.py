"""JobMetrics is metrics.json: real files round-trip key for key, unmeasured fields stay out of the file, a
misspelt key fails where it is set; and TrainConfig is the one source of the loss and trainer settings.

The files in tests/data/metrics/ are metrics.json as ``run_job`` wrote them (before it filled a JobMetrics) for
three tiny-model runs: auto mode deciding injection with teacher rationales, forced alignment with a teacher
top-k cache and catalog ids, and the closed-loop injection in two rounds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from stratos_contract.metrics import EvalSetScores, JobMetrics, LossPoint
from stratos_train.config import KDLossConfig, TrainConfig

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "metrics"
RUNS = ("injection", "alignment", "closed_loop")


def _raw(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", RUNS)
def test_a_real_metrics_json_round_trips(name: str) -> None:
    raw = _raw(name)
    metrics = JobMetrics.model_validate(raw)
    assert metrics.written() == raw
    assert json.loads(json.dumps(metrics.written(), indent=2, default=str)) == raw


@pytest.mark.parametrize("name", ["injection", "alignment"])
def test_written_keys_keep_the_files_order(name: str) -> None:
    text = (DATA / f"{name}.json").read_text(encoding="utf-8")
    assert json.dumps(JobMetrics.model_validate_json(text).written(), indent=2, default=str) == text


def test_nested_records_are_typed() -> None:
    metrics = JobMetrics.model_validate(_raw("closed_loop"))
    assert metrics.mode == "injection" and metrics.mode_evidence is not None
    assert metrics.mode_evidence.coverage is None and metrics.mode_evidence.forced is True
    assert metrics.injection_rounds is not None and metrics.injection_rounds_run == len(metrics.injection_rounds)
    first = metrics.injection_rounds[0]
    assert sum(first.weights.values()) == pytest.approx(1.0, abs=1e-3)
    assert all(row.n >= row.correct for row in first.probe.values())
    assert metrics.loss_history is not None and all(p.round is not None for p in metrics.loss_history)
    assert metrics.eval_sets is not None and metrics.eval_sets["random-tenpai"].student_after is not None
    alignment = JobMetrics.model_validate(_raw("alignment"))
    assert alignment.heldout_kl_before is not None and alignment.teacher_id == "t-id"
    assert alignment.loss_history is not None and "round" not in alignment.written()["loss_history"][0]


def test_unset_fields_are_absent_and_a_measured_none_is_written() -> None:
    metrics = JobMetrics(task="t", teacher="a", student="b")
    assert metrics.written() == {"task": "t", "teacher": "a", "student": "b"}
    metrics.student_over_teacher = None  # measured: the teacher scored 0
    metrics.loss_history = [LossPoint(step=2, train_loss=1.5)]
    assert metrics.written() == {
        "task": "t",
        "teacher": "a",
        "student": "b",
        "loss_history": [{"step": 2, "train_loss": 1.5}],
        "student_over_teacher": None,
    }


def test_eval_set_entries_are_written_once_filled() -> None:
    metrics = JobMetrics(task="t", teacher="a", student="b")
    row = EvalSetScores(accuracy=0.5, partial=0.5, answered=1.0, examples=2, correct=1, seconds=0.1, strata={})
    metrics.eval_set("random-tenpai").student_after = row
    assert metrics.written()["eval_sets"] == {"random-tenpai": {"student_after": row.model_dump()}}
    metrics.eval_set("random-tenpai").teacher = row
    assert set(metrics.written()["eval_sets"]["random-tenpai"]) == {"teacher", "student_after"}


def test_a_misspelt_or_out_of_range_value_fails_where_it_is_set() -> None:
    with pytest.raises(ValidationError, match="teacher_acuracy"):
        JobMetrics.model_validate({**_raw("injection"), "teacher_acuracy": 0.3})
    metrics = JobMetrics(task="t", teacher="a", student="b")
    with pytest.raises(ValidationError):
        metrics.student_after_accuracy = 1.5
    with pytest.raises(ValueError, match="teacher_acuracy"):
        metrics.teacher_acuracy = 0.3  # type: ignore[attr-defined]


def test_scalars_are_the_top_level_numbers() -> None:
    raw = _raw("alignment")
    scalars = JobMetrics.model_validate(raw).scalars()
    assert scalars == {k: v for k, v in raw.items() if isinstance(v, int | float)}
    assert "final_loss" in scalars and "mode_evidence" not in scalars and "teacher_id" not in scalars


def test_one_alpha_default_and_the_loss_config_comes_from_train_config() -> None:
    assert TrainConfig().alpha == KDLossConfig().alpha == 0.1
    config = TrainConfig(divergence="jsd", beta=0.3, temperature=2.0, alpha=0.2, chunk_size=64)
    assert config.kd_loss_config() == KDLossConfig("jsd", 0.3, 2.0, 0.2, 64)
    assert config.kd_loss_config(cross_entropy_only=True) == KDLossConfig(alpha=1.0, chunk_size=64)


def test_training_arguments_come_from_train_config(tmp_path: Path) -> None:
    config = TrainConfig(per_device_batch_size=4, grad_accum=2, learning_rate=1e-4, warmup_ratio=0.1, seed=3)
    args = config.training_arguments(str(tmp_path), max_steps=200, use_cpu=True)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (4, 2)
    assert (args.learning_rate, args.max_steps, args.warmup_steps, args.seed, args.data_seed) == (1e-4, 200, 0.1, 3, 3)
    assert args.save_steps == config.derived_save_steps(200) == 200  # only the end: the wall clock places the rest
    assert TrainConfig(save_steps=7).derived_save_steps(200) == 7
    assert args.train_sampling_strategy == "group_by_length" and args.report_to == []
    unshuffled = TrainConfig(shuffle=False).training_arguments(str(tmp_path), max_steps=1, use_cpu=True)
    assert unshuffled.train_sampling_strategy == "random"
    override = config.training_arguments(str(tmp_path), max_steps=10, save_steps=5, use_cpu=True, save_strategy="no")
    assert (override.save_steps, override.save_strategy) == (5, "no")


def test_steps_derive_from_the_data() -> None:
    config = TrainConfig(per_device_batch_size=8, grad_accum=2, epochs=1.5)
    assert config.steps_per_epoch(100, world_size=2) == 4  # ceil(100 / 32)
    assert config.total_steps(100, world_size=2) == 6
    assert TrainConfig(max_steps=7).total_steps(100) == 7
    assert config.steps_per_epoch(0) == 1
