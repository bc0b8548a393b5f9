"""``stratos plan SPEC [--json] [--plot FILE.png]``: plan a task spec from the command line.

Prints the chosen plan, the top of the Pareto frontier (a training instance marked ``spot`` runs on managed spot
capacity; the chosen plan's line says what spot saves against on-demand, or why the job stays on-demand), each
of those plans' training parallelism (strategy,
nodes x devices, micro-batch x accumulation, teacher placement, per-device memory estimate vs capacity), the
single-objective baselines and the rejection counts as tables (rich), or one JSON object with ``--json`` (each
plan's ``parallelism`` object in it); ``--plot`` draws the frontier
(:func:`stratos_cli.local.plots.plot_frontier`: total cost vs p50 latency, colour = expected accuracy, the chosen
plan and the baselines marked). Prices come
from the catalog's dated snapshot unless ``--prices live`` asks the AWS Pricing API (credentials needed;
unreachable -> snapshot). Exit codes: 0 planned, 1 invalid spec or no feasible plan, 2 usage.

Calibration (issue 16): the plan is corrected by what past runs measured (:mod:`stratos.planner.calibration`): by
default the run records local runs kept under ``STRATOS_HOME`` (``stratos run``), with ``--runs-table TABLE`` the
stack's DynamoDB runs table (AWS credentials; the spec's region), with ``--no-calibration`` none. The output says
which of the chosen plan's figures are calibrated and from how many runs, each with its band, and how the
uncertainty-aware choice went (the max-score plan kept, or a cheaper plan within its score band).

rich and matplotlib are imported inside the command, only when used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from stratos.errors import InputValidationError, NoFeasiblePlanError

DEFAULT_TOP = 10
"""Frontier plans shown (and printed with --json)."""


def register(subparsers: Any) -> None:
    """Add the ``plan`` subcommand to the ``stratos`` parser."""
    parser = subparsers.add_parser(
        "plan", help="pick teacher, student and instances for a spec (Pareto frontier, baselines, rejections)"
    )
    parser.add_argument("spec", metavar="SPEC", help="task spec JSON file")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--plot", metavar="FILE.png", help="write the Pareto plot (cost vs p50 latency) here")
    parser.add_argument(
        "--prices",
        choices=("snapshot", "live"),
        default="snapshot",
        help="snapshot = the catalog's dated figures (default, offline); live = AWS Pricing API",
    )
    parser.add_argument("--top", type=int, default=DEFAULT_TOP, metavar="K", help="frontier plans to show")
    history = parser.add_mutually_exclusive_group()
    history.add_argument(
        "--runs-table",
        metavar="TABLE",
        help="calibrate on this stack's DynamoDB runs table (default: the records local runs kept in STRATOS_HOME)",
    )
    history.add_argument("--no-calibration", action="store_true", help="plan with the estimators alone")
    parser.add_argument(
        "--unavailable",
        action="append",
        default=[],
        metavar="INSTANCE_TYPE",
        help="instance type the account cannot get (repeatable): plan without it",
    )
    parser.set_defaults(func=_cmd_plan)


def _cmd_plan(args: argparse.Namespace) -> int:
    from stratos.planner.catalog import load_catalog
    from stratos.planner.external import snapshot_models
    from stratos.planner.plan import plan
    from stratos.planner.pricing import PricingApi, bedrock_token_prices, lookup_prices
    from stratos.spec import parse_spec

    try:
        raw = Path(args.spec).read_bytes()
    except OSError as exc:
        print(f"{args.spec}: cannot read: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        spec = parse_spec(raw, source=str(args.spec))
    except InputValidationError as exc:
        if args.json:  # one JSON object on stdout, as for every other outcome
            print(json.dumps(exc.to_dict(), indent=2))
        print(f"{args.spec}: INVALID", file=sys.stderr)
        for err in exc.errors:
            print(f"  {err}", file=sys.stderr)
        return 1
    catalog = load_catalog()
    api = PricingApi() if args.prices == "live" else None
    region = spec.constraints.region
    prices = lookup_prices(region, catalog, api)
    prices = prices.model_copy(update={"bedrock": bedrock_token_prices(region, snapshot_models(spec), api)})
    calibration, source = past_runs(args, spec.constraints.region)
    try:
        result = plan(spec, prices, catalog=catalog, unavailable=args.unavailable, calibration=calibration)
    except NoFeasiblePlanError as exc:
        if args.json:
            print(json.dumps(exc.to_dict(), indent=2))
        else:
            print(f"{args.spec}: no feasible plan", file=sys.stderr)
            print(f"  {exc}", file=sys.stderr)
        return 1
    document = result.frontier_document()
    top = max(1, args.top)
    if args.json:
        out = {
            "task_id": document["task_id"],
            "region": document["region"],
            "prices": document["prices"],
            "candidates": document["candidates"],
            "feasible": document["feasible"],
            "plan": document["plan"],
            "max_runtime_seconds": document["plan"]["max_runtime_seconds"],
            "frontier": document["frontier"][:top],
            "frontier_complete": document["frontier_complete"],
            "baselines": document["baselines"],
            "improvement": document["improvement"],
            "rejected": document["rejected"],
            "score": document["score"],
            "spot": document["spot"],
            "warnings": document["warnings"],
            "plan_seconds": document["plan_seconds"],
            "calibration": {**document["calibration"], "source": source},
            "tie": document["tie"],
            "external_teachers": document["external_teachers"],
        }
        print(json.dumps(out, indent=2))
    else:
        _print_tables(document, top)
        _print_calibration(document, source)
    if args.plot:
        from stratos_cli.local.plots import plot_frontier

        plot_frontier(document, args.plot)
        if not args.json:
            print(f"Pareto plot written to {args.plot}")
    return 0


def past_runs(args: argparse.Namespace, region: str) -> tuple[Any, str]:
    """``(Calibration, where its records came from)`` for the command's options (module docstring)."""
    from stratos.planner.calibration import NO_CALIBRATION, calibrate

    if args.no_calibration:
        return NO_CALIBRATION, "none (--no-calibration)"
    if args.runs_table:
        from stratos.aws.clients import client
        from stratos.aws.records import RunRecords

        records = RunRecords(args.runs_table, client("dynamodb", region))
        return calibrate(records.items_of_kind("run")), f"DynamoDB table {args.runs_table} ({region})"
    from stratos_cli.local.run import local_records, stratos_home

    home = stratos_home()
    return calibrate(local_records(home)), f"local run records in {home / 'runs'}"


