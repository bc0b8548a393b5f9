"""``output/data/metrics.json``: what one training job measured, as a typed record.

The job (:func:`stratos_train.job.run_job`) fills a :class:`JobMetrics` phase by phase and writes
:meth:`JobMetrics.written`; the pipeline's evaluation gate (``stratos.pipeline.gate``) and the local report read
the file. Only pydantic and the standard library are imported here, so both sides can share this module.

Which keys a file has depends on the run: a field the job did not measure is absent from the file, never
``null`` (``teacher_accuracy`` without ``evaluate_teacher``, ``heldout_kl_*`` outside alignment with a shared
tokenizer, ``injection_*`` outside Knowledge Injection, ``injection_rounds`` outside the closed loop,
``teacher_usage`` for a teacher the job loads itself). A field that is written as ``null`` means "measured,
undefined" (``student_over_teacher`` when the teacher scored 0). So the record tracks which fields were set
(pydantic's ``model_fields_set``) and writes exactly those; set a field by assignment (``metrics.x = ...``),
never by mutating a list or dict in place.

Units: accuracies, partial credit and rates are fractions 0..1; times are wall-clock seconds rounded to 0.01;
tokens and examples are counts; losses and KL are nats per completion token.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["alignment", "injection"]
#: What a teacher exposes to the job (stratos_train.modes.TeacherInterface).
TeacherInterface = Literal["logits", "top-k", "text"]


class _Record(BaseModel):
    """A part of metrics.json: unknown keys are an error (a misspelt key fails where it is set), values are
    validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StratumRecord(_Record):
    """Exact-match tally of one stratum (Mahjong: waits x honours; GSM8K: reasoning steps)."""

    correct: int = Field(ge=0, description="Examples of the stratum scored exactly correct, count.")
    n: int = Field(ge=0, description="Examples of the stratum scored, count.")
    accuracy: float = Field(ge=0, le=1, description="correct / n (0 when n is 0), fraction rounded to 4 places.")


#: Per-stratum tallies keyed by stratum label, in the task's stratum order; empty for a task without strata.
Strata = dict[str, StratumRecord]


class EvalSetScores(_Record):
    """One model on one further held-out set (``eval_sets``)."""

    accuracy: float = Field(ge=0, le=1, description="Exact-match accuracy, fraction.")
    partial: float = Field(ge=0, le=1, description="Mean partial credit, fraction.")
    answered: float = Field(ge=0, le=1, description="Completions with a parseable final answer, fraction.")
    examples: int = Field(ge=0, description="Examples in the set, count.")
    correct: int = Field(ge=0, description="Examples scored exactly correct, count.")
    seconds: float = Field(ge=0, description="Evaluation wall time, s.")
    strata: Strata = Field(description="Per-stratum tallies on this set.")


class EvalSet(_Record):
    """A further held-out set (Mahjong: ``random-tenpai``): the teacher's and the trained student's scores."""

    teacher: EvalSetScores | None = Field(
        default=None, description="Absent without evaluate_teacher or extra_eval_teacher."
    )
    student_after: EvalSetScores | None = Field(default=None, description="The trained student.")


class LossPoint(_Record):
    """One logged training loss."""

    step: int = Field(ge=0, description="Optimiser step; in the closed loop counted across rounds.")
    train_loss: float = Field(description="Mean loss over the logging window, nats per completion token.")
    round: int | None = Field(default=None, ge=1, description="Closed-loop round (1-based); absent otherwise.")


class RoundMetrics(_Record):
    """One round of the Knowledge Injection closed loop (:class:`stratos_train.rounds.RoundReport`)."""

    round: int = Field(ge=1, description="1-based round number.")
    examples: int = Field(ge=0, description="Training examples of this round, count.")
    train_tokens: int = Field(ge=0, description="Completion tokens trained on in this round, count.")
    weights: dict[str, float] = Field(description="Draw weight per stratum for this round (sums to 1), 4 places.")
    drawn: dict[str, int] = Field(description="This round's training examples per stratum, count.")
    probe: Strata = Field(description="Per-stratum probe tallies after the round.")
    probe_accuracy: float = Field(
        ge=0, le=1, description="Mean of the per-stratum probe accuracies (strata weighted equally), 4 places."
    )
    seconds: float = Field(ge=0, description="Round wall time (training + probe), s.")


