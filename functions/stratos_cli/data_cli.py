"""``stratos data TASK``: write a task's examples as JSONL, to see what the student will learn from.

Examples::

    stratos data mahjong-winning-tiles --n 100 --seed 0 --out mahjong.jsonl
    stratos data gsm8k --data ../shared/data/gsm8k --split eval --n 50 --out gsm8k-eval.jsonl
    stratos data jsonl --format chat --train mine.jsonl --out - --few-shot 2

One record per line: ``id``, ``task``, ``split``, ``problem`` (structured fields), ``prompt`` (the chat
messages a model sees), ``reasoning``, ``answer`` (canonical), ``target`` (the assistant turn trained on),
``complexity`` and ``meta``. A summary goes to stderr. Bad input (unknown task, missing data, malformed
records, an option the task does not take) exits 1 with one line saying what to fix.

The task code lives in the training container package (``stratos_train.tasks``) and is imported only when
the command runs, so the Lambdas that share this package never load it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

#: Which command-line options each task takes (the rest are rejected with a message, not ignored).
_TASK_OPTIONS: dict[str, tuple[str, ...]] = {
    "mahjong-winning-tiles": ("prompt_style", "trace"),
    "gsm8k": ("data",),
    "jsonl": ("train", "eval", "format", "metric", "answer_regex"),
}
_ALL_OPTIONS = ("data", "train", "eval", "format", "metric", "answer_regex", "prompt_style", "trace")


class DataCommandError(Exception):
    """Bad command-line input; printed as ``error: <message>`` with exit code 1."""


def register(subparsers: Any) -> None:
    """Add the ``data`` subcommand to the ``stratos`` parser's subparsers."""
    parser = subparsers.add_parser(
        "data",
        help="write a task's examples (prompt, reasoning, answer) as JSONL",
        description="Write generated or loaded examples of TASK as JSONL, one record per line.",
    )
    parser.add_argument("task", metavar="TASK", help="mahjong-winning-tiles | gsm8k | jsonl")
    parser.add_argument(
        "--n", type=int, default=None, help="number of examples (default: all loaded; mahjong 2000 train / 200 eval)"
    )
    parser.add_argument("--seed", type=int, default=0, help="generation / subsampling seed (default 0)")
    parser.add_argument("--split", choices=("train", "eval"), default="train", help="which side (default train)")
    parser.add_argument("--out", required=True, metavar="FILE", help="output JSONL file; '-' for stdout")
    parser.add_argument("--few-shot", type=int, default=0, metavar="K", help="K solved train examples before each")
    parser.add_argument("--data", metavar="DIR", help="gsm8k: directory with the official train.jsonl, test.jsonl")
    parser.add_argument("--train", metavar="PATH", help="jsonl: local training file")
    parser.add_argument("--eval", metavar="PATH", help="jsonl: local evaluation file")
    parser.add_argument("--format", choices=("chat", "prompt-completion"), help="jsonl: record format")
    parser.add_argument(
        "--metric", choices=("exact-match", "regex-match", "numeric-match", "set-match"), help="jsonl: metric"
    )
    parser.add_argument("--answer-regex", metavar="REGEX", help="jsonl: regex for metric regex-match")
    parser.add_argument("--prompt-style", choices=("compact", "full"), help="mahjong: prompt style (compact)")
    parser.add_argument(
        "--trace", choices=("suits", "waits", "candidates", "decompose"), help="mahjong: reasoning trace style (suits)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """The ``data`` command. Returns the exit code: 0 written, 1 bad input."""
    try:
        return _run(args)
    except DataCommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    tasks = importlib.import_module("stratos_train.tasks")
    name: str = args.task
    if name not in tasks.TASK_NAMES:
        try:
            tasks.get_task(name)  # raises UnknownTaskError with the closest name
        except tasks.TaskError as exc:
            raise DataCommandError(str(exc)) from exc
    given = {opt for opt in _ALL_OPTIONS if getattr(args, opt) is not None}
    foreign = sorted(given - set(_TASK_OPTIONS[name]))
    if foreign:
        flags = ", ".join(_flag(opt) for opt in foreign)
        takes = ", ".join(_flag(opt) for opt in _TASK_OPTIONS[name])
        verb = "does" if len(foreign) == 1 else "do"
        raise DataCommandError(f"{flags} {verb} not apply to task {name} (it takes {takes})")
    if args.n is not None and args.n < 1:
        raise DataCommandError(f"--n must be >= 1, got {args.n}")
    if args.few_shot < 0:
        raise DataCommandError(f"--few-shot must be >= 0, got {args.few_shot}")
    options = _task_options(name, args)
    try:
        task = tasks.get_task(name, **options)
        examples = task.examples(args.split, args.n, args.seed)
        pool = task.examples("train", None, args.seed + 1) if args.few_shot else []
        records = []
        for i, example in enumerate(examples):
            shots = tasks.pick_few_shot(pool, args.few_shot, args.seed + i, exclude=[example.id]) if pool else []
            records.append(tasks.example_record(task, example, args.split, shots))
    except tasks.TaskError as exc:
        raise DataCommandError(str(exc)) from exc
    except ValueError as exc:  # a few-shot pool too small for K
        raise DataCommandError(str(exc)) from exc
    _write(args.out, records)
    _summary(name, args, records)
    return 0


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def _task_options(name: str, args: argparse.Namespace) -> dict[str, Any]:
    if name == "gsm8k":
        if args.data is None:
            raise DataCommandError("gsm8k needs --data DIR (a directory with the official train.jsonl, test.jsonl)")
        return {"data_dir": args.data}
    if name == "jsonl":
        if args.format is None:
            raise DataCommandError("jsonl needs --format chat|prompt-completion")
        options: dict[str, Any] = {"format": args.format, "train": args.train, "eval": args.eval}
        if args.metric is not None:
            options["metric"] = args.metric
        if args.answer_regex is not None:
            options["answer_regex"] = args.answer_regex
        return options
    return {key: getattr(args, key) for key in ("prompt_style", "trace") if getattr(args, key) is not None}


def _write(out: str, records: list[dict[str, Any]]) -> None:
    """Write the records as JSONL to ``out`` ('-' = stdout), atomically for a file."""
    lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    if out == "-":
        sys.stdout.write(lines)
        return
    path = Path(out)
    if not path.parent.is_dir():
        raise DataCommandError(f"output directory {path.parent} does not exist")
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(lines)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise DataCommandError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _summary(name: str, args: argparse.Namespace, records: list[dict[str, Any]]) -> None:
    complexities = [float(r["complexity"]) for r in records]
    mean = sum(complexities) / len(complexities) if complexities else 0.0
    unit = records[0]["complexity_unit"] if records else ""
    where = "stdout" if args.out == "-" else args.out
    print(
        f"wrote {len(records)} {args.split} example(s) of {name} to {where} (seed {args.seed}); "
        f"mean complexity {mean:.2f} ({unit})",
        file=sys.stderr,
    )
