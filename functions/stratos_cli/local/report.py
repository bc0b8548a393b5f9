"""The run report: one folder with ``report.md``, ``report.html`` and the PNGs both reference.

The report opens with the outcome: the run (status, endpoint, error), the accuracy table (teacher / student
before / student after), predicted vs actual (the plan's estimates beside the run's measurements, each with its
band and error, and a figure; a local run's predictions are for this machine's profile), and the money (training
as billed, serving as planned). Then: what a local run did differently; the plan (chosen plan, the Pareto plot,
its calibration and the uncertainty-aware choice); why the other plans lost (frontier top K with each plan's
score gap and its weakest objective, the single-objective baselines, rejection counts by reason); the
distillation mode decision with its evidence; training (loss curve, counts, and its time and cost as SageMaker
billed it: training vs billable seconds, managed spot and its measured saving); accuracy in detail (bar chart,
further held-out sets, strata, sample completions); the model card; the spec; the run record.

The report is written once, as Markdown blocks (:class:`_Doc`): ``report.md`` joins them, and ``report.html`` is
their rendering by markdown-it-py (CommonMark + GFM tables, raw HTML escaped) inside the jinja2 page
``templates/report.html.j2``, so both say the same thing. Images are referenced relatively (``images/*.png``), so
the folder can be moved or archived whole. The figures are drawn by :mod:`stratos_cli.local.plots`.

Every input may lack optional data (no teacher evaluation, no loss history, a plan without baselines): a
missing value renders as "—" and a figure without data is left out with a note, never an exception.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from markupsafe import Markup

from stratos.planner.selection import Best, Weights
from stratos_cli.local.plots import (
    BASELINE_MARKERS,
    MISSING,
    plot_accuracy,
    plot_frontier,
    plot_loss,
    plot_predicted_vs_actual,
)

DASH = MISSING
"""What a missing value renders as (in tables, and as the label of a missing bar in a figure)."""
DEFAULT_TOP_K = 10
"""Frontier plans listed in "why the others lost"."""
IMAGES_DIR = "images"
#: Score objectives: (field of the planner's ``Weights``, plan field, field of its ``Best``, label, higher is better).
OBJECTIVES: tuple[tuple[str, str, str, str, bool], ...] = (
    ("accuracy", "expected_accuracy", "accuracy", "accuracy", True),
    ("cost", "total_cost_usd", "total_cost_usd", "total cost", False),
    ("latency", "p50_latency_ms", "p50_latency_ms", "p50 latency", False),
    ("training_time", "training_hours", "training_hours", "training time", False),
)


@dataclass(frozen=True)
class ReportPaths:
    """Where :func:`write_report` wrote the report.

    Attributes:
        markdown: ``report.md``.
        html: ``report.html`` (same content; images referenced relatively).
        images: figure name (``pareto``, ``loss``, ``accuracy``) -> PNG path; a figure without data is absent.
    """

    markdown: Path
    html: Path
    images: dict[str, Path] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------------
# Formatting


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def fmt(value: Any, spec: str = "") -> str:
    """A value for a table cell: ``—`` when missing (None, NaN, ""), yes/no for booleans, ``format(value,
    spec)`` for numbers (thousands separators for ints by default), lists joined by commas, dicts as JSON."""
    if _missing(value):
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        if spec:
            try:
                return format(value, spec)
            except ValueError:
                return str(value)
        return f"{value:,}" if isinstance(value, int) else f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v) for v in value) if value else DASH
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str) if value else DASH
    return str(value)


def _mapping(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``doc[key]`` when it is a mapping, else an empty one (missing optional data)."""
    value = doc.get(key)
    return value if isinstance(value, Mapping) else {}


def _pct(value: Any) -> str:
    return DASH if _missing(value) or not isinstance(value, int | float) else f"{100 * value:.1f} %"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


# --------------------------------------------------------------------------------------------------------------
# Markdown blocks; the HTML page is rendered from them (markdown-it-py, jinja2)


def _slug(text: str) -> str:
    """A heading's HTML id, and the target of the "Contents" links: lower case, other runs -> ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _br_tag(state: StateInline, silent: bool) -> bool:
    """Inline rule: the literal ``<br>`` that stands for a newline inside a table cell (a Markdown table row is one
    line) is a line break; any other HTML stays escaped text."""
    if not state.src.startswith("<br>", state.pos):
        return False
    if not silent:
        state.push("hardbreak", "br", 0)
    state.pos += len("<br>")
    return True


def _heading_with_id(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    """Render rule: ``<hN id="...">`` with the :func:`_slug` of the heading's Markdown, as the links expect."""
    tokens[idx].attrSet("id", _slug(tokens[idx + 1].content))
    return self.renderToken(tokens, idx, options, env)


def _markdown_it(*, report: bool) -> MarkdownIt:
    """CommonMark with GFM tables; raw HTML is escaped, never passed through; HTML5 void tags (``<br>``).

    ``report=True`` renders the report's own blocks: headings get ids, and a newline inside a paragraph, list item
    or (as ``<br>``) table cell is a line break. ``report=False`` renders Markdown from elsewhere (the model card)
    as any reader would.
    """
    md = MarkdownIt("commonmark", {"html": False, "xhtmlOut": False, "breaks": report}).enable("table")
    if report:
        md.inline.ruler.before("html_inline", "br_tag", _br_tag)
        md.add_render_rule("heading_open", _heading_with_id)
    return md


