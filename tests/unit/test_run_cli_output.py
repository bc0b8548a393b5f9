"""What `stratos run` prints: each state once (polling loops collapsed), plain progress lines off a terminal,
and the accuracy table with partial credit."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

from rich.console import Console

from stratos_cli.run_cli import _Progress, _StatePrinter, _summary, ask_command


def _result(**fields: Any) -> SimpleNamespace:
    """A run result as ``_summary`` reads it: a successful run with nothing to show, but ``fields``."""
    defaults: dict[str, Any] = {
        "status": "SUCCEEDED",
        "run_id": "r",
        "error": "",
        "reason": "",
        "reused": False,
        "plan": None,
        "metrics": {},
        "endpoint": None,
        "report": None,
        "local_changes": [],
    }
    return SimpleNamespace(**(defaults | fields))


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=120, force_terminal=False), out


def test_polling_states_print_once_unless_verbose():
    loop = ["StartTrainingJob", *["WaitForTraining", "DescribeTrainingJob", "TrainingStatus"] * 3, "EvaluationGate"]
    console, out = _console()
    printer = _StatePrinter(console)
    for name in loop:
        printer(name)
    lines = out.getvalue().splitlines()
    assert lines == [
        f"state {n}"
        for n in ["StartTrainingJob", "WaitForTraining", "DescribeTrainingJob", "TrainingStatus", "EvaluationGate"]
    ]
    console, out = _console()
    printer = _StatePrinter(console, every=True)
    for name in loop:
        printer(name)
    assert len(out.getvalue().splitlines()) == len(loop)


def test_progress_off_a_terminal_prints_plain_lines_with_eta():
    console, out = _console()
    progress = _Progress(console)
    progress.update(
        "job", {"step": 10, "max_steps": 40, "elapsed_s": 60.0, "train_loss": 1.25, "completion_tokens_per_s": 88.0}
    )
    progress.update("job", {"teacher_accuracy": 0.0})  # the final metrics record: no line
    progress.close()
    assert out.getvalue().splitlines() == ["training step 10/40: loss 1.250, 88 tok/s, ETA 3.0 min"]


def test_summary_shows_accuracy_and_partial_credit():
    console, out = _console()
    result = _result(
        run_id="mahjong-local-abc",
        reason=None,
        report="/tmp/report.html",
        metrics={
            "mode": "injection",
            "mode_reason": "tokenizers differ",
            "eval_examples": 24,
            "teacher_accuracy": 0.0,
            "teacher_partial": 0.048,
            "student_before_accuracy": 0.0,
            "student_before_partial": 0.0,
            "student_after_accuracy": 0.125,
            "student_after_partial": 0.31,
        },
    )
    _summary(console, result)
    text = out.getvalue()
    assert "partial credit" in text and "accuracy on 24 held-out examples" in text
    row = next(line for line in text.splitlines() if "student after" in line)
    assert "0.125" in row and "0.310" in row
    assert "report: /tmp/report.html" in text


def test_failed_summary_is_run_id_and_error_then_the_reason_on_one_line_each():
    console, out = _console()
    result = _result(
        status="FAILED",
        run_id="gsm8k-h6xfck4dzpcq",
        error="SpecValidationError",
        reason="s3://b/specs/gsm8k.json is invalid: candidates.teachers [x]: " + "very long " * 20 + "\nsecond line",
    )
    _summary(console, result)
    lines = out.getvalue().strip().splitlines()
    assert lines[0] == "FAILED run gsm8k-h6xfck4dzpcq: SpecValidationError"
    assert lines[1].startswith("reason: s3://b/specs/gsm8k.json is invalid: candidates.teachers [x]: very long")
    assert lines[1].endswith("very long second line")  # one line, however long; rich markup shown as text
    assert len(lines) == 2


def test_summary_says_what_the_local_run_changed():
    console, out = _console()
    result = _result(
        run_id="mahjong-local-abc",
        local_changes=[
            "student smollm2-135m-instruct depth-pruned to 15 layers",
            "decoding budget 320 tokens (AWS: 64)",
        ],
    )
    _summary(console, result)
    assert out.getvalue().strip().splitlines() == [
        "SUCCEEDED run mahjong-local-abc",
        "local sizing: student smollm2-135m-instruct depth-pruned to 15 layers; decoding budget 320 tokens (AWS: 64)",
    ]


def test_plan_table_never_cuts_a_model_id_short():
    console, out = _console()
    plan = {
        "teacher": "gemma-3-270m",
        "student": "smollm2-135m-instruct-l15",
        "training_instance": "ml.g6e.xlarge",
        "serving_instance": "ml.c7i.xlarge",
        "mode": "injection",
        "expected_accuracy": 0.161,
        "p50_latency_ms": 1321.056,
        "total_cost_usd": 156.769,
    }
    result = _result(reason=None, plan=plan)
    _summary(console, result)
    text = out.getvalue()
    assert "…" not in text
    row = next(line for line in text.splitlines() if "gemma-3-270m" in line)
    assert "smollm2-135m-instruct-l15" in row and "1,321" in row and "156.77" in row


def test_summary_shows_the_mode_evidence_format_compliance_kl_and_the_ask_line():
    console, out = _console()
    result = _result(
        plan={"teacher": "t", "student": "s", "mode": "injection"},
        endpoint={"name": "word-forms-local-student", "url": "http://127.0.0.1:1"},
        metrics={
            "mode": "alignment",
            "mode_reason": "teacher covers the task (coverage 0.88 >= 0.50): match its distributions",
            "mode_evidence": {"probe_size": 8, "coverage": 0.875},
            "eval_examples": 87,
            "teacher_answered": 1.0,
            "student_before_answered": 0.0,
            "student_after_answered": 0.966,
            "heldout_kl_before": 9.1129,
            "heldout_kl_after": 3.4693,
        },
    )
    ask = ask_command("word-forms-local-student", "events/specs/word-forms-local.json", "events/data/word-forms")
    _summary(console, result, ask)
    lines = out.getvalue().splitlines()
    mode = next(line for line in lines if line.startswith("mode:"))
    assert "coverage 0.88 >= 0.50" in mode and "probed on 8 held-out examples" in mode
    assert "the plan assumed injection" in mode
    assert "answered (format)" in out.getvalue()
    assert "0.966" in next(line for line in lines if "student after" in line)
    assert "held-out KL(teacher ‖ student): 9.113 -> 3.469 nats/token" in lines
    assert lines[-1] == (
        "held-out problems with verdicts: stratos ask word-forms-local-student"
        " --spec events/specs/word-forms-local.json --data events/data/word-forms --count 3"
    )


def test_a_spot_plan_shows_its_expected_saving():
    plan = {
        "teacher": "t",
        "student": "s",
        "training_instance": "ml.c7i.xlarge",
        "spot": True,
        "training_cost_usd": 0.35,
        "on_demand_training_cost_usd": 1.0,
        "spot_saving_usd": 0.65,
    }
    console, out = _console()
    _summary(console, _result(plan=plan))
    text = " ".join(out.getvalue().split())
    assert "ml.c7i.xlarge (spot)" in text
    assert "training on managed spot: 0.35 USD expected vs 1.00 USD on-demand (saves 0.65 USD" in text
    console, out = _console()
    _summary(console, _result(plan={**plan, "spot": False}))
    assert "managed spot" not in out.getvalue() and "(spot)" not in out.getvalue()


def _check(passed: bool, keep: bool) -> dict[str, Any]:
    measured = {"p50_ms": 3210.4, "p90_ms": 4100.0, "tokens_per_s": 39.9, "concurrency": 4, "requests": 16}
    return {
        "passed": passed,
        "keep": keep,
        "limit_ms": 1650.0,
        "spec_p50_ms": 1500.0,
        "tolerance": 0.1,
        "measured": measured,
    }


def test_the_latency_check_line_gives_the_figures_the_limit_and_what_a_miss_did():
    console, out = _console()
    _summary(console, _result(latency=_check(passed=False, keep=True)))
    text = " ".join(out.getvalue().split())
    assert "latency check: p50 3,210 ms, p90 4,100 ms, 39.9 tokens/s at concurrency 4 (16 requests)" in text
    assert "OVER the limit 1,650 ms (spec p50 1,500 ms + 10 %); reported only, the endpoint stays" in text
    console, out = _console()
    _summary(console, _result(latency=_check(passed=False, keep=False)))
    assert "; rolled back" in " ".join(out.getvalue().split())
    console, out = _console()
    _summary(console, _result(latency={**_check(passed=True, keep=True)}))
    text = " ".join(out.getvalue().split())
    assert "within the limit 1,650 ms" in text and "reported only" not in text and "rolled back" not in text
    console, out = _console()
    _summary(console, _result())
    assert "latency check" not in out.getvalue()
