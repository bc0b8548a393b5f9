"""Calibration from past runs: the estimates corrected by what earlier runs measured, each with a band.

Every run record keeps the plan's estimates beside the run's measurements
(:class:`~stratos.run_record.PredictedVsActual`, built by :func:`compare`), with the estimators' own figure
before calibration (``uncalibrated``). From the records of earlier runs the planner learns three corrections:

* **accuracy**, keyed by (task kind, student, mode) — runs whose job ran the mode the plan predicted for;
  additive::

      r_i   = actual_i - uncalibrated_i                          residual, fraction
      shift = n / (n + n0) x mean(r)                             n runs, shrunk toward the estimator
      acc   = clip(uncalibrated + shift, 0, 1)
      band  = sqrt((n0 x b0^2 + sum_i (r_i - shift)^2) / (n0 + n))   b0 = DEFAULT_ACCURACY_BAND

* **training time** (the throughput and efficiency factors together), keyed by (task kind, student, mode,
  training instance), and **p50 latency**, keyed by (student, serving instance); multiplicative, on logs::

      l_i    = ln(actual_i / uncalibrated_i)
      shift  = n / (n + n0) x mean(l);   figure = uncalibrated x exp(shift)
      band   = exp(sqrt((n0 x ln(1 + b0)^2 + sum_i (l_i - shift)^2) / (n0 + n))) - 1     relative, fraction

The shift is the posterior mean of a normal model whose prior mean is the estimator's figure and whose prior
counts as ``n0`` runs (``n0 = sigma^2 / tau^2``, the ratio of a run's noise variance to the prior's; Gelman et al.,
*Bayesian Data Analysis*, 3rd ed., §2.5): one run moves the figure ``1 / (1 + n0)`` of the way to what it
measured, many runs all the way. :data:`PRIOR_RUNS` = 1: on this project's figures the noise of one run (a
200-example eval set: ~0.03 in accuracy; a shared machine: ~15 % in time) is well below the estimators' error
(0.16 in accuracy on ``make demo``; a factor of ~2 in time), which would put ``n0`` below 1; one pseudo-run
keeps a single outlier run from moving a figure more than half way. The band is the pooled spread of the
residuals around the correction, with the default band counted as ``n0`` runs (so it starts at the default
and tends to the residuals' spread). Residuals are kept per key for the :data:`MAX_RUNS_PER_KEY` most recent
runs (a changed estimator or container ages out).

Limits: the accuracy key ignores the teacher and the data size (runs of one task usually share both); a run
whose job switched mode (``auto`` decided otherwise) does not calibrate accuracy (its residual would mix two
modes); training time keys on the instance type (a local run's profile is ``local:<machine>``), so a run on
one instance never corrects another's figures.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from stratos.payloads import EstimateBand, PlanSummary
from stratos.run_record import Comparison, PredictedVsActual

PRIOR_RUNS = 1.0
"""``n0``: the estimator's figure counts as this many runs (module docstring)."""
DEFAULT_ACCURACY_BAND = 0.10
"""Band of an uncalibrated expected accuracy, +- fraction (absolute). The accuracy model's constants are our
estimates; its three predictions checked by local runs (2026-12-04, README "Measured on this machine") missed by
0.161 (mahjong-local: 0.161 predicted, 0.000 measured), 0.008 (gsm8k-local: 0.008, 0.000) and 0.128
(word-forms-local: 0.289, 0.161): RMS 0.12, of which ~0.05 is the binomial noise of their 24-87-example eval sets
(sqrt(0.12^2 - 0.05^2) = 0.11), rounded to 0.10."""
DEFAULT_TRAINING_HOURS_BAND = 0.30
"""Band of an uncalibrated training time, +- fraction (relative): MFU and generation efficiency are assumptions
(35-40 % MFU on GPUs; published single-node fine-tuning MFU spans ~25-55 %), which moves hours by ~30 %."""
DEFAULT_P50_BAND = 0.30
"""Band of an uncalibrated p50 latency, +- fraction (relative): decode bandwidth efficiency 75-80 % and the
per-request and per-step overheads are assumptions of the same order."""
MAX_RUNS_PER_KEY = 20
"""Most recent runs a correction learns from, per key."""
MAX_RECORDS = 500
"""Most run records read for calibration (newest first)."""

Basis = Literal["plan", "local"]