_REPORT_MD = _markdown_it(report=True)
_EMBEDDED_MD = _markdown_it(report=False)
_PAGES = jinja2.Environment(
    loader=jinja2.PackageLoader("stratos_cli.local", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class _Block:
    """One block of the report in Markdown (ends with a newline); ``css_class``: Markdown from elsewhere (the model
    card), rendered without heading ids inside ``<div class="css_class">``."""

    markdown: str
    css_class: str | None = None


class _Doc:
    """The report as Markdown blocks: ``report.md`` joins them and ``report.html`` renders them, so both say the
    same thing."""

    def __init__(self) -> None:
        self.blocks: list[_Block] = []

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(_Block(f"{'#' * level} {text}\n"))

    def para(self, text: str) -> None:
        self.blocks.append(_Block(text + "\n"))

    def bullets(self, items: Iterable[str]) -> None:
        items = list(items)
        if items:
            self.blocks.append(_Block("\n".join(f"* {item}" for item in items) + "\n"))

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[str]], right: Iterable[int] = ()) -> None:
        """A table; cells are inline Markdown; ``right`` = indices of right-aligned (numeric) columns."""
        right = set(right)

        def line(cells: Iterable[str]) -> str:
            return "| " + " | ".join(cell.replace("|", "\\|").replace("\n", "<br>") for cell in cells) + " |"

        align = "| " + " | ".join("---:" if i in right else "---" for i in range(len(headers))) + " |"
        self.blocks.append(_Block("\n".join([line(headers), align, *(line(row) for row in rows)]) + "\n"))

    def code(self, text: str, lang: str = "") -> None:
        fence = "````" if "```" in text else "```"
        self.blocks.append(_Block(f"{fence}{lang}\n{text.rstrip()}\n{fence}\n"))

    def image(self, relative: str, alt: str) -> None:
        self.blocks.append(_Block(f"![{alt}]({relative})\n"))

    def embedded_markdown(self, text: str, css_class: str) -> None:
        """Markdown from elsewhere (the model card): as is in ``report.md``, in a ``<div>`` of ``css_class`` in HTML."""
        self.blocks.append(_Block(text.rstrip() + "\n", css_class))

    def markdown(self) -> str:
        return "\n".join(block.markdown for block in self.blocks)

    def html_page(self, title: str) -> str:
        """The HTML page (``templates/report.html.j2``): each run of blocks of one kind rendered by markdown-it-py."""
        parts = []
        for css_class, run in itertools.groupby(self.blocks, key=lambda block: block.css_class):
            text = "\n".join(block.markdown for block in run)
            rendered = _REPORT_MD.render(text) if css_class is None else markdown_to_html(text)
            parts.append({"css_class": css_class, "html": Markup(rendered)})
        return _PAGES.get_template("report.html.j2").render(title=title, parts=parts)


def markdown_to_html(text: str, *, heading_offset: int = 0) -> str:
    """HTML of Markdown from elsewhere (a model card), rendered by markdown-it-py: CommonMark with GFM tables; raw
    HTML is escaped, so nothing is injected. YAML front matter (between ``---`` lines at the top) is shown as a
    ``<pre class="front-matter">`` block; headings move down ``heading_offset`` levels (at most ``<h6>``).
    """
    front, body = _split_front_matter(text)
    tokens = _EMBEDDED_MD.parse(body)
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(6, int(token.tag[1:]) + heading_offset)}"
    # what MarkdownIt.render does, with the headings shifted in between
    html_text = str(_EMBEDDED_MD.renderer.render(tokens, _EMBEDDED_MD.options, {}))
    if front:
        html_text = f'<pre class="front-matter"><code>{html.escape(front)}</code></pre>\n{html_text}'
    return html_text


def _split_front_matter(card: str) -> tuple[str, str]:
    """(front matter without its ``---`` lines, the rest) of a model card; ``("", card)`` when it has none."""
    lines = card.replace("\r\n", "\n").split("\n")
    if lines and lines[0].strip() == "---":
        end = next((k for k in range(1, len(lines)) if lines[k].strip() == "---"), None)
        if end is not None:
            return "\n".join(lines[1:end]), "\n".join(lines[end + 1 :])
    return "", card


def _demote_headings(markdown: str, levels: int) -> str:
    """``markdown`` with each top-level heading moved down ``levels`` (at most ``######``) and written ATX-style
    (``### text``). The headings are those markdown-it-py parses, so a ``#`` line inside fenced code stays."""
    lines = markdown.split("\n")
    tokens = _EMBEDDED_MD.parse(markdown)
    for i in reversed(range(len(tokens))):  # bottom up: a setext heading's two lines become one
        token = tokens[i]
        if token.type == "heading_open" and token.level == 0 and token.map is not None:
            start, end = token.map
            text = tokens[i + 1].content.replace("\n", " ")
            lines[start:end] = [f"{'#' * min(6, int(token.tag[1:]) + levels)} {text}"]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------
# Figure data (the figures themselves: stratos_cli.local.plots)


def step_losses(loss_history: Sequence[Mapping[str, Any]], final_loss: Any = None) -> list[tuple[float, float]]:
    """``(optimizer step, training loss)`` points of ``metrics["loss_history"]`` (``[{step, train_loss}]``),
    sorted by step, without unusable entries.

    The trainer's end-of-training summary is logged under the same ``train_loss`` key as the per-step losses
    (it is the mean over the whole run, ``metrics["final_loss"]``), so the last entry is dropped when it equals
    ``final_loss``: it is not the loss at that step.
    """
    points: list[tuple[float, float]] = []
    for entry in loss_history:
        step, loss = _number(entry.get("step")), _number(entry.get("train_loss"))
        if step is not None and loss is not None:
            points.append((step, loss))
    mean = _number(final_loss)
    if points and mean is not None and math.isclose(points[-1][1], mean, rel_tol=1e-9, abs_tol=1e-12):
        points.pop()
    return sorted(points)


def _pareto_document(plan: Mapping[str, Any], task_id: str) -> dict[str, Any] | None:
    """The slice of the plan document :func:`~stratos_cli.local.plots.plot_frontier` draws, or
    ``None`` when the plan lacks a frontier or a chosen plan with numeric cost, latency and accuracy."""
    needed = ("total_cost_usd", "p50_latency_ms", "expected_accuracy")

    def usable(p: Any) -> bool:
        return isinstance(p, Mapping) and all(_number(p.get(k)) is not None for k in needed)

    frontier = [p for p in plan.get("frontier") or [] if usable(p)]
    chosen = plan.get("plan")
    if not frontier or not usable(chosen):
        return None
    baselines = plan.get("baselines") or {}
    return {
        "task_id": plan.get("task_id") or task_id,
        "frontier": frontier,
        "plan": chosen,
        "baselines": {k: v for k, v in baselines.items() if k in BASELINE_MARKERS and usable(v) and "score" in v},
    }


# --------------------------------------------------------------------------------------------------------------
# Why plans lost


@dataclass(frozen=True)
class _Scoring:
    """The planner's deployment-score weights and normalisers (the plan document's ``objective`` and ``score.best``),
    to split a plan's score into one term per objective."""

    weights: Weights
    best: Best

    def terms(self, p: Mapping[str, Any]) -> dict[str, float] | None:
        """Each objective's term of the score (the planner's :func:`~stratos.planner.selection.score_terms`);
        ``None`` when a value is missing or not positive."""
        from stratos.planner.selection import score_terms

        values = {best_field: _number(p.get(plan_field)) for _, plan_field, best_field, _, _ in OBJECTIVES}
        if any(v is None for v in values.values()):
            return None
        try:
            return score_terms(
                **{k: float(v) for k, v in values.items() if v is not None}, best=self.best, weights=self.weights
            )
        except ValueError:
            return None


