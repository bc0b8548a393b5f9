"""GSM8K: grade-school math word problems whose answer is one number (Cobbe et al. 2021, arXiv:2110.14168).

Data: a directory holding the official files ``train.jsonl`` (7,473 problems) and ``test.jsonl`` (1,319),
one ``{"question": str, "answer": str}`` per line. The answer is a rationale, one calculation per line
with calculator annotations ``<<48/2=24>>``, then a last line ``#### 72``. Split ``train`` reads
``train.jsonl``, split ``eval`` reads ``test.jsonl``; ``n`` draws a seeded subsample (nested across ``n``).

* Reasoning: the rationale without its ``####`` line; calculator annotations removed by default (they are
  tool-call syntax, not prose a student should imitate), kept with ``keep_annotations=True``.
* Canonical answer: the ``####`` number with thousands commas removed (``1,200`` -> ``1200``).
* Extraction from a completion (:func:`stratos_train.tasks.scoring.extract_number`): the ``####`` line, then
  ``\\boxed{}``, then an ``Answer:``/``answer is`` line, then the last number; commas, currency and units
  stripped. Scored by numeric equality (exact, as fractions).
* Verifier: the answer must equal the reference; a rationale must end at the reference number and every
  calculator annotation in it must be right (to 1 %, the dataset rounds). Arithmetic written as prose is not
  checked: "2/3 = 40" in the official data means "2/3 of 60 = 40".
* Complexity: reasoning steps, the non-empty lines of the rationale (mean 3.58 on train).
"""

from __future__ import annotations

import ast
import json
import random
import re
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

from stratos_contract.tasks import TASKS
from stratos_train.tasks.base import (
    Answer,
    Example,
    Message,
    Score,
    Split,
    TaskBase,
    TaskDataError,
    Verdict,
    largest_remainder,
    sample_indices,
)
from stratos_train.tasks.scoring import extract_number, format_number, parse_number

NAME = "gsm8k"
FILES: dict[str, str] = {"train": "train.jsonl", "eval": "test.jsonl"}

INSTRUCTIONS = (
    "Solve the grade-school math problem. Reason step by step, one short step per line, then give the final "
    "number on a last line '#### <number>'."
)

_ANNOTATION_RE = re.compile(r"<<([^<>]*)>>")
_FINAL_RE = re.compile(r"^####\s*(.+?)\s*$", re.MULTILINE)
#: Relative tolerance of a calculator annotation's result; the dataset rounds some (``10/3=3.33``).
ANNOTATION_TOLERANCE = Fraction(1, 100)


def split_rationale(answer_field: str) -> tuple[str, str]:
    """Split an official answer field into (rationale, final answer text after ``####``).

    Raises:
        ValueError: the field has no ``####`` line, or more than one.
    """
    finals = _FINAL_RE.findall(answer_field)
    if len(finals) != 1:
        raise ValueError(f"expected one '#### <number>' line, found {len(finals)}")
    rationale = _FINAL_RE.sub("", answer_field).strip()
    return rationale, finals[0]


def strip_annotations(text: str) -> str:
    """Remove calculator annotations: ``48/2 = <<48/2=24>>24`` -> ``48/2 = 24``."""
    return _ANNOTATION_RE.sub("", text)


def reasoning_steps(rationale: str) -> int:
    """Reasoning steps of a rationale: its non-empty lines (GSM8K writes one calculation per line)."""
    return sum(1 for line in rationale.splitlines() if line.strip())


