"""External-teacher benchmark: a local run that distils from a teacher behind a SageMaker endpoint, end to end.

``stratos run`` on ``events/specs/word-forms-endpoint-teacher-local.json`` with a fresh ``STRATOS_HOME``: the
embedded AWS, the real ASL and handlers, the teacher endpoint stood up first (Gemma 3 270M, exported from its
PyPI package, served by the local endpoint server), and the real training container calling it with
InvokeEndpoint over HTTP (:mod:`stratos_cli.local.teachers`). The job is interrupted once at ``--interrupt-at``
of its training steps, as managed spot does, and restarted (the same job over the same folders).

Figures:

* **verified-rationale acceptance**: of the training examples the teacher was asked to explain (answer-conditioned
  rationales), how many the task's checker kept, and why the others were rejected;
* **teacher tokens and cost**: calls, tokens in and out, as the job counted them (``metrics.teacher_usage``), and
  what those tokens cost priced as on AWS: the endpoint's marginal price is 0 (billed by the hour to its owner,
  as the planner prices it), so the table also prices the same tokens at each Bedrock model of the dated snapshot
  offered in the spec's region (on-demand USD per 1,000 input and output tokens);
* **calls per training process**, counted where they arrive (the embedded AWS's InvokeEndpoint log, not the job's
  own count): the first process and the one restarted after the interruption, which must make 0 (its phases and
  the reply cache answer);
* the teacher's accuracy on the held-out rows, the student's before and after.

``--serves`` puts another PyPI model behind the endpoint (``smollm2-135m-instruct``, asked in its chat template:
``prompt_format chat``; Gemma 3 270M is a base model without one and is asked in plain text), and
``--rationale-samples`` bounds how many training examples the teacher is asked to explain (a rationale may take
``rationale_tokens`` 256 + ``max_new_tokens`` 16 tokens, and the local endpoint answers one request at a time).

``--top-k K`` makes the endpoint return its top-K log-probabilities per generated token (the spec's
``top_logprobs``): the job checks that the endpoint's token ids are the student's (SmolLM2-135M-Instruct and its
depth-pruned copy share them; Gemma's do not) and, when the probe finds the teacher covers the task, aligns the
student by top-k KD on the teacher's own verified answers (:mod:`stratos_train.sequence_kd`). The table then shows
the teacher answers kept as targets, the positions matched to the teacher's top-k, and the tail mass top-k drops.

Usage: ``python benchmarks/external_teacher_bench.py [--json] [--train N] [--eval N] [--interrupt-at F]
[--serves MODEL] [--rationale-samples N] [--top-k K]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "functions"))
sys.path.insert(0, str(REPO / "functions" / "lambda"))

SPEC = REPO / "events" / "specs" / "word-forms-endpoint-teacher-local.json"
DATA = REPO / "events" / "data" / "word-forms"


def bench_inputs(folder: Path, train: int | None, eval_rows: int | None) -> Path:
    """The data folder: the first ``train`` / ``eval_rows`` rows of the shipped word-forms files (all: None)."""
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.jsonl", train), ("eval.jsonl", eval_rows)):
        lines = [line for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]
        (data / name).write_text("\n".join(lines[:rows] if rows else lines) + "\n", encoding="utf-8")
    return data


def bedrock_equivalents(region: str, tokens_in: int, tokens_out: int) -> list[dict[str, Any]]:
    """The same tokens priced at each snapshot Bedrock model offered in ``region``, USD."""
    from stratos.planner.external import bedrock_snapshot

    snapshot = bedrock_snapshot()
    return [
        {
            "model_id": m.model_id,
            "usd_per_1k_input": m.usd_per_1k_input,
            "usd_per_1k_output": m.usd_per_1k_output,
            "usd": round(tokens_in / 1000 * m.usd_per_1k_input + tokens_out / 1000 * m.usd_per_1k_output, 6),
            "snapshot_date": snapshot.snapshot_date,
        }
        for m in snapshot.models
        if region in m.regions
    ]


def bench_spec(folder: Path, serves: str, top_k: int = 0) -> Path:
    """The example spec with ``serves`` behind its teacher endpoint (chat prompts for an instruct model), returning
    ``top_k`` log-probabilities per generated token."""
    doc = json.loads(SPEC.read_text(encoding="utf-8"))
    [teacher] = doc["candidates"]["external_teachers"]
    teacher["serves"] = serves
    teacher["prompt_format"] = "text" if serves == "gemma-3-270m" else "chat"
    teacher["top_logprobs"] = top_k
    path = folder / SPEC.name
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return path


def run(home: Path, data: Path, spec_path: Path, interrupt_at: float, rationale_samples: int | None) -> dict[str, Any]:
    """One local run of the spec; its figures (module docstring)."""
    from stratos.spec import parse_spec
    from stratos_cli.local.run import LocalRunOptions, run_local
    from stratos_cli.local.serving import stop_all

    spec = parse_spec(spec_path.read_bytes(), str(spec_path))
    notes: list[str] = []
    started = time.perf_counter()
    try:
        options = LocalRunOptions(spec_path=spec_path, data_dir=data, serve=False, home=home, interrupt_at=interrupt_at)
        if rationale_samples is not None:
            options.overrides["rationale_samples"] = str(rationale_samples)
        result = run_local(options, on_note=notes.append)
    finally:
        stop_all()
    m = result.metrics
    usage = m.get("teacher_usage") or {}
    accepted, rejected = m.get("injection_teacher_rationales") or 0, m.get("injection_teacher_rejected") or 0
    calls = result.teacher_calls
    return {
        "status": result.status,
        "error": result.error,
        "reason": result.reason[:300],
        "wall_s": round(time.perf_counter() - started, 1),
        "plan": {k: (result.plan or {}).get(k) for k in ("teacher", "student", "mode", "training_instance")},
        "mode": result.mode,
        "mode_reason": m.get("mode_reason"),
        "train_examples": m.get("train_examples"),
        "eval_examples": m.get("eval_examples"),
        "teacher_accuracy": m.get("teacher_accuracy"),
        "student_before_accuracy": m.get("student_before_accuracy"),
        "student_after_accuracy": m.get("student_after_accuracy"),
        "rationales": {
            "asked": accepted + rejected,
            "accepted": accepted,
            "acceptance_rate": round(accepted / (accepted + rejected), 4) if accepted + rejected else None,
            "rejection_reasons": m.get("injection_rejection_reasons") or {},
        },
        "teacher_usage": usage,
        "priced_as_aws": {
            "endpoint_usd": usage.get("usd"),
            "endpoint_note": "a SageMaker endpoint is billed by the hour to its owner whether or not a run calls it: "
            "the run's marginal price is 0, as the planner prices it",
            "bedrock_equivalents": bedrock_equivalents(
                spec.constraints.region, int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
            ),
        },
        "top_k": {
            "rows_teacher": m.get("teacher_topk_rows_teacher"),
            "rows_reference": m.get("teacher_topk_rows_reference"),
            "reference_reasons": m.get("teacher_topk_reference_reasons") or {},
            "positions": m.get("teacher_topk_positions"),
            "positions_teacher": m.get("teacher_topk_positions_teacher"),
            "tail_mass": m.get("teacher_topk_tail_mass"),
            "targets_seconds": m.get("teacher_topk_cache_seconds"),
            "tokenizers_compatible": (m.get("mode_evidence") or {}).get("tokenizers_compatible"),
        },
        "train_seconds": m.get("train_seconds"),
        "calls_per_process": calls,
        "restarted_process_calls": sum(row["calls"] for row in calls if row["process"] > 1),
        "calls_received": sum(row["calls"] for row in calls),
        "notes": notes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--train", type=int, default=None, help="training rows (default: all 346)")
    parser.add_argument("--eval", type=int, default=None, help="held-out rows (default: all 87)")
    parser.add_argument("--interrupt-at", type=float, default=0.5, help="interrupt the job at this step fraction")
    parser.add_argument(
        "--serves",
        default="gemma-3-270m",
        choices=("gemma-3-270m", "smollm2-135m-instruct"),
        help="the model behind the teacher endpoint (default gemma-3-270m, plain-text prompts)",
    )
    parser.add_argument("--rationale-samples", type=int, default=None, help="examples the teacher explains (64)")
    parser.add_argument(
        "--top-k", type=int, default=0, help="top log-probabilities the endpoint returns per token (0: text only)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="stratos-external-teacher-bench-") as tmp:
        data = bench_inputs(Path(tmp), args.train, args.eval)
        spec_path = bench_spec(Path(tmp), args.serves, args.top_k)
        report = {
            "spec": SPEC.name,
            "serves": args.serves,
            "top_logprobs": args.top_k,
            "interrupt_at": args.interrupt_at,
            "rationale_samples": args.rationale_samples,
            **run(Path(tmp) / "home", data, spec_path, args.interrupt_at, args.rationale_samples),
        }
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        _print(report)
    usage = report["teacher_usage"]
    ok = (
        report["status"] == "SUCCEEDED"
        and report["restarted_process_calls"] == 0
        and report["calls_received"] == usage.get("calls")
        and len(report["calls_per_process"]) >= 2
    )
    return 0 if ok else 1


def _print(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(
        f"{report['spec']}: {report['status']} in {report['wall_s']:.0f} s; plan {report['plan']}; mode "
        f"{report['mode']} ({report['mode_reason']})"
    )
    r, u = report["rationales"], report["teacher_usage"]
    table = Table(title=f"Teacher behind a SageMaker endpoint ({report['serves']}, local endpoint server)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rate = "—" if r["acceptance_rate"] is None else f"{r['acceptance_rate']:.1%}"
    rows = [
        ("training / held-out examples", f"{report['train_examples']} / {report['eval_examples']}"),
        ("teacher accuracy (held-out)", f"{report['teacher_accuracy']}"),
        (
            "student accuracy before -> after",
            f"{report['student_before_accuracy']} -> {report['student_after_accuracy']}",
        ),
        ("rationales asked / kept by the checker", f"{r['asked']} / {r['accepted']} ({rate})"),
        ("rejection reasons", json.dumps(r["rejection_reasons"])),
        *_top_k_rows(report),
        ("teacher calls (job's count) / cache hits", f"{u.get('calls')} / {u.get('cache_hits')}"),
        ("tokens in / out", f"{u.get('input_tokens'):,} / {u.get('output_tokens'):,}"),
        ("endpoint price of the run (USD)", f"{report['priced_as_aws']['endpoint_usd']}"),
        ("calls received by the endpoint", f"{report['calls_received']}"),
        *((f"  {row['job']} process {row['process']}", str(row["calls"])) for row in report["calls_per_process"]),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    priced = Table(title="The same tokens on Bedrock (dated snapshot prices, on-demand)")
    for name in ("model", "USD / 1k in", "USD / 1k out", "USD"):
        priced.add_column(name, justify="left" if name == "model" else "right")
    for row in report["priced_as_aws"]["bedrock_equivalents"]:
        priced.add_row(
            row["model_id"], f"{row['usd_per_1k_input']:g}", f"{row['usd_per_1k_output']:g}", f"{row['usd']:.6f}"
        )
    console.print(priced)


def _top_k_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The top-k KD rows of the table (none when the endpoint was asked for text, or the job did not align)."""
    k = report["top_k"]
    if not report.get("top_logprobs"):
        return []
    rows = [("endpoint token ids are the student's", str(k["tokenizers_compatible"]))]
    if k["rows_teacher"] is None:
        return rows
    tail = "—" if k["tail_mass"] is None else f"{k['tail_mass']:.4f}"
    return [
        *rows,
        ("targets: teacher's verified answers / reference", f"{k['rows_teacher']} / {k['rows_reference']}"),
        ("reference because", json.dumps(k["reference_reasons"])),
        ("positions matched to the teacher's top-k", f"{k['positions_teacher']} / {k['positions']}"),
        ("teacher mass outside its top-k (mean)", tail),
        ("asking for the targets, s", f"{k['targets_seconds']}"),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