def _scoring(plan: Mapping[str, Any], spec: Mapping[str, Any]) -> _Scoring | None:
    """The score's weights and normalisers, or ``None`` when the plan document lacks a numeric ``score.best`` or the
    weights (the plan's ``objective``, else the spec's) are invalid."""
    best_raw = _mapping(_mapping(plan, "score"), "best")
    best = {f.name: n for f in fields(Best) if (n := _number(best_raw.get(f.name))) is not None}
    if len(best) < len(fields(Best)):
        return None
    weights_raw = plan.get("objective") or spec.get("objective") or {}
    from pydantic import ValidationError

    from stratos.spec import ObjectiveWeights

    try:
        weights = ObjectiveWeights.model_validate(dict(weights_raw)).model_dump()
    except (ValidationError, TypeError, ValueError):
        return None
    return _Scoring(weights=Weights(**weights), best=Best(**best))


def _objective_value(p: Mapping[str, Any], plan_field: str) -> str:
    value = p.get(plan_field)
    if plan_field == "expected_accuracy":
        return fmt(value, ".3f")
    if plan_field == "p50_latency_ms":
        return f"{fmt(value, ',.0f')} ms"
    if plan_field == "training_hours":
        return f"{fmt(value, '.3f')} h"
    return f"{fmt(value, ',.2f')} USD"


def _same_plan(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    keys = ("teacher", "student", "mode", "training_instance", "serving_instance")
    return all(a.get(k) == b.get(k) for k in keys)


def why_lost(p: Mapping[str, Any], chosen: Mapping[str, Any], scoring: _Scoring | None) -> str:
    """One line: how much lower ``p`` scored than ``chosen`` and its weakest objective against it (the score
    term it lost most on), plus where it was better. Falls back to raw relative differences without the
    score's normalisers."""
    if _same_plan(p, chosen):
        return "this is the chosen plan"
    ps, cs = _number(p.get("score")), _number(chosen.get("score"))
    gap = f"score {ps - cs:+.4f}" if ps is not None and cs is not None else "score " + DASH
    labels = {o[0]: o for o in OBJECTIVES}
    p_terms = scoring.terms(p) if scoring else None
    c_terms = scoring.terms(chosen) if scoring else None
    if p_terms is not None and c_terms is not None:
        deltas = {name: p_terms[name] - c_terms[name] for name in p_terms}
        unit = "score"
    else:  # relative difference, positive = better than the chosen plan
        deltas = {}
        for name, plan_field, _, _, higher in OBJECTIVES:
            pv, cv = _number(p.get(plan_field)), _number(chosen.get(plan_field))
            if pv is not None and cv is not None and cv > 0:
                deltas[name] = (pv - cv) / cv * (1 if higher else -1)
        unit = "relative"
    if not deltas:
        return f"{gap}; objectives unknown"
    worst = min(deltas, key=lambda k: deltas[k])
    best = max(deltas, key=lambda k: deltas[k])
    if deltas[worst] >= -1e-12:
        return f"{gap}; equal score terms: lost the tie-break (lower cost, then p50, training hours, accuracy, ids)"
    _, plan_field, _, label, _ = labels[worst]
    text = (
        f"{gap}; weakest on {label}: {_objective_value(p, plan_field)} vs {_objective_value(chosen, plan_field)} "
        f"({deltas[worst]:+.4f} {unit})"
    )
    if deltas[best] > 1e-12:
        _, best_field, _, best_label, _ = labels[best]
        text += f"; better on {best_label}: {_objective_value(p, best_field)} ({deltas[best]:+.4f} {unit})"
    return text


# --------------------------------------------------------------------------------------------------------------
# Sections


def _flatten(doc: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(_flatten(value, path + "."))
        else:
            out.append((path, value))
    return out


def _plan_row(p: Mapping[str, Any]) -> list[str]:
    return [
        fmt(p.get("teacher")),
        fmt(p.get("student")),
        fmt(p.get("mode")),
        fmt(p.get("training_instance")),
        fmt(p.get("serving_instance")),
        fmt(p.get("expected_accuracy"), ".3f"),
        fmt(p.get("p50_latency_ms"), ",.0f"),
        fmt(p.get("training_hours"), ".3f"),
        fmt(p.get("total_cost_usd"), ",.2f"),
        fmt(p.get("score"), ".4f"),
    ]


PLAN_HEADERS = (
    "teacher",
    "student",
    "mode",
    "training",
    "serving",
    "accuracy",
    "p50 ms",
    "train h",
    "total USD",
    "score",
)

#: Chosen-plan fields: (key, label with unit, format).
PLAN_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("teacher", "teacher", ""),
    ("student", "student", ""),
    ("mode", "distillation mode (planned)", ""),
    ("training_instance", "training instance", ""),
    ("serving_instance", "serving instance", ""),
    ("expected_accuracy", "expected accuracy (fraction)", ".3f"),
    ("p50_latency_ms", "p50 latency, ms", ",.0f"),
    ("throughput_tokens_per_s", "throughput per instance, generated tokens/s", ",.0f"),
    ("training_hours", "training time, hours", ".3f"),
    ("training_cost_usd", "training cost, USD", ",.2f"),
    ("spot", "managed spot training", ""),
    ("on_demand_training_cost_usd", "training cost on-demand, USD", ",.2f"),
    ("spot_saving_usd", "expected managed spot saving, USD", ",.2f"),
    ("spot_savings_fraction", "managed spot saving assumed (catalog snapshot), fraction", ".2f"),
    ("spot_overhead_fraction", "managed spot interruption overhead assumed, fraction of time", ".4f"),
    ("serving_cost_usd", "serving cost over serving_months, USD", ",.2f"),
    ("total_cost_usd", "total cost, USD", ",.2f"),
    ("training_usd_per_hour", "training price, USD/hour", ",.4f"),
    ("serving_usd_per_hour", "serving price per instance, USD/hour", ",.4f"),
    ("serving_usd_per_month", "endpoint cost, USD/month", ",.2f"),
    ("max_runtime_seconds", "training job MaxRuntimeInSeconds, s", ","),
    ("score", "deployment score (0..1, higher is better)", ".4f"),
)

#: Training facts from metrics.json: (key, label with unit, format).
TRAINING_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("train_examples", "training rows", ","),
    ("train_steps", "optimizer steps", ","),
    ("train_seconds", "training wall time, s", ",.1f"),
    ("final_loss", "mean training loss over the run", ".4f"),
    ("train_tokens", "completion tokens trained on", ","),
    ("train_total_tokens", "tokens including prompts", ","),
    ("train_rows_truncated", "rows truncated at max_seq_len", ","),
    ("train_rows_dropped_no_completion", "rows dropped (no completion token left)", ","),
    ("resumed_from", "resumed from checkpoint", ""),
    ("heldout_kl_before", "held-out KL(teacher ‖ student) before, nats/token", ".4f"),
    ("heldout_kl_after", "held-out KL(teacher ‖ student) after, nats/token", ".4f"),
    ("injection_examples", "injection: training examples", ","),
    ("injection_teacher_asked", "injection: rationales asked of the teacher", ","),
    ("injection_teacher_rationales", "injection: teacher rationales kept (verified)", ","),
    ("injection_teacher_rejected", "injection: teacher rationales rejected", ","),
    ("injection_teacher_rejection_rate", "injection: teacher rejection rate (fraction)", ".3f"),
    ("injection_programmatic_reasoning", "injection: examples with programmatic reasoning", ","),
    ("injection_reference_reasoning", "injection: examples with reference reasoning", ","),
    ("teacher_topk_rows_teacher", "top-k alignment: targets that are the teacher's verified answers", ","),
    ("teacher_topk_rows_reference", "top-k alignment: reference targets (teacher answer rejected)", ","),
    ("teacher_topk_positions", "top-k alignment: completion positions", ","),
    ("teacher_topk_positions_teacher", "top-k alignment: positions on the teacher's top-k", ","),
    ("teacher_topk_tail_mass", "top-k alignment: teacher mass outside its top-k (mean)", ".4f"),
    ("teacher_topk_cache_seconds", "teacher top-k targets / cache, s", ",.1f"),
    ("job_seconds", "whole job wall time, s", ",.1f"),
)


