"""Headline experiment: a small student beats its teacher on Mahjong winning tiles (Knowledge Injection).

Same held-out hands for every row (the task's eval split; no hand, up to suit relabelling, in training):

* the teacher Gemma-3-270M (base, 268M parameters), zero-shot (rules and output format in the system prompt)
  and few-shot (2 solved hands with their traces first); ``--teachers gemma-3-270m,smollm2-135m-instruct``
  adds SmolLM2-135M-Instruct rows (~11 min more);
* the student before training: SmolLM2-135M-Instruct (135M, half the teacher; ``--student
  smollm2-135m-instruct@layers=15`` trains a depth-pruned 81M copy instead, with ``--train-size 1600``);
* the student after Knowledge Injection, trained by the REAL training entry point (``train`` over an
  ``/opt/ml``-shaped directory), exactly as a SageMaker job would run it.

Every row decodes greedily with the same budget (``--max-new-tokens``, 320: the longest reference trace of the
200 eval hands is 312 tokens) and the same stop rule (a stop id, or the end of the ``Answer:`` line), under bf16
autocast. ``ratio_after_over_teacher`` divides by the BEST teacher row. When every teacher scores 0 the ratio is
computed with the teacher floored at one correct hand (1 / eval_size), which makes it a lower bound.

Also ``--gsm8k``: the same pipeline on GSM8K at small scale with Knowledge Alignment (these tiny models score
near zero on GSM8K; the run reports what moves: held-out KL to the teacher and answer-format compliance).

Usage: ``python benchmarks/mahjong_experiment.py [--json] [--eval-size 200] [--train-size 800]``
(sized for <= 30 min on 2 cores; measured 25.2 min: teacher rows 12.9 min, training 8.1 min, student rows
3.2 min, loading the rest).
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
sys.path[:0] = [str(REPO / "functions"), str(REPO / "training_container")]

#: Teachers evaluated by default (the module docstring has the alternatives).
TEACHERS = ("gemma-3-270m",)


def evaluate_teachers(
    teachers: list[str], eval_size: int, seed: int, shots: int, max_new_tokens: int, trace: str
) -> dict[str, dict[str, float]]:
    """Accuracy of every teacher, zero-shot and few-shot, on the eval hands (same decoding budget and stop rule
    as the student)."""
    import torch

    from stratos_train.evaluate import evaluate
    from stratos_train.models import load_model
    from stratos_train.tasks import get_task
    from stratos_train.tasks.base import pick_few_shot

    torch.set_num_threads(os.cpu_count() or 1)
    task = get_task("mahjong-winning-tiles", prompt_style="full", trace=trace)
    eval_examples = task.examples("eval", eval_size, seed)
    pool = task.examples("train", 64, seed)
    few = pick_few_shot(pool, shots, seed)
    out: dict[str, dict[str, float]] = {}
    for name in teachers:
        loaded = load_model(name)
        for label, shot_list in (("zero-shot", []), (f"{shots}-shot", few)):
            prompts = [task.prompt(e, shot_list) for e in eval_examples]
            result = evaluate(
                loaded.model,
                loaded.tokenizer,
                prompts,
                lambda text, i: _score(task, eval_examples[i], text),
                max_new_tokens=max_new_tokens,
                batch_size=32,
                label=f"{name} {label}",
                bf16=True,
                stop_after_answer=True,
            )
            out[f"{name} {label}"] = {
                "accuracy": result.accuracy,
                "partial": result.partial,
                "stopped": result.stopped,
                "seconds": round(result.seconds, 1),
            }
        del loaded
    return out


def _score(task: Any, example: Any, text: str) -> tuple[float, float]:
    score = task.score(example, text)
    return float(score.correct), float(score.credit)


def run_training_job(hyperparameters: dict[str, Any], base: Path) -> dict[str, Any]:
    """Run the real entry point over an /opt/ml-shaped directory; return its metrics.json."""
    (base / "input" / "config").mkdir(parents=True, exist_ok=True)
    encoded = {k: v if isinstance(v, str) else json.dumps(v) for k, v in hyperparameters.items()}
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(encoded))
    env = {
        **os.environ,
        "STRATOS_SM_BASE": str(base),
        "PYTHONPATH": f"{REPO / 'functions'}:{REPO / 'training_container'}",
    }
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


def mahjong(args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    teachers = (
        {}
        if args.no_teachers
        else evaluate_teachers(
            args.teachers.split(","), args.eval_size, args.seed, args.shots, args.max_new_tokens, args.trace
        )
    )
    hyperparameters = {
        "task": "mahjong-winning-tiles",
        "task_options": {"trace": args.trace},
        "teacher": args.teachers.split(",")[0],
        "student": args.student,
        "mode": "injection",
        "train_size": args.train_size,
        "eval_size": args.eval_size,
        "seed": args.seed,
        "epochs": args.epochs,
        "per_device_batch_size": 8,
        "learning_rate": args.learning_rate,
        "bf16": True,
        "max_seq_len": 384,
        "max_new_tokens": args.max_new_tokens,
        "eval_batch_size": 64,
        "evaluate_teacher": False,
        "evaluate_before": True,
        "logging_steps": 10,
    }
    with tempfile.TemporaryDirectory(prefix="stratos-mahjong-") as tmp:
        metrics = run_training_job(hyperparameters, Path(tmp))
    best_name, best = max(teachers.items(), key=lambda kv: kv[1]["accuracy"], default=("none", {"accuracy": 0.0}))
    floor = 1.0 / args.eval_size
    teacher_acc = best["accuracy"]
    after = metrics["student_after_accuracy"]
    return {
        "teacher_accuracy": teacher_acc,
        "teacher_best": best_name,
        "teachers": teachers,
        "student": args.student,
        "trace": args.trace,
        "student_before_accuracy": metrics.get("student_before_accuracy"),
        "student_after_accuracy": after,
        "student_after_partial": metrics.get("student_after_partial"),
        "student_after_answered": metrics.get("student_after_answered"),
        "ratio_after_over_teacher": after / max(teacher_acc, floor),
        "ratio_is_lower_bound": teacher_acc == 0.0,
        "eval_size": args.eval_size,
        "train_examples": metrics.get("train_examples"),
        "train_seconds": metrics.get("train_seconds"),
        "student_eval_seconds": [metrics.get("student_before_eval_seconds"), metrics.get("student_after_eval_seconds")],
        "job_seconds": metrics.get("job_seconds"),
        "minutes": (time.perf_counter() - start) / 60,
        "samples": metrics.get("samples", [])[:3],
    }


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--eval-size", type=int, default=200)
    parser.add_argument("--train-size", type=int, default=800)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--student", default="smollm2-135m-instruct")
    parser.add_argument("--shots", type=int, default=2)
    parser.add_argument("--trace", default="decompose", choices=["waits", "candidates", "decompose"])
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=320,
        help="decoding budget of every row, teacher and student (the longest eval trace is 312 tokens)",
    )
    parser.add_argument(
        "--teachers", default=",".join(TEACHERS), help="comma-separated teacher models (each adds ~11-13 min)"
    )
    parser.add_argument("--no-teachers", action="store_true", help="skip the teacher rows (training pilots)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--gsm8k", action="store_true", help="also run the small GSM8K alignment pipeline")
    parser.add_argument("--gsm8k-data", default=str(REPO.parent / "shared" / "data" / "gsm8k"))
    parser.add_argument("--gsm8k-train-size", type=int, default=200)
    parser.add_argument("--gsm8k-eval-size", type=int, default=50)
    parser.add_argument("--skip-mahjong", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {}
    if not args.skip_mahjong:
        result.update(mahjong(args))
    if args.gsm8k:
        result["gsm8k"] = gsm8k(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not args.skip_mahjong:
        table = Table(title=f"Mahjong winning tiles: exact-set accuracy on {args.eval_size} held-out hands")
        table.add_column("model")
        table.add_column("accuracy", justify="right")
        table.add_column("F1 (partial)", justify="right")
        for name, row in result["teachers"].items():
            table.add_row(f"teacher {name}", f"{row['accuracy']:.3f}", f"{row['partial']:.3f}")
        table.add_row(f"student before ({args.student})", f"{result['student_before_accuracy']:.3f}", "")
        table.add_row(
            f"student after injection ({result['train_examples']} examples)",
            f"{result['student_after_accuracy']:.3f}",
            f"{result['student_after_partial']:.3f}",
        )
        console.print(table)
        bound = " (lower bound: teacher floored at 1 hand)" if result["ratio_is_lower_bound"] else ""
        console.print(
            f"student/teacher = {result['ratio_after_over_teacher']:.1f}x{bound}; {result['minutes']:.1f} min total"
        )
    if args.gsm8k:
        console.print({"gsm8k": result["gsm8k"]})


if __name__ == "__main__":
    main()
