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