def _summary(doc: _Doc, spec: Mapping[str, Any], plan: Mapping[str, Any], run_record: Mapping[str, Any]) -> None:
    endpoint = run_record.get("endpoint")
    endpoint_name = endpoint.get("name") if isinstance(endpoint, Mapping) else endpoint
    rows = [
        ("run", fmt(run_record.get("run_id") or run_record.get("pk"))),
        ("status", fmt(run_record.get("status"))),
        ("stage", fmt(run_record.get("stage"))),
        ("endpoint", fmt(endpoint_name or run_record.get("endpoint_name"))),
        ("region", fmt(plan.get("region") or _mapping(spec, "constraints").get("region"))),
        ("report written", datetime.now(UTC).isoformat(timespec="seconds")),
    ]
    error = run_record.get("error")
    if isinstance(error, Mapping) and error.get("name"):
        rows.append(("error", fmt(error["name"])))
        rows.append(("reason", fmt(error.get("reason"))))
    elif error:
        rows.append(("error", fmt(error.get("message", error) if isinstance(error, Mapping) else error)))
    doc.table(["run", "value"], rows)
    sections = (
        *(("Local run",) if _local_differences(run_record) else ()),
        "Plan",
        "Why the others lost",
        "Mode decision",
        "Training",
        "Accuracy",
        "Model card",
        "Spec",
        "Run record",
    )
    doc.para("Contents: " + " · ".join(f"[{s}](#{_slug(s)})" for s in sections))


def _accuracy_table(doc: _Doc, metrics: Mapping[str, Any]) -> None:
    rows = []
    for label, prefix in ACCURACY_ROWS:
        model = metrics.get("teacher") if prefix == "teacher" else metrics.get("student")
        rows.append(
            [
                label,
                fmt(model),
                fmt(metrics.get(f"{prefix}_accuracy"), ".3f"),
                fmt(metrics.get(f"{prefix}_partial"), ".3f"),
                fmt(metrics.get(f"{prefix}_answered"), ".3f"),
            ]
        )
    doc.table(["model", "id", "exact accuracy", "partial credit", "answered (parseable)"], rows, right=[2, 3, 4])


def predicted_vs_actual_panels(pva: Mapping[str, Any]) -> list[tuple[str, float | None, float | None, float | None]]:
    """``(label, predicted, band, actual)`` per figure of a ``predicted_vs_actual`` block, for
    :func:`~stratos_cli.local.plots.plot_predicted_vs_actual` (training cost left out: on a local run it is the
    training time at a price)."""
    from stratos_cli.run_cli import COMPARED

    panels = []
    for key, label, _ in COMPARED:
        c = pva.get(key)
        if key == "training_cost_usd" or not isinstance(c, Mapping):
            continue
        panels.append((label, _number(c.get("predicted")), _number(c.get("band")), _number(c.get("actual"))))
    return panels


def _predicted_vs_actual(doc: _Doc, run_record: Mapping[str, Any], png: str | None) -> None:
    from stratos_cli.run_cli import comparison_rows

    doc.heading(3, "Predicted vs actual")
    pva = _mapping(run_record, "predicted_vs_actual")
    if not pva:
        doc.para(f"No predicted-vs-actual block in the run record ({DASH}): the run did not reach its evaluation.")
        return
    if pva.get("basis") == "local":
        profile = _mapping(run_record, "local_profile")
        doc.para(
            f"Predicted for this machine (`{fmt(pva.get('training_instance'))}`: "
            f"{fmt(profile.get('cores'))} cores, {fmt(profile.get('training_tflops'), '.3f')} TFLOP/s training and "
            f"{fmt(profile.get('bandwidth_gbps'), '.1f')} GB/s measured on "
            f"{fmt(str(profile.get('measured_at') or '')[:10])}), "
            "the local run's own job sized by the estimators; the AWS plan's figures are under [Plan](#plan). "
            "Training cost: the time at the AWS plan's price per training hour (managed spot saving included)."
        )
    else:
        doc.para(
            f"The chosen plan's figures (training on `{fmt(pva.get('training_instance'))}`, serving on "
            f"`{fmt(pva.get('serving_instance'))}`) beside what the run measured."
        )
    doc.para(
        "Each prediction is the estimators' figure corrected by earlier runs of the same task kind, student and mode "
        "(when there are any: 'calibrated on n runs'), ± its band; error = actual - predicted. Latency is measured "
        "by the post-deploy check."
    )
    rows = comparison_rows(dict(pva))
    doc.table(["figure", "predicted", "actual", "error", "relative"], [list(r) for r in rows], right=[1, 2, 3, 4])
    if png:
        doc.image(png, "Predicted (with band) vs measured, per figure")


