"""Choosing and building the distillation mode.

**Auto rule** (documented contract; the decision and its evidence go into metrics.json):

1. If the teacher and student tokenizers differ (vocabulary fingerprints differ), logit-level alignment is
   impossible: **injection**.
2. Probe the teacher greedily on ``probe_size`` TRAINING problems (never the eval set). Coverage ``c`` is its
   exact accuracy there; partial credit is recorded too.
3. Task complexity ``k`` is the task's own measure per problem (Mahjong: decompositions to check; GSM8K:
   reasoning steps). Its mean over the probe is recorded, and it splits the probe: the **harder half** is the
   probed problems whose ``k`` is at or above the probe's median ``k_cut``; ``c_hard`` is the teacher's exact
   accuracy on them (``c_hard = c`` when every probed problem has the same ``k``).
4. **alignment** iff ``c >= threshold`` (default 0.5) **and** ``c_hard >= threshold``: the teacher's
   distributions carry the skill across the task's range of difficulty, so matching them teaches it.
   Otherwise **injection**: distributions of a teacher that fails the task, or covers its easy problems only,
   teach its failure exactly where the task is hard (alignment imitates every step of every problem), so the
   student learns from verified data instead. A teacher with ``c = 0.6`` that solves its one- and two-step
   problems but few of its long ones is such a case: the harder half decides.

The spec (``mode = alignment | injection``) overrides the rule; a forced alignment with incompatible
tokenizers is an error, not a silent switch.

**What the teacher exposes** (``teacher_interface``, recorded in the evidence) comes first:

* ``logits`` — a model the job loads (every rule above applies);
* ``top-k`` — an external endpoint that returns top-k log-probabilities per generated token: alignment is top-k
  KD on the teacher's own verified answers (:mod:`stratos_train.sequence_kd`). Rule 1's tokenizer test is then
  measured, not assumed: the endpoint's token ids and texts on the first training prompts must be the student's
  (:func:`~stratos_train.sequence_kd.check_token_space`); if any differs, or the container returns no top-k,
  the mode is injection (a forced alignment is a :class:`ModeError` naming the mismatch). Rules 2-4 apply as for
  a loaded teacher;
* ``text`` — an external teacher that returns text only (a Bedrock model; an endpoint asked without top-k):
  there are no distributions to match, so the mode is **injection** whatever the coverage. ``auto`` still
  probes it (the same probe and scoring as a loaded teacher) so the evidence records its coverage and the
  task's complexity; a forced alignment is a :class:`ModeError` naming why.

**Knowledge Injection data** (:func:`build_injection_set`): (a) reverse-synthesised or loaded problems with
a verified programmatic/reference reasoning trace; (b) optionally the teacher writes a rationale
CONDITIONED on the known answer (and the spec's domain notes in its system prompt), kept only when the
task's verifier accepts it; (c) each training target uses the teacher's accepted rationale when there is one,
else the verified trace. Counts of each, and the rejection rate, are reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from stratos_train.tasks.base import Example, Message, NoVerifierError, Task
from stratos_train.tasks.scoring import answer_segment

Mode = Literal["alignment", "injection"]
TeacherInterface = Literal["logits", "top-k", "text"]
"""What a teacher exposes to the job (module docstring)."""


class ModeError(ValueError):
    """A forced mode cannot run (e.g. alignment between different tokenizers)."""


@dataclass(frozen=True)
class ModeDecision:
    """The chosen mode and why.

    Attributes:
        mode: alignment or injection.
        forced: True when the spec chose it.
        reason: one sentence, for people.
        coverage: teacher exact accuracy on the probe (None when not probed), 0..1.
        coverage_partial: teacher partial credit on the probe, 0..1.
        complexity: mean task complexity over the probe, in ``complexity_unit``.
        coverage_hard: teacher exact accuracy on the probe's harder half (complexity >= ``complexity_cut``),
            0..1 (None when not probed).
        complexity_cut: the probe's median complexity, where its harder half starts.
        tokenizers_compatible: teacher and student share a vocabulary (False when unknown: a text-only teacher).
        teacher_interface: what the teacher exposes (:data:`TeacherInterface`).
    """

    mode: Mode
    forced: bool
    reason: str
    coverage: float | None = None
    coverage_partial: float | None = None
    complexity: float | None = None
    complexity_unit: str = ""
    probe_size: int = 0
    threshold: float = 0.5
    tokenizers_compatible: bool = True
    teacher_interface: TeacherInterface = "logits"
    coverage_hard: float | None = None
    complexity_cut: float | None = None

    def evidence(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProbeResult:
    """The teacher probe's scores (module docstring, steps 2-3).

    Attributes:
        coverage: exact accuracy over the probe, 0..1.
        partial: mean partial credit, 0..1.
        complexity: mean task complexity, in the task's unit.
        size: problems probed, count.
        coverage_hard: exact accuracy on the problems with complexity >= ``complexity_cut``, 0..1.
        complexity_cut: the median complexity of the probe.
    """

    coverage: float
    partial: float
    complexity: float
    size: int
    coverage_hard: float
    complexity_cut: float

    @classmethod
    def from_scores(cls, exact: Sequence[float], partial: float, complexities: Sequence[float]) -> ProbeResult:
        """From per-problem exact scores (1.0 / 0.0) and complexities, same order.

        Raises:
            ValueError: the two lists differ in length.
        """
        if len(exact) != len(complexities):
            raise ValueError(f"{len(exact)} scores for {len(complexities)} complexities")
        if not exact:
            return cls(0.0, partial, 0.0, 0, 0.0, 0.0)
        ordered = sorted(complexities)
        mid = len(ordered) // 2
        cut = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
        hard = [e for e, k in zip(exact, complexities, strict=True) if k >= cut]
        return cls(
            coverage=sum(exact) / len(exact),
            partial=partial,
            complexity=sum(complexities) / len(complexities),
            size=len(exact),
            coverage_hard=sum(hard) / len(hard),
            complexity_cut=cut,
        )


def check_interface(requested: str, interface: TeacherInterface, why: str = "") -> None:
    """Refuse a forced ``alignment`` with a teacher that exposes text only.

    Args:
        requested: ``auto``, ``alignment`` or ``injection``.
        interface: what the teacher exposes.
        why: the reason it exposes no more, for the message (e.g. "Bedrock's Converse API returns no
            log-probabilities").

    Raises:
        ModeError: ``alignment`` with a ``text`` teacher, naming why.
    """
    if requested == "alignment" and interface == "text":
        raise ModeError(
            "distillation.mode 'alignment' needs the teacher's token distributions, and this teacher returns text "
            f"only{f' ({why})' if why else ''}: use 'injection' or 'auto' (Knowledge Injection from its text)"
        )


def decide_mode(
    requested: str,
    *,
    compatible: bool,
    threshold: float,
    probe: Callable[[], ProbeResult] | None,
    complexity_unit: str = "",
    interface: TeacherInterface = "logits",
    interface_why: str = "",
) -> ModeDecision:
    """Apply the auto rule (module docstring) or honour a forced mode.

    Args:
        requested: ``auto``, ``alignment`` or ``injection``.
        compatible: tokenizer fingerprints equal, or for a ``top-k`` teacher the token check passed (ignored for a
            ``text`` teacher: recorded as False).
        threshold: coverage needed for alignment, 0..1.
        probe: runs the teacher probe (:class:`ProbeResult`); only called in auto mode with compatible
            tokenizers, or with a ``text`` teacher (for the evidence).
        interface: what the teacher exposes; ``text`` means injection (module docstring).
        interface_why: why a ``text`` teacher exposes no more, or why a ``top-k`` teacher's token check failed,
            for the messages.

    Raises:
        ModeError: ``alignment`` forced with incompatible tokenizers or with a ``text`` teacher.
    """
    check_interface(requested, interface, interface_why)
    if interface == "text":
        compatible = False  # no distributions to share, whatever its tokenizer
    if requested == "injection":
        return ModeDecision(
            "injection",
            True,
            "forced by the spec",
            threshold=threshold,
            tokenizers_compatible=compatible,
            teacher_interface=interface,
        )
    if interface == "text":
        if probe is None:
            raise ValueError("auto mode needs a probe")
        found = probe()
        reason = (
            f"the teacher returns text only{f' ({interface_why})' if interface_why else ''}: no distributions to "
            f"align to, so learn from verified data (probe coverage {found.coverage:.2f})"
        )
        return _probed("injection", reason, found, complexity_unit, threshold, False, "text")
    differ = "teacher and student tokenizers differ"
    if interface == "top-k":
        differ = f"the endpoint's top-k tokens are not the student's ({interface_why or 'token check failed'})"
    if requested == "alignment":
        if not compatible:
            raise ModeError(
                "distillation.mode 'alignment' needs teacher and student with the same tokenizer; "
                f"{differ} (use 'injection' or 'auto')"
            )
        return ModeDecision(
            "alignment",
            True,
            "forced by the spec",
            threshold=threshold,
            tokenizers_compatible=True,
            teacher_interface=interface,
        )
    if not compatible:
        return ModeDecision(
            "injection",
            False,
            f"{differ}: logit-level alignment is impossible",
            threshold=threshold,
            tokenizers_compatible=False,
            complexity_unit=complexity_unit,
            teacher_interface=interface,
        )
    if probe is None:
        raise ValueError("auto mode needs a probe")
    found = probe()
    unit = f" {complexity_unit}" if complexity_unit else ""
    mode: Mode = "injection"
    if found.coverage < threshold:
        reason = (
            f"teacher does not cover the task (coverage {found.coverage:.2f} < {threshold:.2f}): "
            "learn from verified, reverse-synthesised data instead"
        )
    elif found.coverage_hard < threshold:
        reason = (
            f"teacher covers the easier problems only (coverage {found.coverage:.2f}, but "
            f"{found.coverage_hard:.2f} < {threshold:.2f} on the harder half, complexity >= "
            f"{found.complexity_cut:g}{unit}): aligning to it would teach its failures where the task is hard; "
            "learn from verified data instead"
        )
    else:
        mode = "alignment"
        reason = (
            f"teacher covers the task (coverage {found.coverage:.2f}, {found.coverage_hard:.2f} on the harder half; "
            f">= {threshold:.2f}): match its distributions"
        )
    return _probed(mode, reason, found, complexity_unit, threshold, True, interface)


def _probed(
    mode: Mode,
    reason: str,
    found: ProbeResult,
    complexity_unit: str,
    threshold: float,
    compatible: bool,
    interface: TeacherInterface,
) -> ModeDecision:
    """An ``auto`` decision with the probe's evidence."""
    return ModeDecision(
        mode,
        False,
        reason,
        coverage=found.coverage,
        coverage_partial=found.partial,
        complexity=found.complexity,
        complexity_unit=complexity_unit,
        probe_size=found.size,
        threshold=threshold,
        tokenizers_compatible=compatible,
        teacher_interface=interface,
        coverage_hard=found.coverage_hard,
        complexity_cut=found.complexity_cut,
    )


@dataclass
class InjectionStats:
    """Provenance of the Knowledge Injection training set."""

    examples: int = 0
    teacher_asked: int = 0
    teacher_accepted: int = 0
    teacher_rejected: int = 0
    programmatic_reasoning: int = 0
    reference_reasoning: int = 0
    rejection_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def teacher_rejection_rate(self) -> float:
        return self.teacher_rejected / self.teacher_asked if self.teacher_asked else 0.0


def rationale_prompt(task: Task, example: Example, domain_notes: str) -> list[Message]:
    """Ask the teacher to explain a KNOWN answer (answer-conditioned rationale), with the domain notes.

    The answer is stated bare: a reference that carries its own answer line (a JSONL chat target such as
    ``Answer: went``, or reasoning ending in one) is cut to what follows its last answer marker, so the prompt
    never asks for ``Answer: Answer: went``.
    """
    system = "You are an expert tutor. Explain the solution step by step, briefly and precisely."
    if domain_notes:
        system += "\n\nDomain rules:\n" + domain_notes.strip()
    raw = " ".join(example.answer) if isinstance(example.answer, tuple) else str(example.answer)
    answer = answer_segment(raw) or raw.strip()
    question = task.prompt(example)[-1]["content"]
    user = f"{question}\n\nThe correct answer is: {answer}\nExplain why, then end with a final line 'Answer: {answer}'."
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def build_injection_set(
    task: Task,
    examples: Sequence[Example],
    *,
    teacher_generate: Callable[[list[list[Message]]], list[str]] | None,
    rationale_samples: int,
    domain_notes: str,
    fits: Callable[[str], bool] | None = None,
) -> tuple[list[tuple[list[Message], str]], InjectionStats]:
    """(prompt messages, target text) pairs for Knowledge Injection, and their provenance.

    Every kept target is verified: programmatic traces come from the task's generator/verifier (or the
    dataset's reference rationale); a teacher rationale is kept only if ``task.verify`` accepts the answer
    it states together with its reasoning. Tasks without a verifier accept a teacher rationale only when its
    extracted answer scores correct against the reference. ``fits`` (when given) must also accept it: the job
    passes "no longer than the student's decoding budget", since a student trained to explain past its
    ``max_new_tokens`` never reaches its answer line when it is scored or served (reason
    ``longer than the student's answer budget``).
    """
    stats = InjectionStats()
    accepted: dict[int, str] = {}
    if teacher_generate is not None and rationale_samples > 0:
        asked = list(range(min(rationale_samples, len(examples))))
        prompts = [rationale_prompt(task, examples[i], domain_notes) for i in asked]
        texts = teacher_generate(prompts)
        stats.teacher_asked = len(asked)
        for i, text in zip(asked, texts, strict=True):
            example = examples[i]
            answer = task.extract_answer(text)
            reasoning = text.rsplit("Answer:", 1)[0].strip()
            why: tuple[str, ...]
            if answer is None:
                ok, why = False, ("no final answer line",)
            else:
                try:
                    verdict = task.verify(example, answer, reasoning)
                    ok, why = verdict.ok, verdict.reasons
                except NoVerifierError:
                    ok = task.score(example, text).correct
                    why = () if ok else ("answer differs from the reference",)
            if ok and reasoning and fits is not None and not fits(text.strip()):
                ok, why = False, ("longer than the student's answer budget",)
            if ok and reasoning:
                accepted[i] = text.strip()  # verified: its reasoning and its own final answer line
                stats.teacher_accepted += 1
            else:
                stats.teacher_rejected += 1
                for reason in why or ("empty reasoning",):
                    stats.rejection_reasons[reason] = stats.rejection_reasons.get(reason, 0) + 1
    pairs: list[tuple[list[Message], str]] = []
    for i, example in enumerate(examples):
        if i in accepted:
            target = accepted[i]
        else:
            target = task.target(example)
            if task.has_generator:
                stats.programmatic_reasoning += 1
            else:
                stats.reference_reasoning += 1
        pairs.append((task.prompt(example), target))
    stats.examples = len(pairs)
    return pairs, stats
