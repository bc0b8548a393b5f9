"""Teacher–student pair matching: which distillation modes a pair allows, and why not.

Rules, in order (the first that fails names the reason):

1. ``same-model`` — a model does not distill into itself. A depth-pruned copy of the teacher
   (:func:`~stratos.planner.catalog.depth_pruned`, e.g. SmolLM2-135M teaching ``smollm2-135m-instruct-l15``)
   is NOT the same model: it has its own id and parameters, and distilling the full model into its pruned
   copy is the Minitron recipe (Sreenivas et al. 2024) — the copy shares the teacher's tokenizer, so it can
   even align logits. Rules 2 and 3 then apply to it like to any student (its own parameter count, its
   base's tokenizer family).
2. ``capacity-ratio`` — the teacher must have between :data:`~stratos.planner.estimators.MIN_CAPACITY_RATIO`
   and :data:`~stratos.planner.estimators.MAX_CAPACITY_RATIO` times the student's parameters: a teacher not
   clearly larger adds little over plain fine-tuning, and past a few hundred times the capacity gap makes
   direct distillation ineffective (Mirzadeh et al. 2020, "Improved Knowledge Distillation via Teacher
   Assistant").
3. ``tokenizer-mismatch`` (alignment only) — logit-level alignment compares the teacher's and student's
   distributions token id by token id, so both must use the same tokenizer family. Padded vocabularies are
   fine: Qwen2.5-7B's 152,064 embedding rows and Qwen2.5-1.5B's 151,936 both cover the same 151,665 real
   ids, and the trainer slices both logit tensors to the shared real vocabulary. Any other pair can still
   use Knowledge Injection (teacher-written text, re-tokenised by the student).
4. ``text-only-teacher`` (alignment only) — an external teacher that returns text and no log-probabilities
   (every Bedrock model through Converse; a SageMaker endpoint with ``top_logprobs`` 0) has no distribution to
   align to: Knowledge Injection only.
5. An endpoint that returns top-k log-probabilities (``top_logprobs`` > 0) is aligned to by top-k KD on its own
   verified answers (``stratos_train.sequence_kd``), so rules 2-3 apply to it as to a loaded teacher: the same
   tokenizer family allows alignment over the shared real ids. The training job then measures what the catalog
   assumes (the endpoint's token ids must decode to the same text with the student's tokenizer) and falls back to
   injection when they do not.

An external teacher whose size is unpublished (Bedrock's Nova models) skips rule 2: its ratio is unknown, and
the capacity-gap term of the accuracy estimate is left out for it (:func:`pair_ratio`).
"""

from __future__ import annotations

from dataclasses import dataclass

from stratos.planner.catalog import ModelSpec
from stratos.planner.estimators import (
    CAPACITY_GAP_R0,
    MAX_CAPACITY_RATIO,
    MIN_CAPACITY_RATIO,
    Mode,
    capacity_ratio,
)
from stratos.spec import DistillationMode

SAME_MODEL = "same-model"
CAPACITY_RATIO = "capacity-ratio"
TOKENIZER_MISMATCH = "tokenizer-mismatch"
TEXT_ONLY_TEACHER = "text-only-teacher"


@dataclass(frozen=True, slots=True)
class PairVerdict:
    """What a teacher–student pair allows.

    Attributes:
        teacher, student: model ids.
        capacity_ratio: teacher parameters / student parameters.
        alignment: ``None`` when logit-level alignment is allowed, else the reason key.
        injection: ``None`` when Knowledge Injection is allowed, else the reason key.
        shared_vocab: real token ids both models share (what the alignment loss is computed over), or
            ``None`` when alignment is not allowed.
        detail: the verdict in words.
    """

    teacher: str
    student: str
    capacity_ratio: float
    alignment: str | None
    injection: str | None
    shared_vocab: int | None
    detail: str

    def reason(self, mode: Mode) -> str | None:
        """The reason ``mode`` is rejected for this pair, or ``None`` if it is allowed."""
        return self.alignment if mode == "alignment" else self.injection