@dataclass(frozen=True, slots=True)
class Correction:
    """What past runs say about one figure.

    Attributes:
        runs: runs the correction learnt from (0 = none: the estimator's figure and the default band).
        shift: ``additive``: added to the figure (fraction); ``multiplicative``: the log of the factor.
        band: ``additive``: +- absolute; ``multiplicative``: +- relative (fraction of the figure).
        kind: how the correction applies.
    """

    runs: int
    shift: float
    band: float
    kind: Literal["additive", "multiplicative"]

    @property
    def factor(self) -> float:
        """``exp(shift)`` of a multiplicative correction (1.0 for an additive one)."""
        return math.exp(self.shift) if self.kind == "multiplicative" else 1.0

    def apply(self, uncalibrated: float) -> float:
        """The calibrated figure: accuracy clipped to [0, 1], time and latency scaled by :attr:`factor`."""
        if self.kind == "additive":
            return min(1.0, max(0.0, uncalibrated + self.shift))
        return uncalibrated * self.factor

    def band_of(self, calibrated: float) -> float:
        """The band's half-width around ``calibrated``, in its unit."""
        return self.band if self.kind == "additive" else abs(calibrated) * self.band

    def estimate(self, uncalibrated: float) -> tuple[float, EstimateBand]:
        """``(calibrated figure, its EstimateBand)``."""
        value = self.apply(uncalibrated)
        return value, EstimateBand(uncalibrated=uncalibrated, band=self.band_of(value), runs=self.runs)


ACCURACY_DEFAULT = Correction(0, 0.0, DEFAULT_ACCURACY_BAND, "additive")
TRAINING_DEFAULT = Correction(0, 0.0, DEFAULT_TRAINING_HOURS_BAND, "multiplicative")
LATENCY_DEFAULT = Correction(0, 0.0, DEFAULT_P50_BAND, "multiplicative")

AccuracyKey = tuple[str, str, str]
"""(task kind, student, mode)."""
TrainingKey = tuple[str, str, str, str]
"""(task kind, student, mode, training instance)."""
LatencyKey = tuple[str, str]
"""(student, serving instance)."""


def additive(residuals: list[float], default_band: float, n0: float = PRIOR_RUNS) -> Correction:
    """The shrunk additive correction of ``residuals`` (actual - uncalibrated), module docstring."""
    n = len(residuals)
    if not n:
        return Correction(0, 0.0, default_band, "additive")
    shift = n / (n + n0) * (sum(residuals) / n)
    spread = sum((r - shift) ** 2 for r in residuals)
    return Correction(n, shift, math.sqrt((n0 * default_band**2 + spread) / (n0 + n)), "additive")


def multiplicative(ratios: list[float], default_band: float, n0: float = PRIOR_RUNS) -> Correction:
    """The shrunk multiplicative correction of ``ratios`` (actual / uncalibrated, each > 0), module docstring."""
    logs = [math.log(r) for r in ratios]
    n = len(logs)
    if not n:
        return Correction(0, 0.0, default_band, "multiplicative")
    shift = n / (n + n0) * (sum(logs) / n)
    spread = sum((v - shift) ** 2 for v in logs)
    sigma = math.sqrt((n0 * math.log1p(default_band) ** 2 + spread) / (n0 + n))
    return Correction(n, shift, math.expm1(sigma), "multiplicative")


@dataclass(frozen=True)
class Calibration:
    """The corrections learnt from past runs (:func:`calibrate`); a key without runs gets the default.

    Attributes:
        accuracy: by (task kind, student, mode).
        training: by (task kind, student, mode, training instance).
        latency: by (student, serving instance).
        records: run records read.
        used: records with a usable predicted-vs-actual block.
    """

    accuracy: Mapping[AccuracyKey, Correction] = field(default_factory=dict)
    training: Mapping[TrainingKey, Correction] = field(default_factory=dict)
    latency: Mapping[LatencyKey, Correction] = field(default_factory=dict)
    records: int = 0
    used: int = 0

    def for_accuracy(self, kind: str, student: str, mode: str) -> Correction:
        return self.accuracy.get((kind, student, mode), ACCURACY_DEFAULT)

    def for_training(self, kind: str, student: str, mode: str, instance: str) -> Correction:
        return self.training.get((kind, student, mode, instance), TRAINING_DEFAULT)

    def for_latency(self, student: str, instance: str) -> Correction:
        return self.latency.get((student, instance), LATENCY_DEFAULT)

    def describe(self) -> dict[str, Any]:
        """JSON-safe summary (the frontier document's ``calibration``): the estimator, then every calibrated key
        with its runs, its correction (accuracy: shift, fraction; time and latency: factor) and band."""
        return {
            "estimator": "posterior mean with the estimator's figure as prior, counted as n0 runs; bands pooled "
            "from the residuals with the default band as n0 runs (stratos.planner.calibration)",
            "prior_runs": PRIOR_RUNS,
            "default_bands": {
                "accuracy": DEFAULT_ACCURACY_BAND,
                "training_hours_relative": DEFAULT_TRAINING_HOURS_BAND,
                "p50_latency_relative": DEFAULT_P50_BAND,
            },
            "records": self.records,
            "used": self.used,
            "accuracy": [
                {"task_kind": k[0], "student": k[1], "mode": k[2], "runs": c.runs, "shift": c.shift, "band": c.band}
                for k, c in sorted(self.accuracy.items())
            ],
            "training_hours": [
                {
                    "task_kind": k[0],
                    "student": k[1],
                    "mode": k[2],
                    "training_instance": k[3],
                    "runs": c.runs,
                    "factor": c.factor,
                    "band_relative": c.band,
                }
                for k, c in sorted(self.training.items())
            ],
            "p50_latency": [
                {"student": k[0], "serving_instance": k[1], "runs": c.runs, "factor": c.factor, "band_relative": c.band}
                for k, c in sorted(self.latency.items())
            ],
        }