class ModeEvidence(_Record):
    """Why the mode was chosen (:class:`stratos_train.modes.ModeDecision`); every key is always written."""

    mode: Mode = Field(description="The chosen mode (= JobMetrics.mode).")
    forced: bool = Field(description="True when the spec chose the mode.")
    reason: str = Field(description="One sentence, for people.")
    coverage: float | None = Field(description="Teacher exact accuracy on the probe, fraction; null unless probed.")
    coverage_partial: float | None = Field(
        description="Teacher partial credit on the probe, fraction; null unless probed."
    )
    complexity: float | None = Field(
        description="Mean task complexity over the probe, in complexity_unit; null unless probed."
    )
    complexity_unit: str = Field(description="The task's complexity unit, e.g. 'reasoning steps'; empty when unknown.")
    probe_size: int = Field(ge=0, description="Training examples the teacher was probed on, count; 0 unless probed.")
    threshold: float = Field(ge=0, le=1, description="Coverage needed for alignment, fraction.")
    tokenizers_compatible: bool = Field(description="Teacher and student share a vocabulary.")
    teacher_interface: TeacherInterface = Field(
        default="logits",
        description="What the teacher exposes: 'logits' (a model the job loads), 'top-k' (an endpoint returning "
        "top-k log-probabilities per token) or 'text' (Bedrock, or an endpoint asked for text only); absent in "
        "files written before external teachers, which all had 'logits'.",
    )
    coverage_hard: float | None = Field(
        default=None,
        description="Teacher exact accuracy on the probe's harder half (complexity >= complexity_cut), fraction; "
        "null unless probed (and in files written before the harder-half rule).",
    )
    complexity_cut: float | None = Field(
        default=None,
        description="Median task complexity of the probe, where its harder half starts, in complexity_unit; "
        "null unless probed.",
    )


class TeacherUsage(_Record):
    """What calling an external teacher (``bedrock:`` / ``sagemaker-endpoint:``) cost over the whole run: every
    job of it summed (``stratos_train.teachers.TeacherUsage``, kept per job in the run's state), plus this job's
    share. Cache hits are replies the run's reply cache answered: no call, no tokens, no money."""

    calls: int = Field(
        ge=0,
        description="API calls made (Converse / InvokeEndpoint; each once however many retries it took; a Bedrock "
        "reachability check included), count.",
    )
    cache_hits: int = Field(ge=0, description="Replies served from the run's reply cache, count.")
    retries: int = Field(ge=0, description="Retried attempts summed over calls (adaptive retry mode), count.")
    throttled: int = Field(ge=0, description="Attempts answered with a throttling error, count.")
    input_tokens: int = Field(ge=0, description="Prompt tokens of the calls made, as the provider counted them.")
    output_tokens: int = Field(ge=0, description="Generated tokens of the calls made, as the provider counted them.")
    replies_by_stop: dict[str, int] = Field(
        description="Replies by why they ended: end, max_tokens, filtered, error (cache hits included), count."
    )
    input_usd_per_1k: float = Field(ge=0, description="Price of 1,000 input tokens, USD (0 = not priced).")
    output_usd_per_1k: float = Field(ge=0, description="Price of 1,000 output tokens, USD (0 = not priced).")
    usd: float = Field(ge=0, description="Money spent on the calls made, USD, 6 places.")
    jobs: int = Field(ge=1, description="Training jobs of the run whose teacher use is summed here, count.")
    job_calls: int = Field(ge=0, description="API calls this job made (0 when an earlier job's answers served).")
    job_usd: float = Field(ge=0, description="Money this job spent on calls, USD, 6 places.")


class Sample(_Record):
    """One held-out example with the trained student's completion."""

    problem: dict[str, Any] = Field(description="The task's structured problem fields, e.g. {'hand': '123m...'}.")
    reference: str | list[str] = Field(description="Reference answer; a list for set-valued answers.")
    completion: str = Field(description="The student's greedy completion.")