def _latency_check(doc: _Doc, run_record: Mapping[str, Any]) -> None:
    """The post-deploy load test's verdict in words (:func:`stratos_cli.run_cli.latency_line`), when it ran."""
    from stratos_cli.run_cli import latency_line

    line = latency_line(run_record.get("latency"))
    if line:
        doc.para(line[0].upper() + line[1:] + ".")


def _money(doc: _Doc, spec: Mapping[str, Any], plan: Mapping[str, Any], run_record: Mapping[str, Any]) -> None:
    doc.heading(3, "Money")
    chosen = _mapping(plan, "plan")
    actual = _mapping(run_record, "actual")
    months = _number(_mapping(spec, "constraints").get("serving_months"))
    rows = [
        ("training, as billed (billable time x on-demand price), USD", fmt(actual.get("training_cost_usd"), ",.2f")),
        ("training, planned, USD", fmt(chosen.get("training_cost_usd"), ",.2f")),
        ("endpoint, planned, USD/month", fmt(chosen.get("serving_usd_per_month"), ",.2f")),
        (
            f"serving over {fmt(months, 'g')} month(s), planned, USD",
            fmt(chosen.get("serving_cost_usd"), ",.2f"),
        ),
        ("total, planned, USD", fmt(chosen.get("total_cost_usd"), ",.2f")),
        ("budget (constraints.budget_usd), USD", fmt(_mapping(spec, "constraints").get("budget_usd"), ",.2f")),
    ]
    if actual.get("spot"):
        rows.append(("managed spot saving, measured, USD", fmt(actual.get("spot_saving_usd"), ",.2f")))
    doc.table(["", "value"], rows, right=[1])


def _outcome(
    doc: _Doc,
    spec: Mapping[str, Any],
    plan: Mapping[str, Any],
    metrics: Mapping[str, Any],
    run_record: Mapping[str, Any],
    pva_png: str | None,
) -> None:
    """The report's opening: the run, its accuracy, predicted vs actual, the money."""
    _summary(doc, spec, plan, run_record)
    doc.heading(3, "Accuracy on the held-out set")
    _accuracy_table(doc, metrics)
    _predicted_vs_actual(doc, run_record, pva_png)
    _latency_check(doc, run_record)
    _money(doc, spec, plan, run_record)


def _local_differences(run_record: Mapping[str, Any]) -> list[str]:
    """What a local run did differently from AWS: its notes (e.g. candidates limited to the PyPI models), then
    what it changed about the training job (``local_changes``: model sources and sizing overrides, in words)."""
    notes = [str(n) for n in run_record.get("local_notes") or []]
    changes = [str(c) for c in run_record.get("local_changes") or []]
    return notes + ([f"local sizing: {'; '.join(changes)}"] if changes else [])


def _local_section(doc: _Doc, run_record: Mapping[str, Any]) -> None:
    items = _local_differences(run_record)
    if not items:
        return
    doc.heading(2, "Local run")
    doc.para("A local run: where it differed from the same spec on AWS.")
    doc.bullets(items)


def _spec_section(doc: _Doc, spec: Mapping[str, Any]) -> None:
    doc.heading(2, "Spec")
    if spec.get("description"):
        doc.para(str(spec["description"]))
    rows = [(f"`{path}`", fmt(value)) for path, value in _flatten(spec) if path != "description"]
    if rows:
        doc.table(["field", "value"], rows)
    else:
        doc.para(f"No spec given ({DASH}).")


def _plan_section(doc: _Doc, plan: Mapping[str, Any], pareto: str | None) -> None:
    doc.heading(2, "Plan")
    prices = _mapping(plan, "prices")
    doc.para(
        f"{fmt(plan.get('candidates'))} candidates, {fmt(plan.get('feasible'))} feasible; prices: "
        f"{fmt(prices.get('source'))} (catalog snapshot of {fmt(prices.get('snapshot_date'))}); planned in "
        f"{fmt(plan.get('plan_seconds'), '.2f')} s."
    )
    spot = _mapping(plan, "spot")
    if spot:
        doc.para(
            f"Managed spot: `constraints.spot` {fmt(spot.get('policy'))}; the planner's spot savings and "
            f"interruption rates are the catalog's planning figures (snapshot of {fmt(spot.get('snapshot_date'))}): "
            f"{fmt(spot.get('formula'))}."
        )
    chosen = _mapping(plan, "plan")
    doc.heading(3, "Chosen plan")
    rows = [(label, fmt(chosen.get(key), number_format)) for key, label, number_format in PLAN_FIELDS]
    doc.table(["field", "value"], rows)
    _calibration(doc, plan)
    doc.heading(3, "Pareto plot")
    if pareto:
        doc.para(
            "Total cost (training + serving, USD) against p50 latency (ms); colour = expected accuracy; the star "
            "is the chosen plan, hollow red markers the single-objective baselines."
        )
        doc.image(pareto, "Pareto frontier: total cost vs p50 latency, colour = expected accuracy")
    else:
        doc.para(f"No Pareto plot: the plan has no frontier with cost, latency and accuracy ({DASH}).")
    warnings = plan.get("warnings") or []
    if warnings:
        doc.para("Planner warnings:")
        doc.bullets(str(w) for w in warnings)


def _calibration(doc: _Doc, plan: Mapping[str, Any]) -> None:
    """Which of the chosen plan's figures past runs calibrated (and from how many), their bands, and how the
    uncertainty-aware choice went."""
    from stratos_cli.plan_cli import calibration_rows

    cal, chosen = _mapping(plan, "calibration"), _mapping(plan, "plan")
    if not cal or not all(k in chosen for k in ("expected_accuracy", "training_hours", "p50_latency_ms")):
        return
    doc.heading(3, "Calibration and ties")
    doc.para(
        f"{fmt(cal.get('used'))} of {fmt(cal.get('records'))} past run records had a predicted-vs-actual block; "
        f"each figure is the estimators' own, corrected by the runs of its key (the prior counts as "
        f"{fmt(cal.get('prior_runs'))} run), ± its band."
    )
    rows = [list(r) for r in calibration_rows({"plan": dict(chosen)})]
    doc.table(["figure", "estimate ± band", "runs", "how"], rows, right=[1, 2])
    tie = _mapping(plan, "tie")
    if tie.get("reason"):
        doc.para(f"Uncertainty-aware choice: {tie['reason']}.")


