"""Task data figures: Mahjong reverse-synthesis speed and distribution, split leakage, verifier agreement.

Usage::

    .venv/bin/python benchmarks/tasks_bench.py [--n 10000] [--seed 0] [--json]
        [--tokenizer DIR]   # also count tokens of prompt + target with that tokenizer's chat template
        [--gsm8k DIR]       # also load GSM8K (default ../shared/data/gsm8k when present)

Prints a table (or one JSON object with ``--json``): generation time and examples/s for ``--n`` train
examples, the number-of-waits and honours distributions, duplicate hands (must be 0), structures shared by
train and an independently seeded eval set (must be 0), agreement of the verifier with the brute-force check
on 1,000 hands, and the mean complexity (the ``stratos_contract.tasks`` prior).
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "functions" / "lambda"), str(REPO / "functions"), str(REPO / "training_container")]

from mahjong.shanten import Shanten  # noqa: E402

from stratos_train.tasks import get_task  # noqa: E402
from stratos_train.tasks.mahjong import (  # noqa: E402
    COPIES,
    MahjongTask,
    generate_examples,
    parse_hand,
    structural_key,
    winning_tiles,
)


def _brute_force(counts: list[int]) -> tuple[int, ...]:
    """The package's Shanten on all 34 kinds (same check as tests/unit/test_tasks_mahjong.py)."""
    waits = []
    for kind in range(34):
        if counts[kind] == COPIES:
            continue
        trial = list(counts)
        trial[kind] += 1
        if Shanten.calculate_shanten(trial, use_chiitoitsu=True, use_kokushi=False) == Shanten.AGARI_STATE:
            waits.append(kind)
    return tuple(waits)


def mahjong_figures(n: int, seed: int) -> dict[str, Any]:
    start = time.perf_counter()
    report = generate_examples(n, seed, "train")
    seconds = time.perf_counter() - start
    examples = report.examples
    hands = [ex.problem["hand"] for ex in examples]
    eval_examples = generate_examples(max(200, n // 5), seed + 1000, "eval").examples
    train_keys = {structural_key(parse_hand(h)) for h in hands}
    leaked = sum(structural_key(parse_hand(ex.problem["hand"])) in train_keys for ex in eval_examples)
    sample = [parse_hand(h) for h in hands[:1000]]
    agree = sum(winning_tiles(h) == _brute_force(h) for h in sample)
    waits = collections.Counter(ex.meta["n_waits"] for ex in examples)
    honours = collections.Counter("honours" if ex.meta["honours"] else "no honours" for ex in examples)
    task = MahjongTask()
    target_chars = [len(task.target(ex)) for ex in examples]
    return {
        "n": n,
        "seed": seed,
        "generation_s": round(seconds, 3),
        "examples_per_s": round(n / seconds, 1),
        "proposals": report.proposals,
        "skipped_duplicates": report.duplicates_skipped,
        "skipped_other_split": report.other_split_skipped,
        "skipped_full_stratum": report.full_stratum_skipped,
        "duplicate_hands": len(hands) - len(set(hands)),
        "eval_examples_checked": len(eval_examples),
        "split_leakage": leaked,
        "verifier_vs_brute_force": f"{agree}/{len(sample)}",
        "waits_distribution": {str(k): waits[k] for k in sorted(waits)},
        "honours_distribution": dict(sorted(honours.items())),
        "mean_complexity_arrangements": round(statistics.mean(ex.meta["arrangements"] for ex in examples), 3),
        "mean_target_chars": round(statistics.mean(target_chars), 1),
        "max_target_chars": max(target_chars),
    }


def token_figures(tokenizer_dir: str, seed: int) -> dict[str, Any]:
    """Tokens of prompt + target through the tokenizer's chat template, per prompt style (2,000 examples)."""
    from transformers import AutoTokenizer  # heavy: only when asked

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    out: dict[str, Any] = {}
    for style in ("compact", "full"):
        task = MahjongTask(prompt_style=style)
        lengths, by_waits = [], collections.defaultdict(list)
        for ex in task.examples("train", 2000, seed):
            messages = [*task.prompt(ex), {"role": "assistant", "content": task.target(ex)}]
            ids = tokenizer.apply_chat_template(messages, tokenize=True)
            count = len(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
            lengths.append(count)
            by_waits[min(ex.meta["n_waits"], 6)].append(count)
        lengths.sort()
        out[style] = {
            "mean_tokens": round(statistics.mean(lengths), 1),
            "p90_tokens": lengths[int(0.9 * len(lengths))],
            "max_tokens": lengths[-1],
            "mean_tokens_by_waits": {str(k): round(statistics.mean(v), 1) for k, v in sorted(by_waits.items())},
        }
    return out


def gsm8k_figures(data_dir: Path) -> dict[str, Any]:
    task = get_task("gsm8k", data_dir=data_dir)
    start = time.perf_counter()
    train, test = task.examples("train"), task.examples("eval")
    seconds = time.perf_counter() - start
    return {
        "train": len(train),
        "test": len(test),
        "load_s": round(seconds, 3),
        "mean_steps_train": round(statistics.mean(task.complexity(ex) for ex in train), 3),
        "mean_steps_test": round(statistics.mean(task.complexity(ex) for ex in test), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=10_000, help="Mahjong train examples to generate (10000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--tokenizer", help="a tokenizer directory (e.g. SmolLM2's) to count tokens with")
    default_gsm8k = REPO.parent / "shared" / "data" / "gsm8k"
    parser.add_argument("--gsm8k", type=Path, default=default_gsm8k if default_gsm8k.is_dir() else None)
    args = parser.parse_args(argv)

    figures: dict[str, Any] = {"mahjong": mahjong_figures(args.n, args.seed)}
    if args.tokenizer:
        figures["mahjong_tokens"] = token_figures(args.tokenizer, args.seed)
    if args.gsm8k:
        figures["gsm8k"] = gsm8k_figures(args.gsm8k)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    for section, values in figures.items():
        print(f"\n{section}")
        print(f"  {'figure':<32} value")
        for key, value in values.items():
            text = json.dumps(value) if isinstance(value, dict) else str(value)
            print(f"  {key:<32} {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
