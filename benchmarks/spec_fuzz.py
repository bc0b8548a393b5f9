"""Spec validator fuzz counts: N mutated example specs through parse_spec + deployment_checks (issue 14, part 4).

Usage::

    .venv/bin/python benchmarks/spec_fuzz.py [--n 2000] [--seed 0] [--json] [--show 5]

Each mutant is one ``events/specs/*.json`` with one change (a leaf replaced with a nasty value, a key deleted,
an unknown key added, a key written twice, a list item repeated, a data URI pointed somewhere it must not go;
``tests/helpers/spec_mutants.py``), checked against a fixed stack (the base's region; data in the artifacts
bucket's ``data/`` or the examples' data buckets). Prints a table (or one JSON object with ``--json``): total,
accepted-valid, rejected, crashes (anything but SpecValidationError), accepted-invalid (a mutant the change
made invalid for sure, accepted), rejections not naming the field (an error path that is not the mutated
field, its parent or a sibling; ``<root>`` for anything but nesting too deep), rejections with a message part
over its cap or leaking internals, and the same per mutation kind. Exit 1 when any of the last four is not 0.
The same generator and judge drive ``tests/unit/test_spec_fuzz.py`` (with hypothesis).
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "functions" / "lambda"), str(REPO / "functions")]

from tests.helpers.spec_mutants import BASES, judge, mutate, random_chooser  # noqa: E402

COLUMNS = ("total", "accepted_valid", "rejected", "crashes", "accepted_invalid", "not_naming_field", "unsane")
BAD = ("crashes", "accepted_invalid", "not_naming_field", "unsane")
OUTCOME_COLUMN = {
    "accepted-valid": "accepted_valid",
    "accepted-invalid": "accepted_invalid",
    "rejected": "rejected",
    "crash": "crashes",
}


def fuzz(n: int, seed: int, show: int) -> dict[str, Any]:
    """Judge ``n`` mutants drawn with ``random.Random(seed)``; counts overall and per mutation kind."""
    choose = random_chooser(random.Random(seed))
    overall: collections.Counter[str] = collections.Counter()
    by_kind: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    examples: list[str] = []
    start = time.perf_counter()
    for _ in range(n):
        mutant = mutate(choose)
        verdict = judge(mutant)
        counts = collections.Counter({"total": 1, OUTCOME_COLUMN[verdict.outcome]: 1})
        if verdict.outcome == "rejected":
            counts.update(not_naming_field=int(bool(verdict.unnamed)), unsane=int(bool(verdict.unsane)))
        overall.update(counts)
        by_kind[mutant.kind].update(counts)
        if any(counts[k] for k in BAD) and len(examples) < show:
            wrong = verdict.crash or "; ".join(str(e) for e in (verdict.unnamed + verdict.unsane)) or "accepted"
            examples.append(f"{mutant.base} {mutant.kind} {mutant.label} at {list(mutant.path)}: {wrong}")
    seconds = time.perf_counter() - start
    return {
        "n": n,
        "seed": seed,
        "bases": list(BASES),
        "seconds": round(seconds, 2),
        "mutants_per_s": round(n / seconds, 1),
        **{k: overall[k] for k in COLUMNS},
        "by_kind": {kind: {k: c[k] for k in COLUMNS} for kind, c in sorted(by_kind.items())},
        "examples_of_failures": examples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=2000, help="mutants to judge (2000)")
    parser.add_argument("--seed", type=int, default=0, help="random.Random seed (0)")
    parser.add_argument("--show", type=int, default=5, help="print up to this many failing mutants (5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    figures = fuzz(args.n, args.seed, args.show)
    failed = any(figures[k] for k in BAD)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 1 if failed else 0
    print(f"{figures['n']} mutants of {len(BASES)} example specs, seed {figures['seed']}: {figures['seconds']} s")
    widths = [len(c) + 2 for c in COLUMNS]
    print(f"{'kind':<16}" + "".join(f"{c:>{w}}" for c, w in zip(COLUMNS, widths, strict=True)))
    rows = [*figures["by_kind"].items(), ("all", {k: figures[k] for k in COLUMNS})]
    for kind, counts in rows:
        print(f"{kind:<16}" + "".join(f"{counts[c]:>{w}}" for c, w in zip(COLUMNS, widths, strict=True)))
    for line in figures["examples_of_failures"]:
        print(f"  FAIL {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