def _lost_section(doc: _Doc, spec: Mapping[str, Any], plan: Mapping[str, Any], top_k: int) -> None:
    doc.heading(2, "Why the others lost")
    chosen = _mapping(plan, "plan")
    scoring = _scoring(plan, spec)
    if scoring is not None:
        w, b = scoring.weights, scoring.best
        doc.para(
            "Deployment score = Σ weight × (value relative to the best feasible value: accuracy / best accuracy, "
            "best cost / cost, best p50 / p50, best training hours / hours); 1 = best on every objective. "
            f"Weights: accuracy {w.accuracy:.2f}, cost {w.cost:.2f}, latency {w.latency:.2f}, training "
            f"time {w.training_time:.2f}. Best feasible values: accuracy {b.accuracy:.3f}, total cost "
            f"{b.total_cost_usd:,.2f} USD, p50 {b.p50_latency_ms:,.0f} ms, training {b.training_hours:.3f} h. "
            "A plan's weakest objective is the score term it lost most on against the chosen plan."
        )
    else:
        doc.para(
            "The plan document has no score normalisers (`score.best`) or the objective weights are unusable: "
            "weakest objectives are judged by relative differences instead of score terms."
        )
    frontier = [p for p in plan.get("frontier") or [] if isinstance(p, Mapping)][:top_k]
    doc.heading(3, f"Pareto frontier, top {len(frontier)} by score")
    if frontier:
        rows = [[str(i), *_plan_row(p), why_lost(p, chosen, scoring)] for i, p in enumerate(frontier, start=1)]
        doc.table(["#", *PLAN_HEADERS, "why it lost"], rows, right=[0, 6, 7, 8, 9, 10])
        if plan.get("frontier_complete") is False:
            doc.para("The frontier was cut at the planner's limit; more Pareto-optimal plans exist.")
    else:
        doc.para(f"No frontier in the plan document ({DASH}).")

    doc.heading(3, "Single-objective baselines")
    baselines = _mapping(plan, "baselines")
    improvement = _mapping(plan, "improvement")
    if baselines:
        doc.para("Each baseline optimises one objective over the same feasible set and is scored by the same formula.")
        rows = [
            [name, *_plan_row(p), _signed_pct(improvement.get(name)), why_lost(p, chosen, scoring)]
            for name, p in baselines.items()
            if isinstance(p, Mapping)
        ]
        doc.table(["baseline", *PLAN_HEADERS, "chosen vs it", "why it lost"], rows, right=[6, 7, 8, 9, 10, 11])
    else:
        doc.para(f"No baselines in the plan document ({DASH}).")

    doc.heading(3, "Rejected candidates by reason")
    rejected = _mapping(plan, "rejected")
    total = _number(plan.get("candidates"))
    if rejected:
        rows = [
            [f"`{reason}`", fmt(count), _pct(count / total) if total and isinstance(count, int | float) else DASH]
            for reason, count in sorted(rejected.items(), key=lambda kv: -(_number(kv[1]) or 0))
        ]
        doc.table(["reason (first failed check)", "candidates", "share of all candidates"], rows, right=[1, 2])
    else:
        doc.para(f"No rejection counts ({DASH}).")


def _signed_pct(value: Any) -> str:
    number = _number(value)
    return DASH if number is None else f"{100 * number:+.1f} %"


def _mode_section(doc: _Doc, metrics: Mapping[str, Any], plan: Mapping[str, Any]) -> None:
    doc.heading(2, "Mode decision")
    evidence = _mapping(metrics, "mode_evidence")
    mode = metrics.get("mode") or evidence.get("mode")
    reason = metrics.get("mode_reason") or evidence.get("reason")
    doc.para(f"**{fmt(mode)}** — {fmt(reason)}")
    chosen = _mapping(plan, "plan")
    planned = chosen.get("mode")
    if planned and mode:
        verdict = "as planned" if planned == mode else "the job decided differently from the plan"
        doc.para(f"The planner assumed `{planned}`; the training job ran `{mode}` ({verdict}).")
    coverage, threshold = _number(evidence.get("coverage")), _number(evidence.get("threshold"))
    hard = _number(evidence.get("coverage_hard"))
    if coverage is not None and threshold is not None:
        parts = [f"Teacher coverage on the probe {coverage:.3f} ({'≥' if coverage >= threshold else '<'} threshold "]
        parts.append(f"{threshold:.3f})")
        if hard is not None:
            cut = fmt(evidence.get("complexity_cut"))
            unit = f" {evidence['complexity_unit']}" if evidence.get("complexity_unit") else ""
            parts.append(
                f"; on the harder half of the probe (complexity ≥ {cut}{unit}) {hard:.3f} "
                f"({'≥' if hard >= threshold else '<'} threshold)"
            )
        if evidence.get("teacher_interface") == "text":
            parts.append(": the teacher returns text only, so the mode is injection whatever its coverage.")
        else:
            covers = coverage >= threshold and (hard is None or hard >= threshold)
            parts.append(": the teacher covers the task (alignment)." if covers else ": it does not (injection).")
        doc.para("".join(parts))
    labels = {
        "forced": "forced by the spec",
        "coverage": "teacher exact accuracy on the probe (fraction)",
        "coverage_partial": "teacher partial credit on the probe (fraction)",
        "coverage_hard": "teacher exact accuracy on the probe's harder half (fraction)",
        "complexity_cut": "complexity where the harder half starts (probe median)",
        "threshold": "coverage needed for alignment, overall and on the harder half (fraction)",
        "probe_size": "probe examples",
        "complexity": "mean task complexity",
        "complexity_unit": "complexity unit",
        "tokenizers_compatible": "teacher and student share a tokenizer",
        "teacher_interface": "what the teacher exposes (logits, top-k or text)",
    }
    rows = [(labels.get(k, k), fmt(v)) for k, v in evidence.items() if k not in ("mode", "reason")]
    if rows:
        doc.table(["evidence", "value"], rows)
    else:
        doc.para(f"No mode evidence recorded ({DASH}).")


#: The run record's ``actual`` (the job as SageMaker billed it): (key, label with unit, format).
BILLING_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("training_seconds", "training time (TrainingTimeInSeconds), s", ","),
    ("billable_seconds", "billable time (BillableTimeInSeconds), s", ","),
    ("training_usd_per_hour", "on-demand price of the job, USD/hour", ",.4f"),
    ("training_cost_usd", "training cost (billable time x on-demand price), USD", ",.2f"),
    ("spot", "managed spot training", ""),
    ("spot_saving_fraction", "managed spot saving (1 - billable / training time)", ""),
    ("spot_saving_usd", "managed spot saving, USD", ",.2f"),
)


