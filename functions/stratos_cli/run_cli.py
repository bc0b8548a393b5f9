"""``stratos run SPEC``: the local pipeline with live progress and a final summary (:mod:`stratos_cli.local.run`)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run", help="run the whole pipeline locally (embedded AWS, real handlers, real training container)"
    )
    run.add_argument("spec", metavar="SPEC", help="task spec JSON file")
    run.add_argument("--data", type=Path, default=None, help="folder with the data files the spec points to")
    run.add_argument("--json", action="store_true", help="print one JSON object at the end (progress on stderr)")
    run.add_argument("--force", action="store_true", help="run even if this spec already ran")
    run.add_argument("--no-serve", action="store_true", help="do not start a local endpoint for the student")
    run.add_argument(
        "-v", "--verbose", action="store_true", help="show the handlers' logs and metric lines, and every poll"
    )
    run.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="extra training hyperparameter override"
    )
    run.add_argument(
        "--interrupt-at",
        type=float,
        default=None,
        metavar="FRACTION",
        help="interrupt each training job once at this fraction of its steps and start it again, as a managed "
        "spot interruption does (default: $STRATOS_LOCAL_INTERRUPT_AT, else never)",
    )
    run.add_argument(
        "--latency-check",
        choices=("report", "roll-back"),
        default="report",
        help="what an endpoint over latency.p50_ms x 1.10 in the post-deploy load test does: report (default "
        "here: this machine's CPU is not the serving instance the spec's limit is for) or roll-back, as on AWS",
    )
    run.set_defaults(func=_cmd_run)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from stratos.errors import InputValidationError, StratosError
    from stratos_cli.local.run import LocalRunOptions, run_local

    console = Console(stderr=args.json)
    if not console.is_terminal:  # a log file or CI: wide enough that the tables do not wrap
        console = Console(stderr=args.json, width=120)
    options = LocalRunOptions(
        spec_path=Path(args.spec),
        data_dir=args.data,
        force=args.force,
        serve=not args.no_serve,
        verbose=args.verbose,
        interrupt_at=args.interrupt_at,
        latency_check=args.latency_check,
    )
    if args.interrupt_at is not None and not 0.0 < args.interrupt_at < 1.0:
        console.print(f"[red]--interrupt-at {args.interrupt_at}: a fraction of the steps, between 0 and 1[/red]")
        return 2
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            console.print(f"[red]--set {item!r}: expected KEY=VALUE[/red]")
            return 2
        options.overrides[key] = value
    if not options.spec_path.exists():
        console.print(f"[red]{args.spec}: no such file[/red]")
        return 1
    progress = _Progress(console)
    # SIGTERM (a closed terminal, `kill`) takes the same path as Ctrl-C, so the training process and the
    # embedded stack are shut down by run_local's cleanup instead of being orphaned.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = run_local(
            options,
            on_state=_StatePrinter(console, every=args.verbose),
            on_progress=progress.update,
            on_note=lambda text: console.print(f"[yellow]local[/yellow] {_one_line(text)}", soft_wrap=True),
        )
    except InputValidationError as exc:
        console.print(f"[red]{args.spec}: INVALID[/red]")
        for err in exc.errors:
            console.print(f"  {err}")
        return 1
    except StratosError as exc:
        console.print(f"[red]error:[/red] {_one_line(str(exc))}", highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        console.print("[red]interrupted: the training process was stopped; nothing is left running[/red]")
        return 130
    finally:
        progress.close()
    if args.json:
        print(json.dumps(result.to_json(), indent=2, default=str))
    else:
        name = (result.endpoint or {}).get("name", "")
        ask = ask_command(name, args.spec, None if args.data is None else str(args.data)) if name else ""
        _summary(console, result, ask)
    return 0 if result.status == "SUCCEEDED" else 1


class _StatePrinter:
    """Prints each state the first time it runs; the polling loops (wait, describe, choice) repeat silently
    unless ``every`` (the progress bar shows the training job meanwhile)."""

    def __init__(self, console: Any, every: bool = False) -> None:
        self.console = console
        self.every = every
        self.seen: set[str] = set()

    def __call__(self, name: str) -> None:
        if self.every or name not in self.seen:
            self.console.print(f"[cyan]state[/cyan] {name}")
        self.seen.add(name)


class _Progress:
    """A rich progress bar for the training job, fed by its metric lines; on a non-terminal (a log file, CI)
    one plain line per metric record instead, since a bar there only renders when it stops."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = console
        self.plain = not console.is_terminal
        self.bar = Progress(
            TextColumn("training"),
            BarColumn(),
            TextColumn("step {task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[tps]} tok/s"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task: Any = None

    def update(self, job: str, record: dict[str, Any]) -> None:
        total = record.get("max_steps") or record.get("total_steps")
        loss = record.get("train_loss")
        loss_text = f"{loss:.3f}" if isinstance(loss, float) else "-"
        tps = f"{record.get('completion_tokens_per_s', 0):.0f}"
        if self.plain:
            step, elapsed = record.get("step"), record.get("elapsed_s")
            if not isinstance(step, int) or not total or record.get("train_loss") is None:
                return
            eta = ""
            if isinstance(elapsed, int | float) and step > 0:
                eta = f", ETA {max(0.0, elapsed / step * (total - step)) / 60:.1f} min"
            self.console.print(f"training step {step}/{total}: loss {loss_text}, {tps} tok/s{eta}")
            return
        if self.task is None:
            self.bar.start()
            self.task = self.bar.add_task(job, total=total or 100, loss=loss_text, tps=tps)
        self.bar.update(self.task, completed=record.get("step", 0), total=total or None, loss=loss_text, tps=tps)

    def close(self) -> None:
        if self.task is not None:
            self.bar.stop()


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("—" if value is None else str(value))


def _one_line(text: str) -> str:
    """``text`` on one line, literal for rich (a reason may hold ``[...]``, which rich would read as markup)."""
    from rich.markup import escape

    return escape(" ".join(str(text).split()))


def _number(value: Any, pattern: str) -> str:
    return pattern.format(value) if isinstance(value, int | float) else _fmt(value)


def _mode_line(metrics: dict[str, Any], plan: dict[str, Any]) -> str:
    """``mode: <mode> — <reason>`` and its evidence: the probe's size, and the plan's mode when the job's
    auto switch decided otherwise (the planner predicts the mode from catalog priors, the job measures)."""
    mode = metrics.get("mode", "—")
    line = f"mode: [bold]{mode}[/bold] — {_one_line(metrics.get('mode_reason', ''))}"
    evidence = metrics.get("mode_evidence") or {}
    details = []
    if evidence.get("probe_size"):
        details.append(f"teacher probed on {evidence['probe_size']} held-out examples")
    planned = plan.get("mode")
    if planned and mode != "—" and str(planned) != str(mode):
        details.append(f"the plan assumed {planned} from the catalog's priors")
    return line + (f" ({'; '.join(details)})" if details else "")


def ask_command(endpoint: str, spec: str, data: str | None) -> str:
    """The ``stratos ask`` line that puts the run's first held-out problems to its endpoint."""
    return f"stratos ask {endpoint} --spec {spec}" + (f" --data {data}" if data else "") + " --count 3"


#: predicted_vs_actual figures: (key, label with unit, number format).
COMPARED: tuple[tuple[str, str, str], ...] = (
    ("accuracy", "accuracy (fraction)", "{:.3f}"),
    ("training_hours", "training time, h", "{:.3f}"),
    ("training_cost_usd", "training cost, USD", "{:,.4f}"),
    ("p50_latency_ms", "p50 latency, ms", "{:,.0f}"),
    ("tokens_per_s", "generated tokens/s per instance", "{:,.1f}"),
)


def comparison_rows(pva: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """``(figure, predicted +- band, actual, error, relative error)`` per figure of a ``predicted_vs_actual``
    block; ``—`` for what was not predicted or not measured. A calibrated prediction says from how many past
    runs and what the estimators alone predicted."""
    rows = []
    for key, label, pattern in COMPARED:
        c = pva.get(key)
        if not isinstance(c, dict):
            continue
        predicted = _number(c.get("predicted"), pattern)
        if isinstance(c.get("band"), int | float):
            predicted += f" ± {_number(c['band'], pattern)}"
        uncal, runs = c.get("uncalibrated"), c.get("runs")
        if isinstance(runs, int) and runs > 0:
            plural = "run" if runs == 1 else "runs"
            predicted += f" (calibrated on {runs} {plural}; estimator {_number(uncal, pattern)})"
        rel = c.get("relative_error")
        rows.append(
            (
                label,
                predicted,
                _number(c.get("actual"), pattern),
                _number(c.get("error"), pattern.replace("{:", "{:+")),
                f"{100 * rel:+.0f} %" if isinstance(rel, int | float) else "—",
            )
        )
    return rows


def _comparison(console: Any, result: Any) -> None:
    """The predicted-vs-actual table: this machine's prediction on a local run (its profile named)."""
    from rich.table import Table

    pva = getattr(result, "predicted_vs_actual", None)
    if not isinstance(pva, dict):
        return
    where = (
        f"this machine, {pva.get('training_instance')}" if pva.get("basis") == "local" else pva.get("training_instance")
    )
    table = Table(title=f"predicted vs actual ({where})")
    for col in ("figure", "predicted", "actual", "error", "relative"):
        table.add_column(col, justify="left" if col == "figure" else "right", overflow="fold")
    for row in comparison_rows(pva):
        table.add_row(*row)
    console.print(table)


def teacher_lines(metrics: dict[str, Any], calls: list[dict[str, Any]]) -> list[str]:
    """What calling an external teacher took (``metrics.teacher_usage``), the rationales it wrote that the task's
    checker kept (or, in top-k alignment, its answers kept as targets and the positions on its top-k), and the
    calls the embedded AWS counted per training process (``stratos run`` locally); no lines for a teacher the job
    loaded."""
    usage = metrics.get("teacher_usage")
    if not isinstance(usage, dict):
        return []
    lines = [
        f"teacher calls: {usage.get('calls', 0):,} ({usage.get('cache_hits', 0):,} answered from the run's reply "
        f"cache), {usage.get('input_tokens', 0):,} tokens in, {usage.get('output_tokens', 0):,} out, "
        f"{_number(usage.get('usd'), '{:,.4f}')} USD"
    ]
    accepted, rejected = metrics.get("injection_teacher_rationales"), metrics.get("injection_teacher_rejected")
    if isinstance(accepted, int) and isinstance(rejected, int) and accepted + rejected:
        lines.append(
            f"teacher rationales kept by the checker: {accepted} of {accepted + rejected} "
            f"({accepted / (accepted + rejected):.0%})"
        )
    kept, reference = metrics.get("teacher_topk_rows_teacher"), metrics.get("teacher_topk_rows_reference")
    if isinstance(kept, int) and isinstance(reference, int):
        matched, positions = metrics.get("teacher_topk_positions_teacher"), metrics.get("teacher_topk_positions")
        lines.append(
            f"top-k targets: {kept} of {kept + reference} are the teacher's verified answers; "
            f"{_number(matched, '{:,}')} of {_number(positions, '{:,}')} positions on its top-k, tail mass "
            f"{_number(metrics.get('teacher_topk_tail_mass'), '{:.3f}')}"
        )
    if calls:
        per = ", ".join(f"{row['job']} process {row['process']}: {row['calls']}" for row in calls)
        lines.append(f"teacher endpoint calls received: {per}")
    return lines


def latency_line(check: Any) -> str:
    """One line on the post-deploy latency check of a run record's ``latency`` block (""; none ran): measured
    p50 / p90 and tokens/s at its concurrency, the limit and the verdict, and what the verdict did."""
    if not isinstance(check, dict) or not isinstance(check.get("measured"), dict):
        return ""
    m = check["measured"]
    verdict = "within" if check.get("passed") else "OVER"
    tolerance = 100 * float(check.get("tolerance") or 0)
    if check.get("passed"):
        done = ""
    elif check.get("keep"):
        done = "; reported only, the endpoint stays (--latency-check roll-back rolls it back)"
    else:
        done = "; rolled back"
    return (
        f"latency check: p50 {_number(m.get('p50_ms'), '{:,.0f}')} ms, p90 {_number(m.get('p90_ms'), '{:,.0f}')} ms, "
        f"{_number(m.get('tokens_per_s'), '{:,.1f}')} tokens/s at concurrency {m.get('concurrency', '?')} "
        f"({m.get('requests', '?')} requests); {verdict} the limit {_number(check.get('limit_ms'), '{:,.0f}')} ms "
        f"(spec p50 {_number(check.get('spec_p50_ms'), '{:,.0f}')} ms + {tolerance:.0f} %)" + done
    )


def _summary(console: Any, result: Any, ask: str = "") -> None:
    """The run's outcome: status, run id and (failed) error name on one line, the reason on the next; what the
    local run changed about the job; the plan (with its expected managed spot saving when it trains on spot),
    the mode and its evidence, the accuracy table (with format
    compliance) and held-out KL; predicted vs actual on this machine; the endpoint with the ``ask`` command
    line, and the report."""
    from rich.table import Table

    colour = "green" if result.status == "SUCCEEDED" else "red"
    error = getattr(result, "error", "")
    console.print(
        f"\n[bold {colour}]{result.status}[/bold {colour}] run {_one_line(result.run_id or '(no run id)')}"
        + (f": [bold]{_one_line(error)}[/bold]" if error else "")
        + (" (already ran)" if result.reused else ""),
        highlight=False,
        soft_wrap=True,
    )
    if result.reason:
        console.print(f"reason: {_one_line(result.reason)}", highlight=False, soft_wrap=True)
    changes = getattr(result, "local_changes", None) or []
    if changes:
        console.print(f"local sizing: {_one_line('; '.join(changes))}", highlight=False, soft_wrap=True)
    plan = result.plan or {}
    if plan:
        table = Table(title="plan (priced as on AWS)")
        row = {
            "teacher": plan.get("teacher", "—"),
            "student": plan.get("student", "—"),
            "training": str(plan.get("training_instance", "—")) + (" (spot)" if plan.get("spot") else ""),
            "serving": plan.get("serving_instance", "—"),
            "mode": str(plan.get("mode", "—")),
            "exp. accuracy": _fmt(plan.get("expected_accuracy")),
            "p50 ms": _number(plan.get("p50_latency_ms"), "{:,.0f}"),
            "total USD": _number(plan.get("total_cost_usd"), "{:,.2f}"),
        }
        for col, cell in row.items():
            # Model ids are never cut short: a narrow console folds them instead of ending them in "…".
            table.add_column(col, overflow="fold", min_width=len(cell) if col in ("teacher", "student") else None)
        table.add_row(*row.values())
        console.print(table)
        if plan.get("spot"):
            console.print(
                f"training on managed spot: {_number(plan.get('training_cost_usd'), '{:,.2f}')} USD expected vs "
                f"{_number(plan.get('on_demand_training_cost_usd'), '{:,.2f}')} USD on-demand (saves "
                f"{_number(plan.get('spot_saving_usd'), '{:,.2f}')} USD; the report shows the billed saving)",
                highlight=False,
                soft_wrap=True,
            )
    m = result.metrics or {}
    if m:
        console.print(_mode_line(m, plan), highlight=False, soft_wrap=True)
        acc = Table(title=f"accuracy on {m.get('eval_examples', '?')} held-out examples")
        acc.add_column("model")
        acc.add_column("accuracy", justify="right")
        acc.add_column("partial credit", justify="right")
        acc.add_column("answered (format)", justify="right")
        for key in ("teacher", "student_before", "student_after"):
            cells = (m.get(f"{key}_accuracy"), m.get(f"{key}_partial"), m.get(f"{key}_answered"))
            acc.add_row(key.replace("_", " "), *(_fmt(c) for c in cells))
        console.print(acc)
        before, after = m.get("heldout_kl_before"), m.get("heldout_kl_after")
        if isinstance(before, int | float) and isinstance(after, int | float):
            console.print(f"held-out KL(teacher ‖ student): {before:.3f} -> {after:.3f} nats/token", highlight=False)
    for text in teacher_lines(m, getattr(result, "teacher_calls", None) or []):
        console.print(text, highlight=False, soft_wrap=True)
    _comparison(console, result)
    line = latency_line(getattr(result, "latency", None))
    if line:
        console.print(line, highlight=False, soft_wrap=True)
    if result.endpoint:
        name = result.endpoint["name"]
        console.print(f'endpoint: {name} at {result.endpoint["url"]}  (stratos invoke {name} "...")')
        if ask:
            console.print(f"held-out problems with verdicts: {ask}", highlight=False, soft_wrap=True)
    if result.report:
        console.print(f"report: {result.report}")
    sys.stdout.flush()