def evaluate_arithmetic(expression: str) -> Fraction:
    """Exact value of an arithmetic expression of numbers, ``+ - * / //`` (``x``, ``×``, ``÷`` read as ``*``
    and ``/``), unary minus and parentheses.

    Raises:
        ValueError: anything else (names, calls, powers, division by zero, syntax errors).
    """
    text = expression.strip().replace(",", "").replace("$", "").replace("x", "*").replace("×", "*").replace("÷", "/")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not arithmetic: {expression!r}") from exc

    def value(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return Fraction(str(node.value))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            inner = value(node.operand)
            return -inner if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div | ast.FloorDiv):
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if right == 0:
                raise ValueError(f"division by zero in {expression!r}")
            return left / right if isinstance(node.op, ast.Div) else Fraction(left // right)
        raise ValueError(f"not arithmetic: {expression!r}")

    return value(tree.body)


def check_annotations(text: str) -> list[str]:
    """One sentence per wrong calculator annotation ``<<lhs=rhs>>`` in ``text`` (to :data:`ANNOTATION_TOLERANCE`
    relative, at least 0.01 absolute)."""
    problems = []
    for match in _ANNOTATION_RE.finditer(text):
        body = match.group(1)
        if "=" not in body:
            problems.append(f"annotation <<{body}>> has no '='")
            continue
        lhs, rhs = body.rsplit("=", 1)
        try:
            left, right = evaluate_arithmetic(lhs), evaluate_arithmetic(rhs)
        except ValueError as exc:
            problems.append(f"annotation <<{body}>>: {exc}")
            continue
        if abs(left - right) > max(Fraction(1, 100), abs(right) * ANNOTATION_TOLERANCE):
            problems.append(f"annotation <<{body}>>: {lhs.strip()} is {format_number(left)}")
    return problems


class Gsm8kTask(TaskBase):
    """GSM8K (module docstring has the rules).

    Args:
        data_dir: directory with ``train.jsonl`` and ``test.jsonl``; needed by :meth:`examples` only (scoring
            and verifying work without data).
        keep_annotations: keep ``<<...>>`` calculator annotations in the reasoning.
    """

    name = NAME
    # The task's facts are the contract's (stratos_contract.tasks), the ones the Lambdas plan with.
    metric = TASKS[NAME].required_metric()
    has_verifier = TASKS[NAME].has_verifier
    has_generator = TASKS[NAME].has_generator
    complexity_unit = TASKS[NAME].complexity_unit

    def __init__(self, data_dir: str | Path | None = None, keep_annotations: bool = False) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.keep_annotations = keep_annotations

    def examples(self, split: Split, n: int | None = None, seed: int = 0) -> list[Example]:
        """Examples of ``split`` (all, or a seeded subsample of ``n``) in file order.

        Raises:
            TaskDataError: no data directory, a missing file (named), or a malformed line (file:line).
        """
        if self.data_dir is None:
            raise TaskDataError("gsm8k needs a data directory holding train.jsonl and test.jsonl (--data DIR)")
        if not self.data_dir.is_dir():
            raise TaskDataError(f"GSM8K data directory {self.data_dir} does not exist")
        path = self.data_dir / FILES[split]
        if not path.is_file():
            raise TaskDataError(f"GSM8K file {path} does not exist (expected the official {FILES[split]})")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise TaskDataError(f"cannot read {path}: {exc}") from exc
        numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
        return [self._parse(path, split, *numbered[i]) for i in sample_indices(len(numbered), n, seed)]

    def _parse(self, path: Path, split: Split, lineno: int, line: str) -> Example:
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskDataError(f"{where}: not JSON: {exc.msg}") from exc
        if not isinstance(record, dict):
            raise TaskDataError(f"{where}: expected an object with 'question' and 'answer'")
        question, answer_field = record.get("question"), record.get("answer")
        if not isinstance(question, str) or not question.strip():
            raise TaskDataError(f"{where}: 'question' must be a non-empty string")
        if not isinstance(answer_field, str):
            raise TaskDataError(f"{where}: 'answer' must be a string")
        try:
            rationale, final = split_rationale(answer_field)
        except ValueError as exc:
            raise TaskDataError(f"{where}: 'answer': {exc}") from exc
        value = parse_number(final)
        if value is None:
            raise TaskDataError(f"{where}: the '####' line has no number: {final!r}")
        reasoning = rationale if self.keep_annotations else strip_annotations(rationale)
        return Example(
            id=f"gsm8k-{FILES[split].removesuffix('.jsonl')}-{lineno}",
            problem={"question": question.strip()},
            answer=format_number(value),
            reasoning=reasoning,
            meta={"line": lineno, "steps": reasoning_steps(rationale)},
        )

    def _instructions(self) -> str | None:
        return INSTRUCTIONS

    def _question(self, example: Example) -> list[Message]:
        return [{"role": "user", "content": str(example.problem["question"])}]

    def target(self, example: Example) -> str:
        final = f"#### {example.answer}"
        return f"{example.reasoning}\n{final}" if example.reasoning else final

    def extract_answer(self, completion: str) -> str | None:
        value = extract_number(completion)
        return None if value is None else format_number(value)

    def score(self, example: Example, completion: str) -> Score:
        """Numeric equality of the extracted final number and the reference; no partial credit."""
        predicted = extract_number(completion)
        correct = predicted is not None and predicted == _reference(example)
        return Score(
            correct=correct,
            credit=float(correct),
            predicted=None if predicted is None else format_number(predicted),
        )

    def verify(self, example: Example, answer: Answer, reasoning: str | None = None) -> Verdict:
        """Accept when ``answer`` equals the reference and, if given, ``reasoning`` ends at the reference
        number and its calculator annotations are right."""
        reference = _reference(example)
        reasons: list[str] = []
        given = extract_number(answer) if isinstance(answer, str) else None
        if given is None:
            reasons.append(f"answer {answer!r} has no number")
        elif given != reference:
            reasons.append(f"answer {format_number(given)} is not the reference {example.answer}")
        if reasoning:
            final = extract_number(reasoning)
            if final is None:
                reasons.append("the rationale states no number")
            elif final != reference:
                reasons.append(f"the rationale ends at {format_number(final)}, not {example.answer}")
            reasons.extend(check_annotations(reasoning))
        return Verdict(ok=not reasons, reasons=tuple(reasons), reasoning_checked=bool(reasoning))

    def complexity(self, example: Example) -> float:
        return float(reasoning_steps(example.reasoning))

    def strata(self) -> tuple[str, ...]:
        """Reasoning steps of the reference rationale: 1-2, 3, 4, 5+ (about a quarter of train each)."""
        return STEP_STRATA

    def stratum(self, example: Example) -> str | None:
        steps = example.meta.get("steps")
        return step_stratum(steps if isinstance(steps, int) else reasoning_steps(example.reasoning))

    def stratified_examples(self, split: Split, n: int, seed: int, weights: Mapping[str, float]) -> list[Example]:
        """``n`` examples of ``split`` drawn toward the step strata by ``weights`` (largest remainder), each
        stratum sampled without replacement; a stratum with too few examples gives what it has and the rest
        goes to the others in proportion.

        Raises:
            TaskDataError: the split holds fewer than ``n`` examples, or as :meth:`examples`.
        """
        pool = self.examples(split, None, seed)
        if len(pool) < n:
            raise TaskDataError(f"gsm8k {split} has {len(pool)} examples, {n} requested")
        by: dict[str, list[Example]] = {label: [] for label in STEP_STRATA}
        for example in pool:
            by[self.stratum(example) or STEP_STRATA[-1]].append(example)
        rng = random.Random(seed)
        for items in by.values():
            rng.shuffle(items)
        quota = largest_remainder(n, {k: weights.get(k, 0.0) if by[k] else 0.0 for k in STEP_STRATA})
        picked: list[Example] = []
        for label in STEP_STRATA:
            picked += by[label][: quota[label]]
        spare = [ex for label in STEP_STRATA for ex in by[label][quota[label] :]]
        rng.shuffle(spare)
        picked += spare[: n - len(picked)]
        rng.shuffle(picked)
        return picked


#: Strata of GSM8K by reasoning steps (non-empty rationale lines) of the reference.
STEP_STRATA: tuple[str, ...] = ("1-2 steps", "3 steps", "4 steps", "5+ steps")


def step_stratum(steps: int) -> str:
    """``2`` -> ``"1-2 steps"``; ``7`` -> ``"5+ steps"``."""
    if steps <= 2:
        return STEP_STRATA[0]
    return STEP_STRATA[min(steps, 5) - 2]


def _reference(example: Example) -> Fraction:
    value = parse_number(str(example.answer))
    if value is None:
        raise ValueError(f"example {example.id} has no numeric reference answer: {example.answer!r}")
    return value
