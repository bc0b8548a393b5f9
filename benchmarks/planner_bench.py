"""Planner benchmark: deployment score vs single-objective baselines, optimality, and planning time.

(a) A suite of 40 specs built from a grid (task kinds, budgets, latency limits and request shapes, objective
    weights, instance families, regions, serving months, distillation modes, minimum accuracy), planned on the
    packaged catalog and snapshot prices. Per scenario: our deployment score, each baseline's score
    (accuracy-first, cost-first, latency-first: same feasible set, same formula) and the improvement
    ``(ours - baseline) / |baseline|``; then the mean and minimum improvement per baseline, and an exhaustive
    check (:func:`stratos.planner.reference.reference_select`, every candidate enumerated) that our plan is
    the max-score feasible plan. The specs leave ``constraints.spot`` at its default (``auto``): each scenario
    also says whether its plan trains on managed spot and the expected saving.
(b) Planning time (``plan()``: estimates + selection + frontier) for 10^3 ... 10^6 candidates, by synthetic
    catalog expansion: variants of the real instances (price x U[0.8, 1.25], bandwidth and FLOP/s x
    U[0.85, 1.15]) and of the real models (priors x U[0.9, 1.1]), seeded. Reports the median of repeated
    runs, the exhaustive reference's time on the same problem, and the fitted growth exponent
    (least squares of log time on log candidates).

Usage: ``python benchmarks/planner_bench.py [--json] [--quick]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "functions"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "functions" / "lambda"))

from stratos.errors import NoFeasiblePlanError
from stratos.planner.catalog import Catalog, Prior, load_catalog
from stratos.planner.plan import build_problem, limits_for, plan, weights_for
from stratos.planner.pricing import snapshot_price_table
from stratos.planner.reference import reference_select
from stratos.spec import TaskSpec, validate_spec_document

BASELINES = ("accuracy_first", "cost_first", "latency_first")
SIZES = (1_000, 10_000, 100_000, 1_000_000)

DATA = {
    "math-word-problems": (
        {"kind": "math-word-problems", "metric": "numeric-match"},
        {"source": "builtin", "name": "gsm8k", "uri": "s3://stratos-data-bench/datasets/gsm8k/", "train_size": 2000},
    ),
    "symbolic-reasoning": (
        {"kind": "symbolic-reasoning", "metric": "set-match"},
        {"source": "generator", "generator": "mahjong-winning-tiles", "train_size": 2000, "eval_size": 200},
    ),
    "classification": (
        {"kind": "classification", "metric": "exact-match"},
        {
            "source": "jsonl",
            "format": "chat",
            "train_uri": "s3://stratos-data-bench/cls/train.jsonl",
            "eval_uri": "s3://stratos-data-bench/cls/eval.jsonl",
        },
    ),
    "extraction": (
        {"kind": "extraction", "metric": "exact-match"},
        {
            "source": "jsonl",
            "format": "prompt-completion",
            "train_uri": "s3://stratos-data-bench/ext/train.jsonl",
            "eval_uri": "s3://stratos-data-bench/ext/eval.jsonl",
        },
    ),
    "open-qa": (
        {"kind": "open-qa", "metric": "exact-match"},
        {
            "source": "jsonl",
            "format": "chat",
            "train_uri": "s3://stratos-data-bench/qa/train.jsonl",
            "eval_uri": "s3://stratos-data-bench/qa/eval.jsonl",
        },
    ),
}
BUDGETS = (600, 1500, 5000, 20_000)
LATENCY = (
    {"p50_ms": 1500, "prompt_tokens": 256, "output_tokens": 64, "concurrency": 1},
    {"p50_ms": 3000, "prompt_tokens": 512, "output_tokens": 128, "concurrency": 4},
    {"p50_ms": 8000, "prompt_tokens": 1024, "output_tokens": 256, "concurrency": 8},
)
WEIGHTS = (
    {"accuracy": 0.4, "cost": 0.3, "latency": 0.2, "training_time": 0.1},
    {"accuracy": 0.7, "cost": 0.1, "latency": 0.1, "training_time": 0.1},
    {"accuracy": 0.2, "cost": 0.6, "latency": 0.1, "training_time": 0.1},
    {"accuracy": 0.3, "cost": 0.2, "latency": 0.4, "training_time": 0.1},
    {"accuracy": 0.25, "cost": 0.25, "latency": 0.25, "training_time": 0.25},
)
FAMILIES: tuple[list[str] | None, ...] = (
    None,
    ["g5", "g6", "g6e"],
    ["g5", "g6", "c7i", "m7i"],
    ["g6e", "p4d", "p4de", "p5", "g5"],
)
REGIONS = ("us-east-1", "us-west-2", "eu-west-1")
MONTHS = (1, 1, 3, 0.5)


def scenario_specs(count: int = 40) -> list[TaskSpec]:
    """The suite: scenario ``i`` walks each grid axis at a different stride, so the 40 cover the grid."""
    kinds = list(DATA)
    specs = []
    for i in range(count):
        task, data = DATA[kinds[i % len(kinds)]]
        mode = "alignment" if i % 7 == 3 else ("injection" if i % 5 == 4 else "auto")
        doc = {
            "task_id": f"bench-{i:02d}",
            "task": task,
            "data": data,
            "constraints": {
                "budget_usd": BUDGETS[(i // 5) % len(BUDGETS)],
                "serving_months": MONTHS[i % len(MONTHS)],
                "latency": LATENCY[i % len(LATENCY)],
                "min_accuracy": 0.2 if i % 2 else 0.0,
                "max_training_hours": 12 if i % 3 else 48,
                "region": REGIONS[i % len(REGIONS)],
                "instance_families": FAMILIES[(i // 3) % len(FAMILIES)],
            },
            "objective": WEIGHTS[(i // 2) % len(WEIGHTS)],
            "distillation": {"mode": mode},
        }
        if doc["constraints"]["instance_families"] is None:
            del doc["constraints"]["instance_families"]
        specs.append(validate_spec_document(doc))
    return specs


def run_scenarios(catalog: Catalog) -> dict[str, Any]:
    """Plan every scenario; compare with the baselines and with the exhaustive reference."""
    rows: list[dict[str, Any]] = []
    for spec in scenario_specs():
        prices = snapshot_price_table(spec.constraints.region, catalog)
        row: dict[str, Any] = {
            "task_id": spec.task_id,
            "kind": spec.task.kind.value,
            "budget_usd": spec.constraints.budget_usd,
            "p50_ms": spec.constraints.latency.p50_ms,
            "families": spec.constraints.instance_families,
            "region": spec.constraints.region,
            "mode": spec.distillation.mode.value,
        }
        try:
            result = plan(spec, prices, catalog=catalog)
        except NoFeasiblePlanError as exc:
            row.update(feasible=False, reason=str(exc)[:200])
            rows.append(row)
            continue
        chosen = result.chosen
        problem, *_ = build_problem(spec, prices, catalog)
        started = time.perf_counter()
        ref = reference_select(problem, limits_for(spec, problem.instance_types), weights_for(spec))
        ref_seconds = time.perf_counter() - started
        assert ref.chosen is not None
        ours_ids = (chosen.teacher, chosen.student, chosen.mode, chosen.training_instance, chosen.serving_instance)
        optimal = ours_ids == ref.chosen.ids() or abs(chosen.score - ref.chosen.score) <= 1e-12
        row.update(
            feasible=True,
            candidates=result.selection.candidates,
            feasible_candidates=result.selection.feasible,
            plan=f"{chosen.teacher} -> {chosen.student} ({chosen.mode}); "
            f"{chosen.training_instance} / {chosen.serving_instance}",
            score=chosen.score,
            baseline_scores={name: result.selection.baselines[name].score for name in BASELINES},
            improvement=result.improvements(),
            optimal=optimal,
            spot=chosen.spot is not None,
            spot_saving_usd=chosen.as_dict()["spot_saving_usd"],
            max_score_reference=ref.chosen.score,
            plan_seconds=result.seconds,
            reference_seconds=ref_seconds,
        )
        rows.append(row)
    feasible = [r for r in rows if r["feasible"]]
    mean = {b: statistics.fmean(r["improvement"][b] for r in feasible) for b in BASELINES}
    minimum = {b: min(r["improvement"][b] for r in feasible) for b in BASELINES}
    return {
        "scenarios": rows,
        "feasible_scenarios": len(feasible),
        "mean_improvement": mean,
        "min_improvement": minimum,
        "ours_ge_every_baseline": all(r["score"] >= max(r["baseline_scores"].values()) for r in feasible),
        "optimal_all": all(r["optimal"] for r in feasible),
        "spot_scenarios": sum(1 for r in feasible if r["spot"]),
    }


# --------------------------------------------------------------------------------------------------------
# Planning time on synthetic catalogs.


def synthetic_catalog(base: Catalog, n_instances: int, n_teachers: int, n_students: int, seed: int) -> Catalog:
    """``n_instances`` instance variants and teacher/student model variants of the real catalog."""
    rng = random.Random(seed)
    real = [i for i in base.instances if i.snapshot_prices]
    instances = []
    for k in range(n_instances):
        src = real[k % len(real)]
        factor = Decimal(str(round(rng.uniform(0.8, 1.25), 4)))
        prices = {key: (usd * factor).quantize(Decimal("0.0001")) for key, usd in src.snapshot_prices.items()}
        size = src.instance_type.split(".")[2]
        instances.append(
            dataclasses.replace(
                src,
                instance_type=f"ml.{src.family}-v{k}.{size}",
                family=f"{src.family}-v{k}",
                device_bandwidth_gbps=src.device_bandwidth_gbps * rng.uniform(0.85, 1.15),
                device_bf16_tflops=src.device_bf16_tflops * rng.uniform(0.85, 1.15),
                snapshot_prices=prices,
            )
        )

    def variants(role: str, n: int) -> list[Any]:
        pool = [m for m in base.models if role in m.roles and (role == "student" or m.params >= 3e9)]
        out = []
        for k in range(n):
            src = pool[k % len(pool)]
            priors = {
                kind: Prior(min(1.0, p.accuracy * rng.uniform(0.9, 1.1)), p.source) for kind, p in src.priors.items()
            }
            out.append(
                dataclasses.replace(
                    src,
                    id=f"{src.id}-{role[0]}{k}",
                    hf_repo=f"bench/{src.id}-{role[0]}{k}",
                    roles=frozenset({role}),
                    priors=priors,
                )
            )
        return out

    return Catalog(
        instances=tuple(instances),
        models=tuple(variants("teacher", n_teachers) + variants("student", n_students)),
        snapshot_date=base.snapshot_date,
    )


def timing_spec(teachers: list[str], students: list[str]) -> TaskSpec:
    """A broad spec (large budget, loose latency, every family): most candidates survive to the selection."""
    task, data = DATA["math-word-problems"]
    return validate_spec_document(
        {
            "task_id": "bench-timing",
            "task": task,
            "data": data,
            "constraints": {
                "budget_usd": 50_000,
                "latency": {"p50_ms": 8000, "prompt_tokens": 512, "output_tokens": 128, "concurrency": 4},
                "max_training_hours": 48,
                "region": "us-east-1",
            },
            "candidates": {"teachers": teachers, "students": students},
            "distillation": {"mode": "injection"},
        }
    )


#: candidates -> (instances, teachers, students); mode injection, so candidates = T x S x I^2 exactly.
SHAPES = {1_000: (10, 5, 2), 10_000: (20, 5, 5), 100_000: (50, 8, 5), 1_000_000: (100, 10, 10)}


def run_timing(base: Catalog, sizes: tuple[int, ...], repeats: int) -> dict[str, Any]:
    """Median planning time per candidate-space size, and the exhaustive reference's time."""
    out: dict[str, Any] = {"plan_seconds": {}, "reference_seconds": {}, "candidates": {}, "evaluated": {}}
    for size in sizes:
        n_inst, n_t, n_s = SHAPES[size]
        cat = synthetic_catalog(base, n_inst, n_t, n_s, seed=size)
        spec = timing_spec(
            [m.id for m in cat.models if "teacher" in m.roles], [m.id for m in cat.models if "student" in m.roles]
        )
        prices = snapshot_price_table("us-east-1", cat)
        times = []
        result = None
        for _ in range(repeats):
            started = time.perf_counter()
            result = plan(spec, prices, catalog=cat)
            times.append(time.perf_counter() - started)
        assert result is not None
        problem, *_ = build_problem(spec, prices, cat)
        started = time.perf_counter()
        ref = reference_select(problem, limits_for(spec, problem.instance_types), weights_for(spec))
        out["reference_seconds"][str(size)] = time.perf_counter() - started
        assert ref.chosen is not None and ref.chosen.score == result.chosen.score
        out["plan_seconds"][str(size)] = statistics.median(times)
        out["candidates"][str(size)] = result.selection.candidates
        out["evaluated"][str(size)] = result.selection.evaluated
    xs = [math.log(out["candidates"][str(s)]) for s in sizes]
    ys = [math.log(out["plan_seconds"][str(s)]) for s in sizes]
    if len(sizes) > 1:
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        out["growth_exponent"] = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
            (x - mx) ** 2 for x in xs
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="timing up to 10^5 candidates, one repeat")
    args = parser.parse_args(argv)
    base = load_catalog()
    scenarios = run_scenarios(base)
    sizes = SIZES[:3] if args.quick else SIZES
    timing = run_timing(base, sizes, repeats=1 if args.quick else 3)
    report = {**scenarios, **timing}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
    ok = report["optimal_all"] and report["ours_ge_every_baseline"] and report["plan_seconds"]["100000"] < 1.0
    return 0 if ok else 1


