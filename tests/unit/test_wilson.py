"""Wilson score interval against published values (the honest ratio's teacher bound)."""

from __future__ import annotations

import pytest

from stratos_train.tasks.scoring import wilson_interval


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (0, 200, 0.0, 0.01885),  # z^2 / (n + z^2)
        (10, 100, 0.05523, 0.17437),  # Newcombe (1998), Table I style check value
        (1, 10, 0.01788, 0.40415),
        (5, 10, 0.23659, 0.76341),  # symmetric about 1/2
        (200, 200, 0.98115, 1.0),
    ],
)
def test_wilson_known_values(successes: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson_interval(successes, n)
    assert lo == pytest.approx(low, abs=5e-5) and hi == pytest.approx(high, abs=5e-5)


def test_wilson_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


def test_student_over_teacher_is_bounded_not_floored() -> None:
    from stratos_train.job import student_over_teacher

    zero = student_over_teacher(0.5, 0.0, 200)
    assert zero["student_over_teacher"] is None
    assert zero["teacher_accuracy_upper95"] == pytest.approx(0.01885, abs=1e-5)
    assert zero["student_over_teacher_upper95"] == pytest.approx(0.5 / 0.018845, rel=1e-3)
    some = student_over_teacher(0.5, 0.1, 100)
    assert some["student_over_teacher"] == pytest.approx(5.0)
    assert some["student_over_teacher_upper95"] == pytest.approx(0.5 / 0.174366, rel=1e-3)