def calibration_rows(doc: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """``(figure, value +- band, runs, how)`` for the chosen plan's expected accuracy, training time and p50."""
    plan = doc["plan"]
    rows = []
    for label, key, band_key, pattern in (
        ("expected accuracy", "expected_accuracy", "accuracy_band", "{:.3f}"),
        (f"training time on {plan['training_instance']}, h", "training_hours", "training_hours_band", "{:.3f}"),
        (f"p50 latency on {plan['serving_instance']}, ms", "p50_latency_ms", "p50_latency_band", "{:,.0f}"),
    ):
        band = plan.get(band_key) or {}
        runs = int(band.get("runs") or 0)
        value = pattern.format(plan[key]) + (f" ± {pattern.format(band['band'])}" if "band" in band else "")
        if runs:
            how = f"calibrated: the estimators said {pattern.format(band['uncalibrated'])}"
        else:
            how = "not calibrated (no past run of this key): the estimators' figure, default band"
        rows.append((label, value, str(runs), how))
    return rows


def _print_calibration(doc: dict[str, Any], source: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    cal = doc["calibration"]
    table = Table(
        title=f"Calibration of the chosen plan: {cal['used']} of {cal['records']} past run records usable ({source})"
    )
    for name, justify in (("figure", "left"), ("estimate ± band", "right"), ("runs", "right"), ("", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in calibration_rows(doc):
        table.add_row(*row)
    console.print(table)
    tie = doc.get("tie") or {}
    if tie:
        console.print(f"Uncertainty-aware choice: {tie['reason']}.", highlight=False, soft_wrap=True)


def _print_tables(doc: dict[str, Any], top: int) -> None:
    from rich.console import Console
    from rich.table import Table

    # Off a terminal rich assumes 80 columns and elides the instance names; the tables need ~150.
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(
        f"[bold]{doc['task_id']}[/bold] in {doc['region']}: {doc['candidates']:,} candidates, "
        f"{doc['feasible']:,} feasible; prices: {doc['prices']['source']} (snapshot {doc['prices']['snapshot_date']}); "
        f"constraints.spot {doc['spot']['policy']} (managed spot figures: snapshot {doc['spot']['snapshot_date']})"
    )
    frontier = Table(title=f"Chosen plan (#1) and Pareto frontier, top {min(top, len(doc['frontier']))} by score")
    for name, justify in (
        ("#", "right"),
        ("teacher", "left"),
        ("student", "left"),
        ("mode", "left"),
        ("training", "left"),
        ("serving", "left"),
        ("accuracy", "right"),
        ("p50 ms", "right"),
        ("train h", "right"),
        ("total USD", "right"),
        ("score", "right"),
    ):
        frontier.add_column(name, justify=justify)  # type: ignore[arg-type]
    for i, p in enumerate(doc["frontier"][:top], start=1):
        frontier.add_row(str(i), *_cells(p), style="bold green" if i == 1 else None)
    console.print(frontier)

    layouts = Table(title="Training parallelism of those plans (what the training job runs)")
    for name, justify in (
        ("#", "right"),
        ("training", "left"),
        ("strategy", "left"),
        ("nodes x devices", "right"),
        ("micro-batch x accum", "right"),
        ("global batch", "right"),
        ("teacher", "left"),
        ("GiB/device est / capacity", "right"),
    ):
        layouts.add_column(name, justify=justify)  # type: ignore[arg-type]
    for i, p in enumerate(doc["frontier"][:top], start=1):
        layouts.add_row(str(i), p["training_instance"], *_parallelism_cells(p.get("parallelism")))
    console.print(layouts)

    base = Table(title="Single-objective baselines (same feasible set, same score)")
    for name in ("baseline", "teacher", "student", "mode", "training", "serving"):
        base.add_column(name)
    for name in ("accuracy", "p50 ms", "train h", "total USD", "score", "ours vs it"):
        base.add_column(name, justify="right")
    for name, p in doc["baselines"].items():
        base.add_row(name, *_cells(p), f"{100 * doc['improvement'][name]:+.1f}%")
    console.print(base)

    rejected = Table(title="Rejected candidates by reason")
    rejected.add_column("reason")
    rejected.add_column("candidates", justify="right")
    for reason, count in doc["rejected"].items():
        rejected.add_row(reason, f"{count:,}")
    console.print(rejected)
    plan = doc["plan"]
    console.print(f"Training parallelism: {parallelism_text(plan.get('parallelism'))}.")
    console.print(f"Training pricing: {spot_text(plan, (doc.get('spot') or {}).get('policy'))}.")
    teacher_line = external_teacher_text(plan, doc.get("external_teachers") or [])
    if teacher_line:
        console.print(teacher_line, highlight=False, soft_wrap=True)
    console.print(
        f"Training job MaxRuntimeInSeconds: {plan['max_runtime_seconds']:,} s "
        f"(what the budget left after serving buys at {plan['training_usd_per_hour']:.4f} USD/hour"
        f"{_per_nodes(plan.get('parallelism'))}{' on managed spot' if plan.get('spot') else ''}). "
        f"Endpoint: {plan['serving_usd_per_month']:,.2f} USD/month, "
        f"{plan['throughput_tokens_per_s']:,.0f} generated tokens/s per instance at the spec's concurrency."
    )
    for warning in doc["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {warning}")


def external_teacher_text(plan: dict[str, Any], teachers: list[dict[str, Any]]) -> str:
    """One line on the chosen plan's external teacher (``""`` for a teacher the job loads): what it exposes, the
    tokens one training job is expected to send and receive and their price, the prices per 1,000 tokens and
    where they come from, and the rate the time estimate assumes."""
    access = next((t for t in teachers if t.get("id") == plan.get("teacher")), None)
    if access is None:
        return ""
    if access["interface"] == "top-k":
        how = (
            f"top-{access['top_logprobs']} log-probabilities: the job checks that its token ids are the student's, "
            + (
                "then asks it for every training target and aligns to its top-k (top-k KD)"
                if plan.get("mode") == "alignment"
                else "and may align to them if its probe finds the teacher covers the task; planned as injection"
            )
        )
    else:
        how = "text: the job asks it for text and teaches by Knowledge Injection"
    return (
        f"External teacher: {plan['teacher']} ({how}); ~{plan.get('teacher_tokens', 0):,.0f} tokens per training job, "
        f"{plan.get('teacher_tokens_usd', 0.0):,.4f} USD at {access['usd_per_1k_input']:g} / "
        f"{access['usd_per_1k_output']:g} USD per 1,000 input / output tokens ({access['price_source']}), "
        f"timed at {access['tokens_per_minute']:,} tokens/min."
    )


def _parallelism_cells(layout: dict[str, Any] | None) -> list[str]:
    if not layout:
        return ["-", "1 x ?", "-", "-", "-", "-"]
    world = layout["nodes"] * layout["devices_per_node"]
    return [
        layout["strategy"],
        f"{layout['nodes']} x {layout['devices_per_node']}",
        f"{layout['micro_batch']} x {layout['grad_accum']}",
        str(layout["micro_batch"] * layout["grad_accum"] * world),
        layout["teacher_placement"],
        f"{layout['estimated_peak_gib']:.1f} / {layout['device_capacity_gib']:.1f}",
    ]


def parallelism_text(layout: dict[str, Any] | None) -> str:
    """A plan's parallelism in one line, e.g. ``fsdp_full_shard on 2 nodes x 8 devices, micro-batch 2 x 1
    accumulation (global batch 32 sequences), teacher topk_cache, 17.6 GiB of 20.9 GiB per device (estimate)``."""
    if not layout:
        return "not chosen (a plan from before the planner chose one: one instance, the container's defaults)"
    world = layout["nodes"] * layout["devices_per_node"]
    nodes = "node" if layout["nodes"] == 1 else "nodes"
    devices = "device" if layout["devices_per_node"] == 1 else "devices"
    return (
        f"{layout['strategy']} on {layout['nodes']} {nodes} x {layout['devices_per_node']} {devices}, "
        f"micro-batch {layout['micro_batch']} x {layout['grad_accum']} accumulation "
        f"(global batch {layout['micro_batch'] * layout['grad_accum'] * world} sequences), "
        f"teacher {layout['teacher_placement']}, {layout['estimated_peak_gib']:.1f} GiB of "
        f"{layout['device_capacity_gib']:.1f} GiB per device (estimate)"
    )


def spot_text(plan: dict[str, Any], policy: str | None = None) -> str:
    """A plan's training pricing in one line: managed spot with its expected saving and time overhead against
    the same job on-demand, or on-demand and why (``policy`` is the spec's ``constraints.spot``)."""
    on_demand = plan.get("on_demand_training_cost_usd")
    if plan.get("spot"):
        saving = plan.get("spot_saving_usd") or 0.0
        share = f" ({100 * saving / on_demand:.0f} %)" if on_demand else ""
        overhead = plan.get("spot_overhead_fraction")
        longer = f", {100 * overhead:.1f} % longer for expected interruptions" if overhead is not None else ""
        return (
            f"managed spot, {plan['training_cost_usd']:,.2f} USD expected vs {on_demand or 0:,.2f} USD on-demand: "
            f"saves {saving:,.2f} USD{share}{longer} (catalog spot snapshot: planning figures; the job's billable "
            "seconds are the measured saving)"
        )
    if policy == "off":
        return "on-demand (constraints.spot is 'off')"
    if policy == "auto":
        return (
            "on-demand (constraints.spot 'auto': this instance family has no managed spot figure, or spot would "
            "not be cheaper or would not fit max_training_hours with its interruption overhead)"
        )
    return "on-demand"


def _per_nodes(layout: dict[str, Any] | None) -> str:
    if not layout or layout["nodes"] == 1:
        return ""
    return f" for {layout['nodes']} instances"


def _cells(p: dict[str, Any]) -> list[str]:
    return [
        p["teacher"],
        p["student"],
        p["mode"],
        p["training_instance"] + (" spot" if p.get("spot") else ""),
        p["serving_instance"],
        f"{p['expected_accuracy']:.3f}",
        f"{p['p50_latency_ms']:,.0f}",
        f"{p['training_hours']:.2f}",
        f"{p['total_cost_usd']:,.2f}",
        f"{p['score']:.4f}",
    ]