NO_CALIBRATION = Calibration()
"""No past runs: every figure is the estimator's, with the default bands."""


def comparison_of(record: Mapping[str, Any]) -> PredictedVsActual | None:
    """The run record's predicted-vs-actual block, or None (absent, or from a schema this code cannot read)."""
    block = record.get("predicted_vs_actual")
    if not isinstance(block, Mapping):
        return None
    try:
        return PredictedVsActual.model_validate(block)
    except ValidationError:
        return None


def calibrate(records: Iterable[Mapping[str, Any]], *, max_records: int = MAX_RECORDS) -> Calibration:
    """The corrections past ``records`` support (module docstring).

    Args:
        records: run records as stored (the runs table's items, or a local run's kept records), NEWEST FIRST;
            records without a readable ``predicted_vs_actual`` block are skipped.
        max_records: most records read.
    """
    accuracy: dict[AccuracyKey, list[float]] = {}
    training: dict[TrainingKey, list[float]] = {}
    latency: dict[LatencyKey, list[float]] = {}
    read = used = 0
    for record in records:
        if read >= max_records:
            break
        read += 1
        pva = comparison_of(record)
        if pva is None:
            continue
        used += 1
        acc = pva.accuracy
        if (
            acc.actual is not None
            and acc.uncalibrated is not None
            and (pva.mode_actual is None or pva.mode_actual == pva.mode)
        ):
            _keep(accuracy, (pva.task_kind, pva.student, pva.mode), acc.actual - acc.uncalibrated)
        ratio = _ratio(pva.training_hours)
        if ratio is not None:
            _keep(training, (pva.task_kind, pva.student, pva.mode, pva.training_instance), ratio)
        ratio = _ratio(pva.p50_latency_ms)
        if ratio is not None:
            _keep(latency, (pva.student, pva.serving_instance), ratio)
    return Calibration(
        accuracy={k: additive(v, DEFAULT_ACCURACY_BAND) for k, v in accuracy.items()},
        training={k: multiplicative(v, DEFAULT_TRAINING_HOURS_BAND) for k, v in training.items()},
        latency={k: multiplicative(v, DEFAULT_P50_BAND) for k, v in latency.items()},
        records=read,
        used=used,
    )


def _keep(table: dict[Any, list[float]], key: Any, value: float) -> None:
    values = table.setdefault(key, [])
    if len(values) < MAX_RUNS_PER_KEY:  # records arrive newest first
        values.append(value)


def _ratio(c: Comparison | None) -> float | None:
    if c is None or c.actual is None or c.uncalibrated is None or c.actual <= 0 or c.uncalibrated <= 0:
        return None
    return c.actual / c.uncalibrated


# --------------------------------------------------------------------------------------------------------
# Predictions and their comparison with a run.


@dataclass(frozen=True)
class Prediction:
    """What a run is predicted to measure, for :func:`compare`.

    Attributes:
        basis: ``plan`` (the chosen plan's instances) or ``local`` (this machine's profile).
        teacher, student, mode: the plan's pair and the mode it predicted for.
        training_instance, serving_instance: what the time and latency predictions are for.
        accuracy: expected accuracy, fraction 0..1, and its band.
        training_hours: training job wall time, hours, and its band.
        training_cost_usd: the training job's cost, USD (its band follows the hours').
        p50_latency_ms: p50 latency, ms, and its band (None when not predicted).
        tokens_per_s: generated tokens/s of one serving instance at the spec's concurrency (None when not
            predicted).
    """

    basis: Basis
    teacher: str
    student: str
    mode: str
    training_instance: str
    serving_instance: str
    accuracy: float
    accuracy_band: EstimateBand | None
    training_hours: float
    training_hours_band: EstimateBand | None
    training_cost_usd: float
    p50_latency_ms: float | None = None
    p50_latency_band: EstimateBand | None = None
    tokens_per_s: float | None = None


def throughput_tokens_per_s(p50_ms: float, output_tokens: int, concurrency: int) -> float:
    """Generated tokens/s of one instance with ``concurrency`` requests of ``output_tokens`` in flight, each taking
    ``p50_ms``: ``concurrency x output_tokens / p50_s`` (:func:`stratos.planner.estimators.throughput_tokens_per_s`)."""
    from stratos.planner.estimators import throughput_tokens_per_s as tps

    return tps(p50_ms, output_tokens, concurrency)