class JobMetrics(_Record):
    """metrics.json. Field order is the order of keys in the file; descriptions give units.

    Phases that fill it (:mod:`stratos_train.job`): load (task, models), probe (mode), evaluate-before (teacher,
    student before, KL before), train (injection data, training figures), evaluate-after (student after, eval
    sets, ratios, KL after, samples), export (job_seconds).
    """

    # --- load
    task: str = Field(description="Task name, e.g. mahjong-winning-tiles.")
    teacher: str = Field(description="Teacher model source as loaded, e.g. channel:teacher.")
    student: str = Field(description="Student model source as loaded, e.g. channel:student@layers=15.")
    teacher_id: str | None = Field(default=None, description="Catalog id of the teacher; absent when not given.")
    student_id: str | None = Field(default=None, description="Catalog id of the student; absent when not given.")

    # --- evaluate before training (main process)
    teacher_accuracy: float | None = Field(default=None, ge=0, le=1, description="Teacher exact accuracy, fraction.")
    teacher_partial: float | None = Field(default=None, ge=0, le=1, description="Teacher partial credit, fraction.")
    teacher_answered: float | None = Field(
        default=None, ge=0, le=1, description="Teacher completions with a parseable answer, fraction."
    )
    teacher_eval_seconds: float | None = Field(default=None, ge=0, description="Teacher evaluation wall time, s.")
    teacher_strata: Strata | None = Field(default=None, description="Teacher per-stratum tallies.")
    eval_sets: dict[str, EvalSet] | None = Field(
        default=None, description="Further held-out sets by name (extra_eval), eval_size examples each."
    )
    student_before_accuracy: float | None = Field(
        default=None, ge=0, le=1, description="Untrained student exact accuracy, fraction."
    )
    student_before_partial: float | None = Field(
        default=None, ge=0, le=1, description="Untrained student partial credit, fraction."
    )
    student_before_answered: float | None = Field(
        default=None, ge=0, le=1, description="Untrained student completions with a parseable answer, fraction."
    )
    student_before_eval_seconds: float | None = Field(
        default=None, ge=0, description="Untrained student evaluation wall time, s."
    )
    heldout_kl_before: float | None = Field(
        default=None,
        description="Mean forward KL(teacher || student) over held-out completion tokens before training, nats/token "
        "(alignment with a shared tokenizer only; never for an external teacher, whose logits the job lacks).",
    )

    # --- train: the Knowledge Injection data set (round 1 in the closed loop)
    injection_examples: int | None = Field(default=None, ge=0, description="Injection training pairs, count.")
    injection_teacher_asked: int | None = Field(
        default=None, ge=0, description="Examples the teacher was asked for a rationale, count."
    )
    injection_teacher_rationales: int | None = Field(
        default=None, ge=0, description="Teacher rationales accepted by the verifier, count."
    )
    injection_teacher_rejected: int | None = Field(
        default=None, ge=0, description="Teacher rationales rejected, count."
    )
    injection_teacher_rejection_rate: float | None = Field(
        default=None, ge=0, le=1, description="rejected / asked (0 when none asked), fraction, 4 places."
    )
    injection_programmatic_reasoning: int | None = Field(
        default=None, ge=0, description="Targets with a generated, verified reasoning trace, count."
    )
    injection_reference_reasoning: int | None = Field(
        default=None, ge=0, description="Targets with the data set's reference rationale, count."
    )
    injection_rejection_reasons: dict[str, int] | None = Field(
        default=None, description="Why teacher rationales were rejected: reason -> count."
    )
    injection_rounds: list[RoundMetrics] | None = Field(default=None, description="Closed loop: one entry per round.")
    injection_rounds_run: int | None = Field(default=None, ge=1, description="Closed loop: rounds run, count.")

    # --- train
    train_examples: int | None = Field(default=None, ge=0, description="Training rows trained on, count.")
    train_rows_dropped_no_completion: int | None = Field(
        default=None, ge=0, description="Rows dropped: no completion token within max_seq_len, count."
    )
    train_rows_truncated: int | None = Field(
        default=None, ge=0, description="Rows whose completion was cut at max_seq_len, count."
    )
    train_tokens: int | None = Field(default=None, ge=0, description="Completion (trained) tokens, count.")
    train_total_tokens: int | None = Field(
        default=None, ge=0, description="Prompt + completion tokens of the training rows, count."
    )
    teacher_topk_cache_seconds: float | None = Field(
        default=None,
        ge=0,
        description="Building the teacher top-k logit cache (teacher_topk > 0; an endpoint teacher: asking it for "
        "every training target), s.",
    )
    teacher_topk_rows_teacher: int | None = Field(
        default=None,
        ge=0,
        description="Top-k KD from an endpoint: rows whose target is the teacher's own answer, verified, count.",
    )
    teacher_topk_rows_reference: int | None = Field(
        default=None,
        ge=0,
        description="Top-k KD from an endpoint: rows trained on the reference target instead (cross-entropy only), "
        "count.",
    )
    teacher_topk_reference_reasons: dict[str, int] | None = Field(
        default=None,
        description="Why those rows took the reference: 'answer differs', 'error', 'filtered', 'no top-k' -> count.",
    )
    teacher_topk_positions: int | None = Field(
        default=None, ge=0, description="Top-k KD from an endpoint: completion positions trained on, count."
    )
    teacher_topk_positions_teacher: int | None = Field(
        default=None,
        ge=0,
        description="Of those, positions matched to the teacher's top-k (the student's token equals the teacher's "
        "there and at every position before it); the rest are one-hot (cross-entropy), count.",
    )
    teacher_topk_tail_mass: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Mean teacher probability outside its top-k at the matched positions (the mass top-k KD "
        "drops), 0..1.",
    )
    final_loss: float | None = Field(
        default=None,
        description="Mean optimiser-step training loss over the whole run, every job of it (closed loop: over "
        "the last round), nats per completion token.",
    )
    train_steps: int | None = Field(default=None, ge=0, description="Optimiser steps taken (summed over rounds).")
    train_seconds: float | None = Field(
        default=None,
        ge=0,
        description="Training wall time, summed over rounds and over jobs (each up to the checkpoint the next "
        "resumed from), s.",
    )
    resumed_from: str | None = Field(
        default=None, description="Checkpoint folder training resumed from; empty for a fresh start."
    )
    loss_history: list[LossPoint] | None = Field(default=None, description="Logged training losses, in step order.")
    train_resumed_at_step: int | None = Field(
        default=None, ge=0, description="Optimiser step this job's training resumed at (0: from the start)."
    )

    # --- the run across jobs (stratos_train.resume): a re-created job (managed spot restart, retry, fallback)
    run_jobs: int | None = Field(
        default=None, ge=1, description="Training jobs that worked on this run, this one included, count."
    )
    phases_reused: list[str] | None = Field(
        default=None, description="Phases this job took from an earlier job of the run instead of computing them."
    )
    phase_runs: dict[str, int] | None = Field(
        default=None,
        description="Times each phase was computed over the whole run (1 each when no work was repeated), count.",
    )

    # --- evaluate after training (main process)
    student_after_accuracy: float | None = Field(
        default=None, ge=0, le=1, description="Trained student exact accuracy, fraction."
    )
    student_after_partial: float | None = Field(
        default=None, ge=0, le=1, description="Trained student partial credit, fraction."
    )
    student_after_stop_rate: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Trained student completions that stopped before max_new_tokens, fraction.",
    )
    student_after_answered: float | None = Field(
        default=None, ge=0, le=1, description="Trained student completions with a parseable answer, fraction."
    )
    student_after_eval_seconds: float | None = Field(
        default=None, ge=0, description="Trained student evaluation wall time, s."
    )
    student_after_strata: Strata | None = Field(default=None, description="Trained student per-stratum tallies.")
    teacher_accuracy_upper95: float | None = Field(
        default=None, ge=0, le=1, description="Wilson 95 % upper bound of the teacher's accuracy, fraction, 5 places."
    )
    student_over_teacher: float | None = Field(
        default=None,
        ge=0,
        description="Student after / teacher accuracy, ratio; written as null when the teacher scored 0.",
    )
    student_over_teacher_upper95: float | None = Field(
        default=None, ge=0, description="Student after accuracy / teacher_accuracy_upper95, ratio (never floored)."
    )
    heldout_kl_after: float | None = Field(
        default=None, description="As heldout_kl_before, after training, nats/token."
    )
    eval_examples: int | None = Field(default=None, ge=0, description="Held-out evaluation examples, count.")

    # --- probe (written with the results)
    mode: Mode | None = Field(default=None, description="The distillation mode that ran.")
    mode_reason: str | None = Field(default=None, description="Why, one sentence (= mode_evidence.reason).")
    mode_evidence: ModeEvidence | None = Field(default=None, description="The decision's inputs.")

    # --- external teacher (bedrock: / sagemaker-endpoint:), updated whenever the job calls it
    teacher_usage: TeacherUsage | None = Field(
        default=None,
        description="External teacher: calls, cache hits, tokens and USD over the run (every job), and this job's "
        "share; absent for a teacher the job loads.",
    )

    # --- evaluate after / export
    samples: list[Sample] | None = Field(default=None, description="The first 5 held-out examples with completions.")
    job_seconds: float | None = Field(default=None, ge=0, description="Whole job wall time, s.")

    def written(self) -> dict[str, Any]:
        """The JSON document of metrics.json: every field the job set, in field order (nested likewise)."""
        return self.model_dump(exclude_unset=True)

    def scalars(self) -> dict[str, int | float]:
        """The top-level numbers (the final ``[stratos-metrics]`` line and the model card's table)."""
        return {k: v for k, v in self.written().items() if isinstance(v, int | float)}

    def eval_set(self, name: str) -> EvalSet:
        """The entry of ``eval_sets`` for ``name``, created (and marked written) when missing."""
        if self.eval_sets is None or name not in self.eval_sets:
            self.eval_sets = {**(self.eval_sets or {}), name: EvalSet()}  # assigned, so it is written
        sets: dict[str, EvalSet] = self.eval_sets
        return sets[name]