def billing_rows(actual: Mapping[str, Any], plan: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The training job's time and cost as billed (run record ``actual``), beside the plan's estimate."""
    rows: list[tuple[str, str]] = []
    for key, label, number_format in BILLING_FIELDS:
        if key not in actual:
            continue
        value = actual[key]
        rows.append((label, _pct(value) if key == "spot_saving_fraction" else fmt(value, number_format)))
    estimate = plan.get("training_cost_usd")
    if rows and isinstance(estimate, int | float):
        saving = plan.get("spot_saving_usd")
        planned = f"{estimate:,.2f}" + (f" (spot saving {saving:,.2f})" if plan.get("spot") and saving else "")
        rows.append(("planned training cost, USD", planned))
    return rows


def _training_section(
    doc: _Doc,
    metrics: Mapping[str, Any],
    loss_png: str | None,
    actual: Mapping[str, Any] | None = None,
    plan: Mapping[str, Any] | None = None,
) -> None:
    doc.heading(2, "Training")
    if loss_png:
        doc.image(loss_png, "Training loss by optimizer step")
    else:
        doc.para(f"No loss history in metrics.json ({DASH}).")
    rows = [
        (label, fmt(metrics.get(key), number_format)) for key, label, number_format in TRAINING_FIELDS if key in metrics
    ]
    if rows:
        doc.table(["quantity", "value"], rows, right=[1])
    billed = billing_rows(actual or {}, plan or {})
    if billed:
        doc.heading(3, "Time and cost as billed")
        doc.para(
            "SageMaker bills the billable time at the on-demand price; a managed spot job's saving shows as fewer "
            "billable than training seconds (SageMaker's savings figure is 1 - billable / training time)."
        )
        doc.table(["quantity", "value"], billed, right=[1])
    rounds_table(doc, metrics)
    reasons = metrics.get("injection_rejection_reasons")
    if isinstance(reasons, Mapping) and reasons:
        doc.heading(3, "Teacher rationales rejected, by reason")
        doc.table(["reason", "count"], [(str(k), fmt(v)) for k, v in reasons.items()], right=[1])


ACCURACY_ROWS = (
    ("teacher", "teacher"),
    ("student before", "student_before"),
    ("student after", "student_after"),
)


def _accuracy_rows(metrics: Mapping[str, Any]) -> list[tuple[str, float | None, float | None]]:
    return [
        (label, _number(metrics.get(f"{prefix}_accuracy")), _number(metrics.get(f"{prefix}_partial")))
        for label, prefix in ACCURACY_ROWS
    ]


def _accuracy_section(
    doc: _Doc, spec: Mapping[str, Any], plan: Mapping[str, Any], metrics: Mapping[str, Any], accuracy_png: str | None
) -> None:
    doc.heading(2, "Accuracy")
    doc.para(
        f"Held-out evaluation set ({fmt(metrics.get('eval_examples'))} examples), greedy decoding (the table is under "
        "[Outcome](#outcome)). Exact accuracy counts fully correct answers; partial credit is the task's partial "
        "score (e.g. F1 of a tile set)."
    )
    min_accuracy = _number(_mapping(spec, "constraints").get("min_accuracy"))
    chosen = _mapping(plan, "plan")
    expected = _number(chosen.get("expected_accuracy"))
    after = _number(metrics.get("student_after_accuracy"))
    facts = [
        f"spec `min_accuracy`: {fmt(min_accuracy, '.3f')}",
        f"planner's expected accuracy: {fmt(expected, '.3f')}",
        f"student after: {fmt(after, '.3f')}"
        + (
            f" ({'meets' if after >= min_accuracy else 'below'} the spec's minimum)"
            if after is not None and min_accuracy is not None
            else ""
        ),
        f"stopped on a stop token before the budget: {fmt(metrics.get('student_after_stop_rate'), '.3f')}",
    ]
    upper = _number(metrics.get("teacher_accuracy_upper95"))
    if upper is not None:
        point = _number(metrics.get("student_over_teacher"))
        facts.append(
            f"student / teacher: {'n/a (teacher 0)' if point is None else fmt(point, '.1f') + 'x'}; over the "
            f"teacher's Wilson 95 % upper bound ({fmt(upper, '.3f')}): "
            f"{fmt(_number(metrics.get('student_over_teacher_upper95')), '.1f')}x (no flooring)"
        )
    doc.bullets(facts)
    if accuracy_png:
        doc.image(accuracy_png, "Accuracy: teacher, student before and after")
    _eval_sets_table(doc, metrics)
    _strata_table(doc, metrics)
    samples = [s for s in metrics.get("samples") or [] if isinstance(s, Mapping)]
    if samples:
        doc.heading(3, "Sample completions (student after)")
        for i, sample in enumerate(samples, start=1):
            problem = json.dumps(sample.get("problem"), ensure_ascii=False, default=str)
            doc.para(f"Sample {i}: problem `{problem}`, reference `{fmt(sample.get('reference'))}`")
            completion = str(sample.get("completion") or "")
            if completion.strip():
                doc.code(completion, "text")
            else:  # an empty code block reads as a rendering bug; say what the model produced
                doc.para(f"Completion: whitespace only, `{completion[:40]!r}` ({len(completion)} characters).")


def _eval_sets_table(doc: _Doc, metrics: Mapping[str, Any]) -> None:
    """Further held-out sets (Mahjong: random tenpai hands), one row per set and model."""
    sets = _mapping(metrics, "eval_sets")
    rows = [
        [
            str(name),
            model.replace("_", " "),
            fmt(row.get("accuracy"), ".3f"),
            fmt(row.get("partial"), ".3f"),
            fmt(row.get("examples")),
        ]
        for name, models in sets.items()
        if isinstance(models, Mapping)
        for model, row in models.items()
        if isinstance(row, Mapping)
    ]
    if rows:
        doc.heading(3, "Further held-out sets")
        doc.para("Scored like the evaluation set, on problems the task builds another way (never trained on).")
        doc.table(["set", "model", "exact accuracy", "partial credit", "examples"], rows, right=[2, 3, 4])


def _strata_table(doc: _Doc, metrics: Mapping[str, Any]) -> None:
    """Exact accuracy per stratum: teacher and student after on the evaluation set, then the further sets."""
    columns: list[tuple[str, Mapping[str, Any]]] = [
        ("teacher", _mapping(metrics, "teacher_strata")),
        ("student after", _mapping(metrics, "student_after_strata")),
    ]
    for name, models in _mapping(metrics, "eval_sets").items():
        if isinstance(models, Mapping) and isinstance(models.get("student_after"), Mapping):
            columns.append((f"student after, {name}", _mapping(models["student_after"], "strata")))
    columns = [(label, table) for label, table in columns if table]
    if not columns:
        return
    strata = list(dict.fromkeys(k for _, table in columns for k in table))

    def cell(table: Mapping[str, Any], stratum: str) -> str:
        row = table.get(stratum)
        if not isinstance(row, Mapping):
            return DASH
        return f"{fmt(row.get('accuracy'), '.2f')} ({fmt(row.get('correct'))}/{fmt(row.get('n'))})"

    doc.heading(3, "Exact accuracy by stratum")
    doc.table(["stratum", *(label for label, _ in columns)], [[s, *(cell(t, s) for _, t in columns)] for s in strata])


def rounds_table(doc: _Doc, metrics: Mapping[str, Any]) -> None:
    """Weakness-targeted Knowledge Injection: per round, examples drawn and probe accuracy per stratum."""
    rounds = [r for r in metrics.get("injection_rounds") or [] if isinstance(r, Mapping)]
    if not rounds:
        return
    doc.heading(3, "Injection rounds (closed loop)")
    doc.para(
        "Each round trains on fresh examples drawn toward the strata the student failed on the previous probe "
        "(weight = floor + 1 - stratum accuracy), then scores a probe of fresh TRAIN-split problems per stratum. "
        "Cells: examples drawn / probe exact accuracy after the round."
    )
    strata = list(dict.fromkeys(k for r in rounds for k in _mapping(r, "probe")))

    def cell(r: Mapping[str, Any], stratum: str) -> str:
        probe = _mapping(_mapping(r, "probe"), stratum)
        return f"{fmt(_mapping(r, 'drawn').get(stratum))} / {fmt(probe.get('accuracy'), '.2f')}"

    rows = [
        [
            fmt(r.get("round")),
            fmt(r.get("examples")),
            *(cell(r, s) for s in strata),
            fmt(r.get("probe_accuracy"), ".3f"),
        ]
        for r in rounds
    ]
    doc.table(["round", "examples", *strata, "probe mean"], rows, right=[0, 1])


def _card_section(doc: _Doc, model_card: str) -> None:
    doc.heading(2, "Model card")
    if not model_card.strip():
        doc.para(f"No model card ({DASH}).")
        return
    front, body = _split_front_matter(model_card)
    if front.strip():
        doc.para("Front matter (Hugging Face metadata):")
        doc.code(front, "yaml")
    doc.embedded_markdown(_demote_headings(body, 2), css_class="model-card")


def write_report(
    out_dir: str | Path,
    *,
    spec: Mapping[str, Any],
    plan: Mapping[str, Any],
    metrics: Mapping[str, Any],
    model_card: str,
    run_record: Mapping[str, Any],
    top_k: int = DEFAULT_TOP_K,
) -> ReportPaths:
    """Write ``report.md``, ``report.html`` and ``images/*.png`` into ``out_dir`` (created if needed).

    Args:
        out_dir: the report folder (self-contained: the documents reference the images relatively).
        spec: the task spec as a JSON object (raw or as parsed; ``objective`` weights are normalised here).
        plan: the planner's document as ``stratos plan --json`` prints it (``plan``, ``frontier``,
            ``baselines``, ``improvement``, ``rejected``, ``score.best``, ``candidates``, ...); the S3 frontier
            document works too.
        metrics: the training job's ``metrics.json``.
        model_card: the deployed model's ``README.md`` (Markdown with YAML front matter).
        run_record: the run's record (status, stage, endpoint, error ``{name, reason}``, ...), shown whole as
            JSON; a local run adds ``local_notes`` and ``local_changes`` (phrases), listed under "Local run".
        top_k: frontier plans listed, at least 1.

    Returns:
        The paths written; figures without data are left out of ``images``.

    Raises:
        OSError: ``out_dir`` cannot be written.
    """
    out = Path(out_dir)
    images_dir = out / IMAGES_DIR
    images_dir.mkdir(parents=True, exist_ok=True)
    task_id = str(spec.get("task_id") or plan.get("task_id") or metrics.get("task") or "task")
    images: dict[str, Path] = {}

    pareto_doc = _pareto_document(plan, task_id)
    if pareto_doc is not None:
        images["pareto"] = images_dir / "pareto.png"
        plot_frontier(pareto_doc, str(images["pareto"]))
    history = metrics.get("loss_history")
    entries = [h for h in history if isinstance(h, Mapping)] if isinstance(history, list) else []
    points = step_losses(entries, metrics.get("final_loss"))
    loss_path = images_dir / "loss.png"
    if plot_loss(
        points,
        loss_path,
        f"{task_id}: training loss ({fmt(metrics.get('mode'))}, {fmt(metrics.get('student'))})",
        run_mean=_number(metrics.get("final_loss")),
    ):
        images["loss"] = loss_path
    chosen = _mapping(plan, "plan")
    accuracy_path = images_dir / "accuracy.png"
    if plot_accuracy(
        _accuracy_rows(metrics),
        accuracy_path,
        f"{task_id}: held-out accuracy",
        min_accuracy=_number(_mapping(spec, "constraints").get("min_accuracy")),
        expected_accuracy=_number(chosen.get("expected_accuracy")),
    ):
        images["accuracy"] = accuracy_path

    pva = _mapping(run_record, "predicted_vs_actual")
    pva_path = images_dir / "predicted_vs_actual.png"
    if pva and plot_predicted_vs_actual(predicted_vs_actual_panels(pva), pva_path, f"{task_id}: predicted vs measured"):
        images["predicted_vs_actual"] = pva_path

    def rel(name: str) -> str | None:
        return f"{IMAGES_DIR}/{images[name].name}" if name in images else None

    doc = _Doc()
    title = f"Stratos run report: {task_id}"
    doc.heading(1, title)
    doc.heading(2, "Outcome")
    _outcome(doc, spec, plan, metrics, run_record, rel("predicted_vs_actual"))
    _local_section(doc, run_record)
    _plan_section(doc, plan, rel("pareto"))
    _lost_section(doc, spec, plan, max(1, top_k))
    _mode_section(doc, metrics, plan)
    _training_section(doc, metrics, rel("loss"), _mapping(run_record, "actual"), chosen)
    _accuracy_section(doc, spec, plan, metrics, rel("accuracy"))
    _card_section(doc, model_card)
    _spec_section(doc, spec)
    doc.heading(2, "Run record")
    doc.code(json.dumps(run_record, indent=2, sort_keys=True, default=str), "json")

    markdown_path, html_path = out / "report.md", out / "report.html"
    markdown_path.write_text(doc.markdown(), encoding="utf-8")
    html_path.write_text(doc.html_page(title), encoding="utf-8")
    return ReportPaths(markdown=markdown_path, html=html_path, images=images)
