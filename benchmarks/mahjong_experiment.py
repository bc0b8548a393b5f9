"""Headline experiment: a small student beats its teacher on Mahjong winning tiles (Knowledge Injection).

Two held-out sets, disjoint from every training hand by structure (suits relabelled or mirrored, honours
relabelled): the generator's eval split, and ``random-tenpai`` hands (uniform random 13-tile draws that wait,
found by rejection sampling, so not built the way training hands are). Rows:

* the teacher Gemma-3-270M (base, 268M parameters), zero-shot (rules and output format in the system prompt)
  and few-shot (2 solved hands with their traces first) on the generator set; on the random set the prompt
  style that scored better on the generator set (``--teachers`` adds teachers, ~5 min each);
* the student before training: SmolLM2-135M-Instruct (``--student`` another source, e.g. a depth-pruned copy
  ``smollm2-135m-instruct@layers=15``);
* the student after Knowledge Injection, trained by the REAL training entry point (``train`` over an
  ``/opt/ml``-shaped directory), exactly as a SageMaker job would run it, on both sets.

Every row decodes greedily with the same budget (``--max-new-tokens``, 320) and the same stop rule (a stop id,
or the end of the ``Answer:`` line), under bf16 autocast. Ratios divide by the BEST teacher row: the point
ratio (when the teacher scores > 0) and the conservative ratio over the teacher's Wilson 95 % upper bound,
which is what the headline quotes when the teacher scores 0 or near it (no flooring).

``--curve``: exact accuracy against training examples (``--curve-sizes``) for the previous trace
(``--old-trace``, decompose) and the new one (``suits``), same student and recipe, so the gain is attributable;
plus the closed loop (``--rounds-compare`` rounds; <= 1 skips it) against one pass at the same number of training
examples; ``--curve-traces`` runs only the traces named (to extend one trace to more sizes). No teacher rows.

Usage: ``python benchmarks/mahjong_experiment.py [--json] [--eval-size 200] [--train-size N] [--curve
[--curve-sizes 300,600] [--curve-traces suits] [--rounds-compare 3]]
[--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "functions" / "lambda"), str(REPO / "functions"), str(REPO / "training_container")]

#: Teachers evaluated by default (the module docstring has the alternatives).
TEACHERS = ("gemma-3-270m",)


def evaluate_teachers(
    teachers: list[str],
    eval_size: int,
    seed: int,
    shots: int,
    max_new_tokens: int,
    trace: str,
    cache_dir: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """Every teacher, zero-shot and few-shot, on the generator's eval hands; then its better prompt style on the
    random-tenpai hands (same decoding budget and stop rule as the student). With ``cache_dir`` the teachers'
    greedy completions come from the completion cache when the same weights already answered the same prompts
    (``stratos_train.evaluate``); the rows are scored again either way."""
    import torch

    from stratos_train.evaluate import evaluate
    from stratos_train.models import load_model
    from stratos_train.tasks import get_task
    from stratos_train.tasks.base import pick_few_shot

    torch.set_num_threads(os.cpu_count() or 1)
    task = get_task("mahjong-winning-tiles", prompt_style="full", trace=trace)
    sets = {"generator": task.examples("eval", eval_size, seed), **task.extra_eval_sets(eval_size, seed)}
    few = pick_few_shot(task.examples("train", 64, seed), shots, seed)
    out: dict[str, dict[str, Any]] = {}
    for name in teachers:
        loaded = load_model(name)
        styles = {"zero-shot": [], f"{shots}-shot": few}

        def row(examples: list[Any], shot_list: list[Any], label: str, model: Any = loaded) -> dict[str, Any]:
            result = evaluate(
                model.model,
                model.tokenizer,
                [task.prompt(e, shot_list) for e in examples],
                lambda text, i: _score(task, examples[i], text),
                max_new_tokens=max_new_tokens,
                batch_size=32,
                label=label,
                bf16=True,
                stop_after_answer=True,
                cache_dir=cache_dir,
            )
            return {
                "accuracy": result.accuracy,
                "correct": int(sum(result.exact)),
                "examples": len(examples),
                "partial": result.partial,
                "stopped": result.stopped,
                "seconds": round(result.seconds, 1),
            }

        for style, shot_list in styles.items():
            out[f"{name} {style} generator"] = row(sets["generator"], shot_list, f"{name} {style}")
        best = max(
            styles, key=lambda st: (out[f"{name} {st} generator"]["accuracy"], out[f"{name} {st} generator"]["partial"])
        )
        for set_name, examples in sets.items():
            if set_name != "generator":
                out[f"{name} {best} {set_name}"] = row(examples, styles[best], f"{name} {best} {set_name}")
        del loaded
    return out


def _score(task: Any, example: Any, text: str) -> tuple[float, float]:
    score = task.score(example, text)
    return float(score.correct), float(score.credit)


def run_training_job(hyperparameters: dict[str, Any], base: Path, device: str = "cpu") -> dict[str, Any]:
    """Run the real entry point over an /opt/ml-shaped directory; return its metrics.json. ``device="cpu"``
    hides any GPU from the job (it trains on CUDA whenever it sees one)."""
    (base / "input" / "config").mkdir(parents=True, exist_ok=True)
    encoded = {k: v if isinstance(v, str) else json.dumps(v) for k, v in hyperparameters.items()}
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(encoded))
    env = {
        **os.environ,
        "STRATOS_SM_BASE": str(base),
        "PYTHONPATH": f"{REPO / 'functions'}:{REPO / 'training_container'}",
    }
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    log = base / "train.log"
    with log.open("w") as fh:
        proc = subprocess.run(
            [sys.executable, "-m", "stratos_train.entrypoint"], stdout=fh, stderr=subprocess.STDOUT, env=env
        )
    if proc.returncode != 0:
        failure = (base / "output" / "failure").read_text() if (base / "output" / "failure").exists() else "?"
        raise RuntimeError(f"training job failed ({proc.returncode}): {failure}; log {log}")
    metrics: dict[str, Any] = json.loads((base / "output" / "data" / "metrics.json").read_text())
    return metrics


def student_hyperparameters(args: argparse.Namespace, trace: str, train_size: int, rounds: int) -> dict[str, Any]:
    """The training job's hyperparameters for the student rows (the recipe; see the README's headline)."""
    return {
        "task": "mahjong-winning-tiles",
        "task_options": {"trace": trace},
        "teacher": args.teachers.split(",")[0],
        "student": args.student,
        "mode": "injection",
        "train_size": train_size,
        "eval_size": args.eval_size,
        "seed": args.seed,
        "epochs": 1,
        "per_device_batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "lr_scheduler": "cosine",
        "warmup_ratio": 0.05,
        "bf16": True,
        "max_seq_len": 512,
        "max_new_tokens": args.max_new_tokens,
        "eval_batch_size": 64,
        "evaluate_teacher": False,
        "evaluate_before": True,
        "logging_steps": 10,
        "injection_rounds": rounds,
        "probe_per_stratum": args.probe_per_stratum,
        "round_patience": 2,
    }


def ratios(student: dict[str, Any], teacher: dict[str, Any]) -> dict[str, Any]:
    """Student over teacher on one set: the point ratio (None when the teacher scores 0) and the conservative
    ratio over the teacher's Wilson 95 % upper bound."""
    from stratos_train.tasks.scoring import wilson_interval

    upper = wilson_interval(teacher["correct"], teacher["examples"])[1]
    return {
        "point": student["accuracy"] / teacher["accuracy"] if teacher["accuracy"] > 0 else None,
        "over_teacher_upper": student["accuracy"] / upper,
        "teacher_upper": upper,
    }


