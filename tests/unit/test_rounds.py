"""Weakness-targeted Knowledge Injection: draw weights, round sizes, patience, and the loop on a tiny model."""

from __future__ import annotations

import pytest

from stratos_contract.metrics import JobMetrics
from stratos_train import job
from stratos_train.config import TrainConfig
from stratos_train.env import SageMakerEnv
from stratos_train.evaluate import EvalResult
from stratos_train.models import load_model
from stratos_train.resume import RunState
from stratos_train.rounds import (
    Patience,
    StratumScore,
    mean_accuracy,
    next_weights,
    probe_scores,
    round_sizes,
    uniform_weights,
)
from stratos_train.tasks import get_task
from stratos_train.tasks.base import largest_remainder


def test_next_weights_favour_failing_strata_and_keep_the_rest() -> None:
    probe = {"a": StratumScore(0, 8), "b": StratumScore(8, 8), "c": StratumScore(4, 8)}
    weights = next_weights(probe, floor=0.25)
    assert weights == pytest.approx({"a": 1.25 / 2.25, "b": 0.25 / 2.25, "c": 0.75 / 2.25})
    assert sum(weights.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="floor"):
        next_weights(probe, floor=0.0)


def test_round_sizes_and_largest_remainder() -> None:
    assert round_sizes(10, 3) == [4, 3, 3]
    assert round_sizes(8, 1) == [8]
    with pytest.raises(ValueError):
        round_sizes(2, 3)
    assert largest_remainder(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    assert largest_remainder(7, {"a": 3.0, "b": 0.0, "c": 1.0}) == {"a": 5, "b": 0, "c": 2}
    with pytest.raises(ValueError):
        largest_remainder(3, {"a": 0.0})


def test_patience_stops_after_rounds_without_gain() -> None:
    stop = Patience(patience=2, min_gain=0.01)
    assert not stop.update(0.10)
    assert not stop.update(0.30)
    assert not stop.update(0.305)  # within min_gain: stale 1
    assert stop.update(0.20)  # stale 2: stop
    assert stop.best == 0.30


def test_probe_scores_follow_the_task_order() -> None:
    scores = probe_scores(["b", "a", None, "b"], [True, False, True, False], order=("a", "b"))
    assert list(scores) == ["a", "b"]
    assert (scores["b"].correct, scores["b"].n) == (1, 2)
    assert mean_accuracy(scores) == pytest.approx(0.25)
    assert uniform_weights(("a", "b")) == {"a": 0.5, "b": 0.5}


def test_closed_loop_moves_examples_toward_a_stratum_that_scores_zero(tmp_path, monkeypatch) -> None:
    """A tiny model, two rounds; the probe is scored as if the student solved every stratum but one. The
    second round must draw that stratum most, and every round's table must land in the metrics."""
    task = get_task("mahjong-winning-tiles", random_eval=False)
    failing = "3 waits, honours"

    def fake_eval(loaded, task_, examples, config, label, shots):
        exact = [0.0 if task_.stratum(ex) == failing else 1.0 for ex in examples]
        return EvalResult(accuracy=sum(exact) / len(exact), partial=0.0, exact=exact)

    monkeypatch.setattr(job, "_eval", fake_eval)
    config = TrainConfig(
        train_size=64,
        injection_rounds=2,
        probe_per_stratum=2,
        round_patience=3,
        per_device_batch_size=8,
        max_seq_len=256,
        mode="injection",
        student="tiny:2",
    )
    corpus = [task.target(ex) for ex in task.examples("train", 40, 0)]
    student = load_model("tiny:2", corpus=corpus)
    record = JobMetrics(task=task.name, teacher=config.teacher, student=config.student)
    run = RunState.open(SageMakerEnv.from_environ(tmp_path).checkpoint_dir, "test", writer=True)

    def pairs(examples, _round):
        return [(task.prompt(ex), task.target(ex)) for ex in examples]

    job.train_in_rounds(config, run, task, student, student.model, pairs, record)
    metrics = record.written()
    first, second = metrics["injection_rounds"]
    assert first["drawn"][failing] == 4  # equal shares: 32 / 8
    assert second["weights"][failing] == max(second["weights"].values())
    assert second["drawn"][failing] == max(second["drawn"].values()) >= 12  # 1.25 / 3.0 of 32
    assert first["probe"][failing]["accuracy"] == 0.0 and first["probe_accuracy"] == pytest.approx(7 / 8)
    assert metrics["train_examples"] == 64 and metrics["injection_rounds_run"] == 2
