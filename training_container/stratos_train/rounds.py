"""Weakness-targeted Knowledge Injection: train in rounds, each drawing its examples toward failing strata.

A task that exposes strata (:meth:`~stratos_train.tasks.base.Task.strata`: Mahjong by number of waits x
honours, GSM8K by reasoning steps) can be distilled in a closed loop:

1. round 1 trains on examples drawn equally from every stratum;
2. after each round the student is scored greedily on a *probe*: fresh TRAIN-split problems, ``probe_per_stratum``
   of each stratum (never the evaluation set, so nothing is tuned to it);
3. the next round draws its examples with weight ``w_s = floor + (1 - acc_s)`` per stratum (normalised), so a
   stratum the student fails gets up to ``(1 + floor) / floor`` times the share of one it has mastered, and
   none is dropped (the floor keeps the mastered ones from being forgotten);
4. the loop stops when the probe's mean accuracy (strata weighted equally) has not improved by more than
   ``min_gain`` for ``patience`` rounds in a row, or when the example budget is spent.

Every round's examples, tokens, draw weights and per-stratum probe table go into ``metrics.json``
(``injection_rounds``). The optimiser and the learning-rate schedule run across rounds as one schedule over
the whole budget (a stopped loop ends before the schedule's tail).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from stratos_contract.metrics import RoundMetrics, StratumRecord


@dataclass
class StratumScore:
    """Probe result of one stratum: ``correct`` of ``n`` exact, and their ratio."""

    correct: int
    n: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0


@dataclass
class RoundReport:
    """One round of the closed loop.

    Attributes:
        round: 1-based.
        examples: training examples of this round.
        train_tokens: completion tokens trained on in this round.
        weights: draw weight per stratum used for this round's examples (sums to 1).
        drawn: this round's training examples per stratum.
        probe: per-stratum probe result after the round.
        probe_accuracy: mean of the per-stratum accuracies (strata weighted equally), 0..1.
        seconds: wall time of the round (training + probe).
    """

    round: int
    examples: int
    train_tokens: int
    weights: dict[str, float]
    drawn: dict[str, int] = field(default_factory=dict)
    probe: dict[str, StratumScore] = field(default_factory=dict)
    probe_accuracy: float = 0.0
    seconds: float = 0.0

    def as_metrics(self) -> RoundMetrics:
        """This round as metrics.json records it (``injection_rounds``): fractions to 4 places, seconds to 2."""
        return RoundMetrics(
            round=self.round,
            examples=self.examples,
            train_tokens=self.train_tokens,
            weights={k: round(v, 4) for k, v in self.weights.items()},
            drawn=dict(self.drawn),
            probe={
                k: StratumRecord(correct=v.correct, n=v.n, accuracy=round(v.accuracy, 4)) for k, v in self.probe.items()
            },
            probe_accuracy=round(self.probe_accuracy, 4),
            seconds=round(self.seconds, 2),
        )


def uniform_weights(strata: Sequence[str]) -> dict[str, float]:
    """Equal draw weight for every stratum (round 1)."""
    return {label: 1.0 / len(strata) for label in strata}


def next_weights(probe: Mapping[str, StratumScore], floor: float) -> dict[str, float]:
    """Draw weights for the next round: ``floor + (1 - accuracy)`` per stratum, normalised to sum 1.

    Raises:
        ValueError: ``floor`` <= 0 (a mastered stratum would never be drawn again) or an empty probe.
    """
    if floor <= 0:
        raise ValueError(f"floor must be > 0, got {floor}")
    if not probe:
        raise ValueError("no probe strata")
    raw = {label: floor + (1.0 - score.accuracy) for label, score in probe.items()}
    total = sum(raw.values())
    return {label: value / total for label, value in raw.items()}


def round_sizes(total: int, rounds: int) -> list[int]:
    """``total`` examples over ``rounds`` rounds, as equal as possible, earlier rounds one more:
    ``(10, 3)`` -> ``[4, 3, 3]``.

    Raises:
        ValueError: ``rounds`` < 1 or more rounds than examples.
    """
    if rounds < 1 or rounds > total:
        raise ValueError(f"need 1 <= rounds <= examples, got {rounds} rounds for {total} examples")
    return [total // rounds + (i < total % rounds) for i in range(rounds)]


def probe_scores(
    strata: Sequence[str | None], correct: Sequence[bool], order: Sequence[str] = ()
) -> dict[str, StratumScore]:
    """Per-stratum tallies of scored examples (examples without a stratum are left out), keyed in ``order``
    (the task's stratum order) and then in order of first appearance."""
    found: dict[str, StratumScore] = {}
    for label, ok in zip(strata, correct, strict=True):
        if label is None:
            continue
        score = found.setdefault(label, StratumScore(0, 0))
        score.n += 1
        score.correct += int(ok)
    rank = {label: i for i, label in enumerate(order)}
    return dict(sorted(found.items(), key=lambda kv: rank.get(kv[0], len(rank))))


def mean_accuracy(probe: Mapping[str, StratumScore]) -> float:
    """Mean of the per-stratum accuracies (strata weighted equally); 0 for an empty probe."""
    return sum(s.accuracy for s in probe.values()) / len(probe) if probe else 0.0


@dataclass
class Patience:
    """Stop after ``patience`` rounds in a row without a gain of more than ``min_gain`` over the best."""

    patience: int
    min_gain: float = 0.0
    best: float = float("-inf")
    stale: int = 0

    def update(self, value: float) -> bool:
        """Record a round's probe accuracy; True when the loop should stop."""
        if value > self.best + self.min_gain:
            self.best = value
            self.stale = 0
        else:
            self.stale += 1
        return self.stale >= self.patience
