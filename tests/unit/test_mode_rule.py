"""The auto mode rule with task complexity (stratos_train.modes): the probe's harder half must be covered too."""

from __future__ import annotations

from typing import Any

import pytest

from stratos_contract.metrics import ModeEvidence
from stratos_train.modes import ModeError, ProbeResult, decide_mode


def test_the_harder_half_starts_at_the_probes_median_complexity() -> None:
    found = ProbeResult.from_scores([1, 1, 1, 0, 0, 1], 0.7, [1, 2, 2, 5, 6, 3])
    # sorted complexities 1 2 2 3 5 6: the median is (2 + 3) / 2 = 2.5; problems 3, 5 and 6 form the harder half
    assert found.complexity_cut == 2.5
    assert found.coverage == pytest.approx(4 / 6) and found.coverage_hard == pytest.approx(1 / 3)
    assert found.complexity == pytest.approx(19 / 6) and found.size == 6
    odd = ProbeResult.from_scores([0, 1, 1], 0.0, [4, 1, 9])
    assert odd.complexity_cut == 4 and odd.coverage_hard == pytest.approx(1 / 2)  # problems of complexity 4 and 9
    flat = ProbeResult.from_scores([1, 0, 1, 1], 0.0, [2, 2, 2, 2])
    assert flat.coverage_hard == flat.coverage == 0.75  # one complexity: the harder half is the whole probe
    with pytest.raises(ValueError, match="3 scores for 2"):
        ProbeResult.from_scores([1, 0, 1], 0.0, [1, 2])


def _decide(found: ProbeResult, requested: str = "auto", compatible: bool = True):
    return decide_mode(
        requested, compatible=compatible, threshold=0.5, probe=lambda: found, complexity_unit="reasoning steps"
    )


def test_a_teacher_covering_only_the_easy_problems_teaches_by_injection() -> None:
    # Coverage 0.625 overall, but 1 of 4 on the problems of 4 or more steps.
    found = ProbeResult.from_scores([1, 1, 1, 1, 1, 0, 0, 0], 0.7, [1, 1, 2, 3, 4, 5, 6, 7])
    decision = _decide(found)
    assert found.coverage == 0.625 and found.coverage_hard == 0.25
    assert decision.mode == "injection" and not decision.forced
    assert "harder half" in decision.reason and "3.5 reasoning steps" in decision.reason
    evidence = ModeEvidence.model_validate(decision.evidence())
    assert evidence.coverage_hard == 0.25 and evidence.complexity_cut == 3.5


def test_a_teacher_covering_the_whole_range_is_aligned_to() -> None:
    found = ProbeResult.from_scores([1, 0, 1, 1, 0, 1, 1, 1], 0.9, [1, 1, 2, 3, 4, 5, 6, 7])
    decision = _decide(found)
    assert decision.mode == "alignment" and found.coverage_hard == 0.75
    assert "0.75 on the harder half" in decision.reason


def test_low_coverage_is_injection_and_forced_modes_skip_the_probe() -> None:
    assert _decide(ProbeResult.from_scores([0, 0, 1, 0], 0.1, [1, 2, 3, 4])).mode == "injection"

    def never() -> ProbeResult:
        raise AssertionError("a forced mode must not probe")

    forced = decide_mode("alignment", compatible=True, threshold=0.5, probe=never)
    assert forced.mode == "alignment" and forced.forced and forced.coverage_hard is None
    with pytest.raises(ModeError, match="same tokenizer"):
        decide_mode("alignment", compatible=False, threshold=0.5, probe=never)
    differ = decide_mode("auto", compatible=False, threshold=0.5, probe=never)
    assert differ.mode == "injection" and "tokenizers differ" in differ.reason


class _Asks:
    """A task whose prompt is the problem's question (what rationale_prompt reads)."""

    def prompt(self, example: Any, few_shot: Any = ()) -> list[dict[str, str]]:
        return [{"role": "user", "content": example.problem["question"]}]


@pytest.mark.parametrize(
    ("answer", "stated"),
    [
        ("Answer: went", "went"),  # a JSONL chat target that is its own answer line
        ("Go is irregular.\nAnswer: went", "went"),  # reasoning, then the answer line
        ("went", "went"),
        (("1m", "4m"), "1m 4m"),  # a set answer (Mahjong's winning tiles)
    ],
)
def test_the_rationale_prompt_states_the_answer_bare(answer, stated) -> None:
    from stratos_train.modes import rationale_prompt
    from stratos_train.tasks.base import Example

    example = Example(id="x", problem={"question": "What is the past tense of 'go'?"}, answer=answer)
    [_, user] = rationale_prompt(_Asks(), example, "")  # type: ignore[arg-type]
    assert f"The correct answer is: {stated}\n" in user["content"]
    assert user["content"].endswith(f"final line 'Answer: {stated}'.") and "Answer: Answer" not in user["content"]


def test_a_verified_rationale_longer_than_the_students_budget_is_not_kept() -> None:
    from stratos_train.modes import build_injection_set
    from stratos_train.tasks import get_task

    task = get_task("mahjong-winning-tiles")  # type: ignore[arg-type]
    examples = task.examples("train", 3, 0)

    def explain(prompts: list) -> list[str]:
        # Every rationale states the right answer; the second explains at length.
        answers = [" ".join(ex.answer) for ex in examples]
        return [f"{'Check every wait. ' * (20 if i == 1 else 1)}\nAnswer: {a}" for i, a in enumerate(answers)]

    pairs, stats = build_injection_set(
        task, examples, teacher_generate=explain, rationale_samples=3, domain_notes="", fits=lambda t: len(t) < 100
    )
    assert (stats.teacher_accepted, stats.teacher_rejected) == (2, 1)
    assert stats.rejection_reasons == {"longer than the student's answer budget": 1}
    assert pairs[1][1] == task.target(examples[1])  # the verified trace stands in