def plan_prediction(plan: PlanSummary, output_tokens: int, concurrency: int) -> Prediction:
    """The chosen plan's figures as a :class:`Prediction` (basis ``plan``)."""
    return Prediction(
        basis="plan",
        teacher=plan.teacher,
        student=plan.student,
        mode=plan.mode.value,
        training_instance=plan.training_instance,
        serving_instance=plan.serving_instance,
        accuracy=plan.expected_accuracy,
        accuracy_band=plan.accuracy_band,
        training_hours=plan.training_hours,
        training_hours_band=plan.training_hours_band,
        training_cost_usd=plan.training_cost_usd,
        p50_latency_ms=plan.p50_latency_ms,
        p50_latency_band=plan.p50_latency_band,
        tokens_per_s=throughput_tokens_per_s(plan.p50_latency_ms, output_tokens, concurrency)
        if plan.p50_latency_ms > 0
        else None,
    )


def _scaled(band: EstimateBand | None, value: float, figure: float) -> tuple[float | None, float | None]:
    """``(uncalibrated, band)`` of ``figure``, a quantity proportional to the banded ``value`` (cost to hours,
    tokens/s inversely to p50 is handled by the caller)."""
    if band is None or value <= 0:
        return None, None
    return figure * band.uncalibrated / value, figure * band.band / value


def compare(
    prediction: Prediction,
    task_kind: str,
    *,
    accuracy: float | None,
    mode_actual: str | None,
    training_hours: float | None,
    training_cost_usd: float | None,
    p50_latency_ms: float | None = None,
    tokens_per_s: float | None = None,
) -> PredictedVsActual:
    """``prediction`` beside what the run measured (None = not measured), each with its error: the run record's
    ``predicted_vs_actual``. The training cost's uncalibrated figure and band scale with the hours'; tokens/s's
    with 1 / p50."""
    acc_band, hours_band, p50_band = (
        prediction.accuracy_band,
        prediction.training_hours_band,
        prediction.p50_latency_band,
    )
    cost_uncal, cost_band = _scaled(hours_band, prediction.training_hours, prediction.training_cost_usd)
    tps_uncal = tps_band = None
    if prediction.tokens_per_s is not None and p50_band is not None and p50_band.uncalibrated > 0:
        p50 = prediction.p50_latency_ms or 0.0
        tps_uncal = prediction.tokens_per_s * p50 / p50_band.uncalibrated
        tps_band = prediction.tokens_per_s * p50_band.band / p50 if p50 > 0 else None
    return PredictedVsActual(
        basis=prediction.basis,
        task_kind=task_kind,
        teacher=prediction.teacher,
        student=prediction.student,
        mode=prediction.mode,
        mode_actual=mode_actual,
        training_instance=prediction.training_instance,
        serving_instance=prediction.serving_instance,
        accuracy=_of(prediction.accuracy, accuracy, acc_band),
        training_hours=_of(prediction.training_hours, training_hours, hours_band),
        training_cost_usd=Comparison.of(
            prediction.training_cost_usd,
            training_cost_usd,
            uncalibrated=cost_uncal,
            band=cost_band,
            runs=None if hours_band is None else hours_band.runs,
        ),
        p50_latency_ms=None
        if prediction.p50_latency_ms is None
        else _of(prediction.p50_latency_ms, p50_latency_ms, p50_band),
        tokens_per_s=None
        if prediction.tokens_per_s is None
        else Comparison.of(
            prediction.tokens_per_s,
            tokens_per_s,
            uncalibrated=tps_uncal,
            band=tps_band,
            runs=None if p50_band is None else p50_band.runs,
        ),
    )


def _of(predicted: float, actual: float | None, band: EstimateBand | None) -> Comparison:
    if band is None:
        return Comparison.of(predicted, actual)
    return Comparison.of(predicted, actual, uncalibrated=band.uncalibrated, band=band.band, runs=band.runs)


def with_latency(pva: PredictedVsActual, p50_latency_ms: float | None, tokens_per_s: float | None) -> PredictedVsActual:
    """``pva`` with the measured p50 latency (ms) and tokens/s filled in (a post-deploy check's figures)."""
    update: dict[str, Any] = {}
    for key, measured in (("p50_latency_ms", p50_latency_ms), ("tokens_per_s", tokens_per_s)):
        c: Comparison | None = getattr(pva, key)
        if c is not None and measured is not None:
            update[key] = Comparison.of(c.predicted, measured, uncalibrated=c.uncalibrated, band=c.band, runs=c.runs)
    return pva.model_copy(update=update) if update else pva
