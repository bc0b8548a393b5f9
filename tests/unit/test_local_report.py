"""The run report: a real plan (the planner on the Mahjong spec), a metrics.json as the training job writes it,
the real model card; files, images, sections, the score split behind "why it lost", missing data."""

from __future__ import annotations

import contextlib
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from stratos_cli.cli import main
from stratos_cli.local.report import (
    DASH,
    _scoring,
    markdown_to_html,
    step_losses,
    why_lost,
    write_report,
)
from tests.conftest import SPECS

SPEC_PATH = SPECS / "mahjong-winning-tiles.json"
SECTIONS = ("Spec", "Plan", "Why the others lost", "Mode decision", "Training", "Accuracy", "Model card", "Run record")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())


@pytest.fixture(scope="module")
def plan() -> dict[str, Any]:
    """``stratos plan SPEC --json``, run in-process."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["plan", str(SPEC_PATH), "--json"]) == 0
    doc: dict[str, Any] = json.loads(out.getvalue())
    return doc


@pytest.fixture
def metrics() -> dict[str, Any]:
    """metrics.json as stratos_train.job.run_job writes it for an injection run (auto mode decided)."""
    reason = "teacher does not cover the task (coverage 0.12 < 0.50): learn from verified, reverse-synthesised data"
    losses = [5.61, 2.15, 1.29, 0.95, 0.66, 0.51, 0.42, 0.35, 0.28, 0.25]
    return {
        "task": "mahjong-winning-tiles",
        "teacher": "qwen2.5-3b-instruct",
        "student": "smollm2-135m-instruct",
        "teacher_accuracy": 0.31,
        "teacher_partial": 0.52,
        "teacher_answered": 0.97,
        "student_before_accuracy": 0.0,
        "student_before_partial": 0.04,
        "student_before_answered": 0.41,
        "injection_examples": 1500,
        "injection_teacher_asked": 200,
        "injection_teacher_rationales": 61,
        "injection_teacher_rejected": 139,
        "injection_teacher_rejection_rate": 0.695,
        "injection_programmatic_reasoning": 1439,
        "injection_reference_reasoning": 0,
        "injection_rejection_reasons": {"wrong answer": 120, "no final answer line": 19},
        "train_examples": 1500,
        "train_rows_dropped_no_completion": 0,
        "train_rows_truncated": 3,
        "train_tokens": 126051,
        "train_total_tokens": 205326,
        "final_loss": 0.7509,
        "train_steps": 100,
        "train_seconds": 918.89,
        "resumed_from": "",
        # the trainer's end-of-run summary comes last under the same key: the mean over the run (final_loss)
        "loss_history": [{"step": 10 * (i + 1), "train_loss": v} for i, v in enumerate(losses)]
        + [{"step": 100, "train_loss": 0.7509}],
        "student_after_accuracy": 0.27,
        "student_after_partial": 0.48,
        "student_after_stop_rate": 0.87,
        "student_after_answered": 0.93,
        "eval_examples": 200,
        "mode": "injection",
        "mode_reason": reason,
        "mode_evidence": {
            "mode": "injection",
            "forced": False,
            "reason": reason,
            "coverage": 0.12,
            "coverage_partial": 0.33,
            "complexity": 2.86,
            "complexity_unit": "complete arrangements over all winning tiles",
            "probe_size": 32,
            "threshold": 0.5,
            "tokenizers_compatible": False,
        },
        "samples": [
            {"problem": {"hand": "123m456p789s1122z"}, "reference": ["1z", "2z"], "completion": "Answer: 1z 2z"},
            {"problem": {"hand": "11m555p345s55566z"}, "reference": ["1m", "6z"], "completion": "\n\n\n"},
        ],
        "job_seconds": 1025.08,
    }


@pytest.fixture(scope="module")
def model_card() -> str:
    from stratos_train.export import render_model_card

    return render_model_card(
        {
            "title": "Stratos student for mahjong-winning-tiles",
            "teacher": "qwen2.5-3b-instruct",
            "student": "smollm2-135m-instruct",
            "task": "mahjong-winning-tiles",
            "mode": "injection",
            "mode_reason": "teacher does not cover the task",
            "train_examples": 1500,
            "eval_examples": 200,
            "metrics": {"student_after_accuracy": 0.27, "train_steps": 100},
            "data_note": "1500 mahjong-winning-tiles examples",
        }
    )


@pytest.fixture
def run_record() -> dict[str, Any]:
    return {
        "pk": "mahjong-winning-tiles-7f3a",
        "kind": "run",
        "status": "SUCCEEDED",
        "stage": "RecordSuccess",
        "endpoint": {"name": "stratos-mahjong-winning-tiles", "config": "stratos-mahjong-winning-tiles-7f3a"},
        "note": "<b>escaped & shown</b>",
    }


class _TagBalance(HTMLParser):
    VOID = frozenset({"meta", "img", "br", "hr"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()


def report(
    tmp_path: Path,
    spec: dict[str, Any],
    plan: dict[str, Any],
    metrics: dict[str, Any],
    card: str,
    record: dict[str, Any],
):
    return write_report(tmp_path / "report", spec=spec, plan=plan, metrics=metrics, model_card=card, run_record=record)


def test_files_and_images(tmp_path, spec, plan, metrics, model_card, run_record):
    import matplotlib.image

    paths = report(tmp_path, spec, plan, metrics, model_card, run_record)
    assert paths.markdown.is_file() and paths.html.is_file()
    assert set(paths.images) == {"pareto", "loss", "accuracy"}
    for path in paths.images.values():
        assert path.parent == paths.markdown.parent / "images"
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        pixels = matplotlib.image.imread(path)
        assert pixels.shape[0] >= 400 and pixels.shape[1] >= 700
        assert pixels.std() > 0.05  # something is drawn


def test_markdown_sections(tmp_path, spec, plan, metrics, model_card, run_record):
    text = report(tmp_path, spec, plan, metrics, model_card, run_record).markdown.read_text()
    for section in SECTIONS:
        assert f"\n## {section}\n" in text
    chosen = plan["plan"]
    assert f"| teacher | {chosen['teacher']} |" in text
    assert f"| training instance | {chosen['training_instance']} |" in text
    for reason, count in plan["rejected"].items():
        assert f"| `{reason}` | {count:,} |" in text
    for name in plan["baselines"]:
        assert re.search(rf"^\| {name} \|.*\| score -0\.\d{{4}}; weakest on ", text, re.M), name
    assert "| 1 | " in text and "this is the chosen plan" in text
    assert metrics["mode_reason"] in text
    assert "| teacher exact accuracy on the probe (fraction) | 0.12 |" in text
    assert "| teacher | qwen2.5-3b-instruct | 0.310 | 0.520 | 0.970 |" in text
    assert "| student after | smollm2-135m-instruct | 0.270 | 0.480 | 0.930 |" in text
    assert "student after: 0.270 (meets the spec's minimum)" in text
    assert "| wrong answer | 120 |" in text
    assert "whitespace only" in text  # the blank sample completion says so
    # the model card is embedded with its headings under the report's, front matter as YAML
    assert "### Stratos student for mahjong-winning-tiles" in text
    assert "```yaml\nlibrary_name: transformers" in text
    # the run record comes back whole from its JSON block
    block = text.split("## Run record\n", 1)[1].split("```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(block) == run_record
    for image in ("pareto", "loss", "accuracy"):
        assert f"](images/{image}.png)" in text


def test_html_references_images_and_is_well_formed(tmp_path, spec, plan, metrics, model_card, run_record):
    paths = report(tmp_path, spec, plan, metrics, model_card, run_record)
    page = paths.html.read_text()
    parser = _TagBalance()
    parser.feed(page)
    assert parser.errors == [] and parser.stack == []
    assert sorted(parser.images) == ["images/accuracy.png", "images/loss.png", "images/pareto.png"]
    for src in parser.images:
        assert (paths.html.parent / src).is_file()
    for section in SECTIONS:
        assert f'id="{section.lower().replace(" ", "-")}"' in page
    assert "&lt;b&gt;escaped &amp; shown&lt;/b&gt;" in page and "<b>escaped" not in page
    assert '<pre><code class="language-yaml">library_name: transformers' in page
    assert "<h3>Stratos student for mahjong-winning-tiles</h3>" in page  # card h1 shifted under the report


def test_score_terms_reproduce_the_planner_score(spec, plan):
    scoring = _scoring(plan, spec)
    assert scoring is not None
    for p in [*plan["frontier"], *plan["baselines"].values()]:
        terms = scoring.terms(p)
        assert terms is not None
        assert sum(terms.values()) == pytest.approx(p["score"], abs=1e-9)
    runner_up = plan["frontier"][1]
    line = why_lost(runner_up, plan["plan"], scoring)
    assert line.startswith(f"score {runner_up['score'] - plan['plan']['score']:+.4f}; weakest on ")
    assert why_lost(plan["plan"], plan["plan"], scoring) == "this is the chosen plan"


def test_why_lost_without_normalisers_uses_relative_differences(plan):
    chosen = plan["plan"]
    worse = {**chosen, "training_instance": "other", "expected_accuracy": chosen["expected_accuracy"] / 2, "score": 0.5}
    line = why_lost(worse, chosen, None)
    assert "weakest on accuracy" in line and "relative" in line


def test_step_losses_drop_the_run_summary_entry():
    history = [{"step": 2, "train_loss": 5.9}, {"step": 4, "train_loss": 5.7}, {"step": 4, "train_loss": 5.8}]
    assert step_losses(history, 5.8) == [(2.0, 5.9), (4.0, 5.7)]
    assert step_losses(history, None) == [(2.0, 5.9), (4.0, 5.7), (4.0, 5.8)]
    assert step_losses([{"step": None, "train_loss": 1.0}, {"step": 1}], 1.0) == []


def test_missing_optional_data_renders_dash(tmp_path, spec):
    metrics = {"teacher_accuracy": None, "student_after_accuracy": 0.1, "mode": "alignment"}
    paths = write_report(tmp_path / "sparse", spec=spec, plan={}, metrics=metrics, model_card="", run_record={})
    text = paths.markdown.read_text()
    assert set(paths.images) == {"accuracy"}
    assert f"| teacher | {DASH} | {DASH} | {DASH} | {DASH} |" in text
    assert "No Pareto plot" in text and "No frontier" in text and "No baselines" in text
    assert "No loss history" in text and "No mode evidence" in text and "No model card" in text
    assert f"| teacher | {DASH} |" in text  # chosen-plan table without a plan
    assert paths.html.read_text().count("<img ") == 1


def test_nothing_at_all_still_writes_a_report(tmp_path):
    paths = write_report(tmp_path / "empty", spec={}, plan={}, metrics={}, model_card="", run_record={})
    assert paths.images == {}
    assert "# Stratos run report: task" in paths.markdown.read_text()


def test_markdown_to_html_subset():
    card = (
        "---\nlibrary_name: transformers\n---\n\n# Title\n\nText with `code` and **bold** <script>x</script>.\n\n"
        "* one\n* two\n\n| metric | value |\n|---|---|\n| acc | 0.5 |\n\n```\nraw <tag>\n```\n"
    )
    out = markdown_to_html(card, heading_offset=1)
    assert out.startswith('<pre class="front-matter"><code>library_name: transformers</code></pre>')
    assert "<h2>Title</h2>" in out
    assert "<code>code</code>" in out and "<strong>bold</strong>" in out
    assert "&lt;script&gt;" in out and "<script>" not in out
    assert "<ul>\n<li>one</li>\n<li>two</li>\n</ul>" in out
    assert (
        "<thead>\n<tr>\n<th>metric</th>\n<th>value</th>\n</tr>\n</thead>\n<tbody>\n<tr>\n<td>acc</td>\n<td>0.5</td>\n</tr>"
        in out
    )
    assert "<pre><code>raw &lt;tag&gt;\n</code></pre>" in out


def test_card_headings_demoted_in_markdown_but_not_inside_code(tmp_path, spec):
    card = "# Card\n\nSub\n---\n\n```\n# not a heading\n```\n"
    paths = write_report(tmp_path, spec=spec, plan={}, metrics={}, model_card=card, run_record={})
    text = paths.markdown.read_text()
    assert "\n### Card\n" in text and "\n#### Sub\n" in text and "\n# not a heading\n" in text
    page = paths.html.read_text()
    assert "<h3>Card</h3>" in page and "<h4>Sub</h4>" in page and "# not a heading" in page


def test_table_cell_newline_is_a_line_break_and_html_stays_text(tmp_path, spec):
    record = {"status": "FAILED", "error": {"name": "E", "reason": "line one\nline <i>two</i> | three"}}
    paths = write_report(tmp_path, spec=spec, plan={}, metrics={}, model_card="", run_record=record)
    assert "| reason | line one<br>line <i>two</i> \\| three |" in paths.markdown.read_text()
    assert "<td>line one<br>\nline &lt;i&gt;two&lt;/i&gt; | three</td>" in paths.html.read_text()


def test_strata_further_sets_and_injection_rounds(tmp_path, spec, plan, metrics, model_card, run_record):
    row = {"correct": 3, "n": 4, "accuracy": 0.75}
    extra = {
        "teacher_strata": {"1 wait, honours": {"correct": 0, "n": 4, "accuracy": 0.0}},
        "student_after_strata": {"1 wait, honours": row},
        "eval_sets": {
            "random-tenpai": {
                "student_after": {
                    "accuracy": 0.4,
                    "partial": 0.6,
                    "examples": 10,
                    "correct": 4,
                    "strata": {"1 wait, honours": row},
                }
            }
        },
        "injection_rounds": [
            {
                "round": 1,
                "examples": 16,
                "drawn": {"1 wait, honours": 2},
                "probe": {"1 wait, honours": row},
                "probe_accuracy": 0.75,
            },
            {
                "round": 2,
                "examples": 16,
                "drawn": {"1 wait, honours": 5},
                "probe": {"1 wait, honours": row},
                "probe_accuracy": 0.8,
            },
        ],
    }
    extra |= {"teacher_accuracy_upper95": 0.01885, "student_over_teacher": None, "student_over_teacher_upper95": 14.3}
    text = report(tmp_path, spec, plan, {**metrics, **extra}, model_card, run_record).markdown.read_text()
    assert "student / teacher: n/a (teacher 0); over the teacher's Wilson 95 % upper bound (0.019): 14.3x" in text
    assert "| random-tenpai | student after | 0.400 | 0.600 | 10 |" in text
    assert "| 1 wait, honours | 0.00 (0/4) | 0.75 (3/4) | 0.75 (3/4) |" in text
    assert "| stratum | teacher | student after | student after, random-tenpai |" in text
    assert "| 2 | 16 | 5 / 0.75 | 0.800 |" in text


def test_local_run_section_and_failure_name_and_reason(tmp_path, spec):
    record = {
        "run_id": "mahjong-local-abc",
        "status": "FAILED",
        "error": {"name": "TrainingFailedError", "reason": "training job j failed (Failed): out of memory"},
        "local_notes": ["candidates.teachers: the catalog -> ['gemma-3-270m'] (only PyPI models run locally)"],
        "local_changes": ["student smollm2-135m-instruct depth-pruned to 15 layers", "batch 4 (AWS: 8)"],
    }
    text = write_report(tmp_path, spec=spec, plan={}, metrics={}, model_card="", run_record=record).markdown.read_text()
    assert "| error | TrainingFailedError |" in text
    assert "| reason | training job j failed (Failed): out of memory |" in text
    assert "Contents: [Local run](#local-run) · [Plan](#plan)" in text
    local = text.split("\n## Local run\n", 1)[1].split("\n## ", 1)[0]
    assert "* candidates.teachers: the catalog -> ['gemma-3-270m'] (only PyPI models run locally)" in local
    assert "* local sizing: student smollm2-135m-instruct depth-pruned to 15 layers; batch 4 (AWS: 8)" in local
    plain = write_report(
        tmp_path / "aws", spec=spec, plan={}, metrics={}, model_card="", run_record={"status": "SUCCEEDED"}
    )
    assert "Local run" not in plain.markdown.read_text()


def test_training_time_and_cost_as_billed_with_the_spot_saving(tmp_path, spec, plan, metrics, model_card, run_record):
    """The run record's ``actual`` (training vs billable seconds) is shown under Training, with SageMaker's saving
    (1 - billable / training) for a managed spot job, beside the plan's expected cost."""
    spot_plan = {**plan, "plan": {**plan["plan"], "spot": True, "training_cost_usd": 0.3, "spot_saving_usd": 0.7}}
    actual = {
        "training_seconds": 3600,
        "billable_seconds": 1080,
        "training_hours": 1.0,
        "training_cost_usd": 0.3,
        "training_usd_per_hour": 1.0,
        "spot": True,
        "spot_saving_fraction": 0.7,
        "spot_saving_usd": 0.7,
    }
    record = {**run_record, "actual": actual}
    text = report(tmp_path, spec, spot_plan, metrics, model_card, record).markdown.read_text()
    billed = text.split("### Time and cost as billed", 1)[1].split("\n## ", 1)[0]
    assert "| billable time (BillableTimeInSeconds), s | 1,080 |" in billed
    assert "| managed spot training | yes |" in billed
    assert "| managed spot saving (1 - billable / training time) | 70.0 % |" in billed
    assert "| planned training cost, USD | 0.30 (spot saving 0.70) |" in billed
    assert "| managed spot training | yes |" in text.split("## Plan", 1)[1].split("## Why the others lost", 1)[0]
    # No record of the job's billing: no such table.
    plain = report(tmp_path / "plain", spec, plan, metrics, model_card, run_record).markdown.read_text()
    assert "Time and cost as billed" not in plain