def _print(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 180)
    table = Table(title="Deployment score: ours vs single-objective baselines (same feasible set, same formula)")
    for name in ("scenario", "kind", "budget", "p50", "plan", "score", "vs acc-first", "vs cost-first", "vs lat-first"):
        table.add_column(name, justify="right" if name not in ("scenario", "kind", "plan") else "left")
    table.add_column("optimal")
    for r in report["scenarios"]:
        if not r["feasible"]:
            table.add_row(r["task_id"], r["kind"], f"{r['budget_usd']:,.0f}", f"{r['p50_ms']:,.0f}", "infeasible")
            continue
        imp = r["improvement"]
        table.add_row(
            r["task_id"],
            r["kind"],
            f"{r['budget_usd']:,.0f}",
            f"{r['p50_ms']:,.0f}",
            r["plan"],
            f"{r['score']:.4f}",
            *(f"{100 * imp[b]:+.1f}%" for b in BASELINES),
            "yes" if r["optimal"] else "NO",
        )
    console.print(table)
    mean, low = report["mean_improvement"], report["min_improvement"]
    console.print(
        f"{report['feasible_scenarios']} feasible scenarios. Mean improvement: "
        + ", ".join(f"{b} {100 * mean[b]:+.1f}%" for b in BASELINES)
        + ". Minimum: "
        + ", ".join(f"{b} {100 * low[b]:+.1f}%" for b in BASELINES)
        + f". Ours >= every baseline: {report['ours_ge_every_baseline']}. Max-score plan (exhaustive check): "
        f"{report['optimal_all']}. Plans training on managed spot (constraints.spot auto): "
        f"{report['spot_scenarios']} of {report['feasible_scenarios']}."
    )
    timing = Table(title="Planning time (plan(): estimates + selection + frontier), synthetic catalogs")
    for name in ("candidates", "plan s (median)", "scored after pruning", "exhaustive reference s"):
        timing.add_column(name, justify="right")
    for size, seconds in report["plan_seconds"].items():
        timing.add_row(
            f"{report['candidates'][size]:,}",
            f"{seconds:.4f}",
            f"{report['evaluated'][size]:,}",
            f"{report['reference_seconds'][size]:.3f}",
        )
    console.print(timing)
    if "growth_exponent" in report:
        console.print(f"Fitted growth exponent (time ~ candidates^k): k = {report['growth_exponent']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