def mahjong(args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    teachers = (
        {}
        if args.no_teachers
        else evaluate_teachers(
            args.teachers.split(","),
            args.eval_size,
            args.seed,
            args.shots,
            args.max_new_tokens,
            args.trace,
            None if args.no_eval_cache else Path(args.eval_cache),
        )
    )
    teacher_minutes = (time.perf_counter() - start) / 60
    with tempfile.TemporaryDirectory(prefix="stratos-mahjong-") as tmp:
        metrics = run_training_job(
            student_hyperparameters(args, args.trace, args.train_size, args.rounds), Path(tmp), args.device
        )
    student = {
        "generator": _set_row(metrics),
        **{k: v["student_after"] for k, v in metrics.get("eval_sets", {}).items()},
    }
    out: dict[str, Any] = {"teachers": teachers, "student_after": student, "ratios": {}, "teacher_best": {}}
    for set_name, row in student.items():
        rows = {k.rsplit(" ", 1)[0]: v for k, v in teachers.items() if k.endswith(f" {set_name}")}
        if rows:
            best = max(rows, key=lambda k: (rows[k]["accuracy"], rows[k]["partial"]))
            out["teacher_best"][set_name] = best
            out["ratios"][set_name] = ratios(row, rows[best])
    out.update(
        student=args.student,
        trace=args.trace,
        student_before_accuracy=metrics.get("student_before_accuracy"),
        student_before_partial=metrics.get("student_before_partial"),
        train_examples=metrics.get("train_examples"),
        train_total_tokens=metrics.get("train_total_tokens"),
        train_seconds=metrics.get("train_seconds"),
        injection_rounds=metrics.get("injection_rounds"),
        job_seconds=metrics.get("job_seconds"),
        device=args.device,
        teacher_minutes=teacher_minutes,
        minutes=(time.perf_counter() - start) / 60,
        samples=metrics.get("samples", [])[:3],
    )
    return out


def _set_row(metrics: dict[str, Any]) -> dict[str, Any]:
    """The generator set's student row from a job's metrics.json."""
    n = metrics.get("eval_examples", 0)
    return {
        "accuracy": metrics["student_after_accuracy"],
        "correct": round(metrics["student_after_accuracy"] * n),
        "examples": n,
        "partial": metrics.get("student_after_partial"),
        "answered": metrics.get("student_after_answered"),
        "strata": metrics.get("student_after_strata", {}),
    }


def curve_runs(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    """The ``--curve`` training runs as ``(trace, examples, rounds)``: every size for each trace
    (``--curve-traces``, else ``--old-trace`` then ``--trace``), one pass each; then ``--trace`` at the last size
    in ``--rounds-compare`` closed-loop rounds, unless that is <= 1."""
    traces = args.curve_traces or [args.old_trace, args.trace]
    runs = [(trace, size, 1) for trace in traces for size in args.curve_sizes]
    if args.rounds_compare > 1:
        runs.append((args.trace, args.curve_sizes[-1], args.rounds_compare))
    return runs


def curve(args: argparse.Namespace) -> dict[str, Any]:
    """Exact accuracy against training examples, old trace vs new, and the closed loop vs one pass."""
    rows: list[dict[str, Any]] = []
    for trace, size, rounds in curve_runs(args):
        started = time.perf_counter()
        hp = student_hyperparameters(args, trace, size, rounds) | {"evaluate_before": False}
        with tempfile.TemporaryDirectory(prefix="stratos-curve-") as tmp:
            metrics = run_training_job(hp, Path(tmp), args.device)
        rows.append(
            {
                "trace": trace,
                "train_examples": metrics.get("train_examples"),
                "rounds": metrics.get("injection_rounds_run", 1),
                "train_total_tokens": metrics.get("train_total_tokens"),
                "generator": _set_row(metrics)["accuracy"],
                "random_tenpai": metrics.get("eval_sets", {})
                .get("random-tenpai", {})
                .get("student_after", {})
                .get("accuracy"),
                "minutes": round((time.perf_counter() - started) / 60, 2),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {"curve": rows, "student": args.student, "eval_size": args.eval_size}


def gsm8k(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(args.gsm8k_data)
    if not (data / "train.jsonl").exists():
        return {"skipped": f"GSM8K not found at {data}"}
    start = time.perf_counter()
    hyperparameters = {
        "task": "gsm8k",
        "task_options": {"data_dir": str(data)},
        "teacher": "smollm2-135m-instruct",
        "student": args.student,
        "mode": "alignment",
        "divergence": "jsd",
        "beta": 0.5,
        "temperature": 1.0,
        "alpha": 0.1,
        "train_size": args.gsm8k_train_size,
        "eval_size": args.gsm8k_eval_size,
        "seed": args.seed,
        "epochs": 1,
        "per_device_batch_size": 4,
        "learning_rate": 2e-4,
        "bf16": True,
        "max_seq_len": 384,
        "max_new_tokens": 192,
        "eval_batch_size": 16,
        "logging_steps": 10,
    }
    with tempfile.TemporaryDirectory(prefix="stratos-gsm8k-") as tmp:
        metrics = run_training_job(hyperparameters, Path(tmp))
    keys = (
        "teacher_accuracy",
        "student_before_accuracy",
        "student_after_accuracy",
        "teacher_answered",
        "student_before_answered",
        "student_after_answered",
        "heldout_kl_before",
        "heldout_kl_after",
        "train_examples",
        "train_seconds",
    )
    return {k: metrics.get(k) for k in keys} | {"minutes": (time.perf_counter() - start) / 60}


def _trace_list(text: str) -> list[str]:
    """``--curve-traces``: comma-separated trace styles, each one the Mahjong task knows, at least one.

    Raises:
        argparse.ArgumentTypeError: an empty list or an unknown style (named, with the known ones).
    """
    from stratos_train.tasks.mahjong import TRACE_STYLES

    traces = [x.strip() for x in text.split(",") if x.strip()]
    if not traces:
        raise argparse.ArgumentTypeError("name at least one trace")
    unknown = [x for x in traces if x not in TRACE_STYLES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown trace {', '.join(unknown)} (known: {', '.join(TRACE_STYLES)})")
    return traces


def build_parser() -> argparse.ArgumentParser:
    """The command line (module docstring)."""
    from stratos_train.tasks.mahjong import TRACE_STYLES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--eval-size", type=int, default=200)
    parser.add_argument("--train-size", type=int, default=1200)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1, help="closed-loop injection rounds (1 = one pass)")
    parser.add_argument("--probe-per-stratum", type=int, default=8)
    parser.add_argument("--student", default="smollm2-135m-instruct")
    parser.add_argument("--shots", type=int, default=2)
    parser.add_argument("--trace", default="suits", choices=TRACE_STYLES)
    parser.add_argument("--old-trace", default="decompose", choices=["waits", "candidates", "decompose"])
    parser.add_argument("--max-new-tokens", type=int, default=320, help="decoding budget of every row")
    parser.add_argument("--teachers", default=",".join(TEACHERS), help="comma-separated teacher models")
    parser.add_argument("--no-teachers", action="store_true", help="skip the teacher rows (training pilots)")
    parser.add_argument(
        "--eval-cache",
        default=str(Path.home() / ".cache" / "stratos" / "completions"),
        help="completion cache of the teacher rows (a frozen teacher is decoded once per prompt set)",
    )
    parser.add_argument("--no-eval-cache", action="store_true", help="decode the teacher rows even when cached")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--curve", action="store_true", help="accuracy vs training examples, old vs new trace")
    parser.add_argument("--curve-sizes", type=lambda t: [int(x) for x in t.split(",")], default=[300, 600, 1200])
    parser.add_argument(
        "--curve-traces",
        type=_trace_list,
        default=None,
        help="--curve: comma-separated traces (default: --old-trace then --trace), e.g. 'suits' to extend one",
    )
    parser.add_argument(
        "--rounds-compare", type=int, default=3, help="--curve: closed-loop rounds of the last row (<= 1: no row)"
    )
    parser.add_argument("--gsm8k", action="store_true", help="also run the small GSM8K alignment pipeline")
    parser.add_argument("--gsm8k-data", default=str(REPO.parent / "shared" / "data" / "gsm8k"))
    parser.add_argument("--gsm8k-train-size", type=int, default=200)
    parser.add_argument("--gsm8k-eval-size", type=int, default=50)
    parser.add_argument("--skip-mahjong", action="store_true")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    result: dict[str, Any] = {}
    if args.curve:
        result.update(curve(args))
    elif not args.skip_mahjong:
        result.update(mahjong(args))
    if args.gsm8k:
        result["gsm8k"] = gsm8k(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print_tables(args, result)


def print_tables(args: argparse.Namespace, result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if "curve" in result:
        table = Table(
            title=f"Exact accuracy vs training examples ({result['student']}, {args.eval_size} hands per set)"
        )
        for column in ("trace", "examples", "rounds", "tokens", "generator", "random tenpai", "min"):
            table.add_column(column, justify="right")
        for row in result["curve"]:
            table.add_row(
                row["trace"],
                str(row["train_examples"]),
                str(row["rounds"]),
                str(row["train_total_tokens"]),
                f"{row['generator']:.3f}",
                "-" if row["random_tenpai"] is None else f"{row['random_tenpai']:.3f}",
                f"{row['minutes']:.1f}",
            )
        console.print(table)
    elif "student_after" in result:
        table = Table(
            title=f"Mahjong winning tiles: exact-set accuracy (F1) on {args.eval_size} held-out hands per set"
        )
        table.add_column("model")
        table.add_column("set")
        table.add_column("exact", justify="right")
        table.add_column("F1", justify="right")
        for name, row in result["teachers"].items():
            label, set_name = name.rsplit(" ", 1)
            table.add_row(f"teacher {label}", set_name, f"{row['accuracy']:.3f}", f"{row['partial']:.3f}")
        table.add_row(
            f"student before ({result['student']})",
            "generator",
            f"{result['student_before_accuracy']:.3f}",
            f"{result['student_before_partial']:.3f}",
        )
        for set_name, row in result["student_after"].items():
            table.add_row(
                f"student after ({result['train_examples']} examples)",
                set_name,
                f"{row['accuracy']:.3f}",
                f"{row['partial']:.3f}",
            )
        console.print(table)
        for set_name, ratio in result["ratios"].items():
            point = "n/a (teacher 0)" if ratio["point"] is None else f"{ratio['point']:.1f}x"
            console.print(
                f"{set_name}: student/teacher {point}; over the teacher's Wilson 95 % upper bound "
                f"({ratio['teacher_upper']:.3f}): {ratio['over_teacher_upper']:.1f}x"
            )
        console.print(f"{result['minutes']:.1f} min total")
    if args.gsm8k:
        console.print({"gsm8k": result["gsm8k"]})


if __name__ == "__main__":
    main()
