"""GSM8K: answer extraction, numeric scorer, rationale verifier, loader (real data skips when absent)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from stratos.tasks_meta import task_meta
from stratos_train.tasks import TaskDataError, get_task
from stratos_train.tasks.base import Example
from stratos_train.tasks.gsm8k import Gsm8kTask, check_annotations, evaluate_arithmetic, split_rationale
from stratos_train.tasks.scoring import extract_number, format_number


@pytest.mark.parametrize(
    ("completion", "number"),
    [
        ("The answer is 1,234.", "1234"),
        ("$18.00", "18"),
        ("18 eggs", "18"),
        ("She pays $1,234.56 in total.", "1234.56"),
        ("Natalia sold 48/2 = 24 clips.\n#### 72", "72"),
        ("#### 1,200", "1200"),
        ("#### 72\nActually, make that 73", "72"),  # the #### line wins over later text
        ("so the total is \\boxed{42} apples. 7 were left", "42"),
        ("**Answer:** -5 degrees", "-5"),
        ("Answer: 25%.", "25"),
        ("between 10-15 people came, 12 on average", "12"),  # a hyphen is not a minus sign
        ("The temperature fell to -3.", "-3"),
        ("It takes 3.50 hours", "3.5"),
        ("The answer is 3/4 of a cup", "0.75"),
        ("I think 1/3", "1/3"),
        ("Step 1: 5 + 3 = 8\nStep 2: 8 * 2 = 16", "16"),
        ("the numbers are 3,4,5", "5"),
        ("no number here", None),
    ],
)
def test_extract_number(completion: str, number: str | None) -> None:
    value = extract_number(completion)
    assert (format_number(value) if value is not None else None) == number


def test_format_number() -> None:
    assert [format_number(Fraction(x)) for x in ("18.00", "-3", "2.5", "1/3", "1/8", "-7/4")] == [
        "18",
        "-3",
        "2.5",
        "1/3",
        "0.125",
        "-1.75",
    ]


def _example(answer: str = "18", reasoning: str = "") -> Example:
    return Example(id="gsm8k-test-1", problem={"question": "How many eggs?"}, answer=answer, reasoning=reasoning)


@pytest.mark.parametrize(
    ("completion", "correct"),
    [
        ("She sells 16 - 3 - 4 = 9 eggs, 9 * 2 = 18 dollars.\n#### 18", True),
        ("The answer is $18.00", True),
        ("18 eggs", True),
        ("#### 18.0", True),
        ("#### 17", False),
        ("I don't know", False),
        ("The answer is 180", False),
    ],
)
def test_numeric_scorer(completion: str, correct: bool) -> None:
    score = Gsm8kTask().score(_example(), completion)
    assert score.correct is correct and score.credit == float(correct)


def test_scorer_with_thousands_reference() -> None:
    task = Gsm8kTask()
    assert task.score(_example("1234"), "The answer is 1,234.").correct
    assert task.score(_example("1234"), "#### 1234").predicted == "1234"
    assert task.score(_example("1234"), "nothing").predicted is None


def test_verifier_checks_answer_final_number_and_annotations() -> None:
    task = Gsm8kTask()
    ex = _example("72")
    good = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nAltogether 48+24 = <<48+24=72>>72.\n#### 72"
    verdict = task.verify(ex, "72", good)
    assert verdict.ok and verdict.reasoning_checked
    assert task.verify(ex, "$72").ok and not task.verify(ex, "72").reasoning_checked
    wrong_answer = task.verify(ex, "71", good)
    assert not wrong_answer.ok and "answer 71 is not the reference 72" in wrong_answer.reasons
    ends_elsewhere = task.verify(ex, "72", "48 + 24 = 70\n#### 70")
    assert "the rationale ends at 70, not 72" in ends_elsewhere.reasons
    bad_calc = task.verify(ex, "72", "48/2 = <<48/2=25>>25\n25 + 47 = 72\n#### 72")
    assert not bad_calc.ok and any("48/2 is 24" in r for r in bad_calc.reasons)
    assert "the rationale states no number" in task.verify(ex, "72", "I guessed.").reasons
    assert "has no number" in task.verify(ex, ("72",)).reasons[0]


def test_annotations_allow_dataset_rounding_and_fraction_results() -> None:
    assert check_annotations("<<10/3=3.33>> <<3/4=3/4>> <<560//10=56>> <<2*3=6>>") == []
    assert len(check_annotations("<<2*3=7>> <<2**3=8>> <<1/0=1>> <<2*3>>")) == 4


@pytest.mark.parametrize("expression", ["__import__('os')", "2**3", "abs(-1)", "x1", "1/0", "1 +"])
def test_evaluate_arithmetic_refuses_non_arithmetic(expression: str) -> None:
    with pytest.raises(ValueError):
        evaluate_arithmetic(expression)


def test_evaluate_arithmetic() -> None:
    assert evaluate_arithmetic("(14+12+16)/3") == 14
    assert evaluate_arithmetic("0.2 x 50") == 10
    assert evaluate_arithmetic("-3 + 1,000") == 997


def test_split_rationale() -> None:
    assert split_rationale("a = 1\nb = 2\n#### 2") == ("a = 1\nb = 2", "2")
    with pytest.raises(ValueError, match="found 0"):
        split_rationale("no final line")
    with pytest.raises(ValueError, match="found 2"):
        split_rationale("#### 1\n#### 2")


def test_prompt_target_and_few_shot() -> None:
    task = Gsm8kTask()
    ex = _example("72", "48/2 = 24\n48+24 = 72")
    shot = Example(id="gsm8k-train-9", problem={"question": "1+1?"}, answer="2", reasoning="1+1 = 2")
    messages = task.prompt(ex, [shot])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == "1+1 = 2\n#### 2" and messages[3]["content"] == "How many eggs?"
    assert task.target(ex) == "48/2 = 24\n48+24 = 72\n#### 72"
    assert task.complexity(ex) == 2.0


# --------------------------------------------------------------------------------------------------------
# Loader


def _write(dirpath: Path, name: str, lines: list[str]) -> None:
    (dirpath / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_loader_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError, match="needs a data directory"):
        Gsm8kTask().examples("train")
    with pytest.raises(TaskDataError, match=f"GSM8K data directory {tmp_path / 'nope'} does not exist"):
        Gsm8kTask(tmp_path / "nope").examples("train")
    with pytest.raises(TaskDataError, match=f"{tmp_path / 'test.jsonl'} does not exist"):
        Gsm8kTask(tmp_path).examples("eval")
    good = json.dumps({"question": "1+1?", "answer": "1+1 = <<1+1=2>>2\n#### 2"})
    _write(tmp_path, "train.jsonl", [good, "", "{not json"])
    with pytest.raises(TaskDataError, match=r"train.jsonl:3: not JSON"):
        Gsm8kTask(tmp_path).examples("train")
    _write(tmp_path, "train.jsonl", [good, json.dumps({"question": "q", "answer": "no final"})])
    with pytest.raises(TaskDataError, match=r"train.jsonl:2: 'answer': expected one '#### <number>' line"):
        Gsm8kTask(tmp_path).examples("train")
    _write(tmp_path, "train.jsonl", [json.dumps({"question": "", "answer": "#### 2"})])
    with pytest.raises(TaskDataError, match=r"train.jsonl:1: 'question' must be a non-empty string"):
        Gsm8kTask(tmp_path).examples("train")


def test_loader_on_a_small_directory(tmp_path: Path) -> None:
    records = [
        {"question": f"What is {i}*1000?", "answer": f"{i}*1000 = <<{i}*1000={i * 1000}>>{i * 1000}\n#### {i * 1000:,}"}
        for i in range(1, 21)
    ]
    _write(tmp_path, "train.jsonl", [json.dumps(r) for r in records])
    task = Gsm8kTask(tmp_path)
    everything = task.examples("train")
    assert len(everything) == 20 and everything[4].answer == "5000"  # "5,000" canonicalised
    assert everything[4].reasoning == "5*1000 = 5000"  # calculator annotation removed
    assert Gsm8kTask(tmp_path, keep_annotations=True).examples("train")[4].reasoning == "5*1000 = <<5*1000=5000>>5000"
    small, larger = task.examples("train", 5, 3), task.examples("train", 10, 3)
    assert len(small) == 5 and {e.id for e in small} <= {e.id for e in larger}  # nested samples
    assert [e.id for e in small] == [e.id for e in task.examples("train", 5, 3)]
    assert [e.id for e in small] != [e.id for e in task.examples("train", 5, 4)]


def test_real_gsm8k(gsm8k_data_dir: Path) -> None:
    task = get_task("gsm8k", data_dir=gsm8k_data_dir, keep_annotations=True)
    train, test = task.examples("train"), task.examples("eval")
    assert (len(train), len(test)) == (7473, 1319)
    assert train[0].answer == "72" and train[0].id == "gsm8k-train-1"
    rejected = [ex.id for ex in train + test if not task.verify(ex, ex.answer, task.target(ex)).ok]
    assert rejected == []  # official rationales pass the verifier, annotations included
    assert all(task.score(ex, task.target(ex)).correct for ex in test)
    mean_steps = sum(task.complexity(ex) for ex in train) / len(train)
    prior = task_meta("gsm8k").complexity_prior
    assert prior is not None and mean_steps == pytest.approx(prior, abs=0.01)


def test_step_strata_and_draws_toward_them(tmp_path: Path) -> None:
    lines = []
    for steps in (1, 2, 3, 4, 5, 6) * 5:
        rationale = "\n".join(f"Step {i}: 1+1=2." for i in range(steps))
        lines.append(json.dumps({"question": f"q{len(lines)}", "answer": f"{rationale}\n#### 2"}))
    _write(tmp_path, "train.jsonl", lines)
    task = Gsm8kTask(tmp_path)
    assert task.strata() == ("1-2 steps", "3 steps", "4 steps", "5+ steps")
    labels = [task.stratum(ex) for ex in task.examples("train")]
    assert labels.count("1-2 steps") == 10 and labels.count("5+ steps") == 10
    drawn = task.stratified_examples("train", 12, 0, {"4 steps": 3.0, "1-2 steps": 1.0})
    counts = [task.stratum(ex) for ex in drawn]
    assert counts.count("4 steps") == 5  # the stratum holds only 5: the rest spills over
    assert len(drawn) == 12 and len({ex.id for ex in drawn}) == 12
    with pytest.raises(TaskDataError, match="30 examples, 31 requested"):
        task.stratified_examples("train", 31, 0, {"4 steps": 1.0})