def pair_ratio(teacher: ModelSpec, student: ModelSpec) -> float:
    """Teacher over student parameters; :data:`~stratos.planner.estimators.CAPACITY_GAP_R0` (no capacity-gap
    penalty) for an external teacher of unpublished size (``params`` 0)."""
    if teacher.params <= 0:
        return CAPACITY_GAP_R0
    return capacity_ratio(teacher, student)


def match_pair(teacher: ModelSpec, student: ModelSpec) -> PairVerdict:
    """Apply the matching rules (module docstring) to one pair."""
    ratio = pair_ratio(teacher, student)
    if teacher.id == student.id:
        return PairVerdict(
            teacher.id, student.id, ratio, SAME_MODEL, SAME_MODEL, None, "teacher and student are one model"
        )
    if teacher.access is not None and teacher.access.interface == "text":
        detail = f"{teacher.access.kind} teacher returns text only: injection only"
        if teacher.params <= 0:
            detail += " (size unpublished: capacity ratio not checked)"
        elif not MIN_CAPACITY_RATIO <= ratio <= MAX_CAPACITY_RATIO:
            detail = (
                f"teacher/student parameter ratio {ratio:.2f} is outside [{MIN_CAPACITY_RATIO:g}, "
                f"{MAX_CAPACITY_RATIO:g}]"
            )
            return PairVerdict(teacher.id, student.id, ratio, CAPACITY_RATIO, CAPACITY_RATIO, None, detail)
        return PairVerdict(teacher.id, student.id, ratio, TEXT_ONLY_TEACHER, None, None, detail)
    if teacher.params > 0 and not MIN_CAPACITY_RATIO <= ratio <= MAX_CAPACITY_RATIO:
        detail = (
            f"teacher/student parameter ratio {ratio:.2f} is outside [{MIN_CAPACITY_RATIO:g}, {MAX_CAPACITY_RATIO:g}]"
        )
        return PairVerdict(teacher.id, student.id, ratio, CAPACITY_RATIO, CAPACITY_RATIO, None, detail)
    if teacher.tokenizer_family != student.tokenizer_family:
        detail = f"tokenizers differ ({teacher.tokenizer_family} vs {student.tokenizer_family}): injection only"
        return PairVerdict(teacher.id, student.id, ratio, TOKENIZER_MISMATCH, None, None, detail)
    shared = min(teacher.vocab_size, student.vocab_size)
    detail = (
        f"same tokenizer ({teacher.tokenizer_family}); alignment over the {shared} shared real ids "
        f"(embedding rows {teacher.vocab_size_padded} / {student.vocab_size_padded})"
    )
    if teacher.access is not None:  # rule 5: top-k log-probabilities from an endpoint, the same tokenizer
        detail = (
            f"same tokenizer ({teacher.tokenizer_family}), top-{teacher.access.top_logprobs} log-probabilities: "
            f"top-k alignment on the endpoint's own answers over the {shared} shared real ids"
        )
    return PairVerdict(teacher.id, student.id, ratio, None, None, shared, detail)


def candidate_modes(requested: DistillationMode, verdict: PairVerdict) -> list[Mode]:
    """Modes that are candidates for this pair under the spec's ``distillation.mode``.

    ``auto`` considers alignment only where the tokenizers match (other pairs are injection-only, not
    rejected); an explicit ``alignment`` keeps the slot so that a mismatched pair is counted as rejected.
    """
    if requested is DistillationMode.ALIGNMENT:
        return ["alignment"]
    if requested is DistillationMode.INJECTION:
        return ["injection"]
    modes: list[Mode] = [] if verdict.alignment in (TOKENIZER_MISMATCH, TEXT_ONLY_TEACHER) else ["alignment"]
    modes.append("injection")
    return modes
