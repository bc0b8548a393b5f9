"""Cold-start benchmark of the Lambda handlers: how long importing each handler module takes in a fresh
interpreter, the way a Lambda execution environment imports it during INIT.

For every handler module (the template's ``Handler`` entries, ``functions/lambda/<step>/app.py``) it starts
``--repeats`` fresh Python processes (``cwd=functions/lambda/``, the CodeUri root) and times
``importlib.import_module(<module>)`` inside each with ``time.perf_counter``; the median is the figure the
budget applies to (300 ms). One warm-up process first byte-compiles ``functions/lambda/`` (ship the package with its
``.pyc`` files: a Lambda's code directory is read-only, so nothing is cached there at run time). Also
reported, from the same processes: the time to then ``import boto3`` and create the first client, which the
adapters defer to the first AWS call (so the first invocation pays it), and whether any heavy library
(torch, transformers, numpy, moto, sagemaker) was imported.

Usage: ``python benchmarks/cold_start_bench.py [--json] [--repeats N] [--budget-ms MS]``; exit 1 when a
median exceeds the budget.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FUNCTIONS = REPO / "functions" / "lambda"
HEAVY = ("torch", "transformers", "numpy", "moto", "sagemaker", "matplotlib", "rich")
BUDGET_MS = 300.0

_PROBE = """
import importlib, json, os, sys, time
t0 = time.perf_counter()
importlib.import_module(sys.argv[1])
t1 = time.perf_counter()
import boto3
boto3.session.Session().client("s3", region_name="us-east-1")
t2 = time.perf_counter()
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[2].split(',')))
print(json.dumps({"import_ms": 1000 * (t1 - t0), "boto3_client_ms": 1000 * (t2 - t1), "heavy": heavy}))
"""


def handler_modules() -> list[str]:
    """Handler modules named by template.yaml (``functions/lambda/<step>/app.py``), in template order."""
    modules: list[str] = []
    for line in (REPO / "template.yaml").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("Handler:"):
            module = line.split(":", 1)[1].strip().rsplit(".", 1)[0]
            if module not in modules:
                modules.append(module)
    return modules


def measure(module: str, repeats: int) -> dict[str, Any]:
    """Median/min/max import time (ms) of ``module`` over ``repeats`` fresh interpreters."""
    imports, clients, heavy = [], [], set()
    env = {"PATH": "", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    for i in range(repeats + 1):
        out = subprocess.run(
            [sys.executable, "-c", _PROBE, module, ",".join(HEAVY)],
            capture_output=True,
            text=True,
            check=True,
            cwd=FUNCTIONS,
            env=env,
        )
        sample = json.loads(out.stdout.strip().splitlines()[-1])
        if i == 0:
            continue  # warm-up: byte-compiles the package once, as a deployment package built with .pyc files
        imports.append(sample["import_ms"])
        clients.append(sample["boto3_client_ms"])
        heavy.update(sample["heavy"])
    return {
        "module": module,
        "import_ms_median": round(statistics.median(imports), 1),
        "import_ms_min": round(min(imports), 1),
        "import_ms_max": round(max(imports), 1),
        "first_client_ms_median": round(statistics.median(clients), 1),
        "heavy_imports": sorted(heavy),
        "repeats": repeats,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=9, help="fresh interpreters per module (default 9)")
    parser.add_argument("--budget-ms", type=float, default=BUDGET_MS, help="median import budget, ms")
    args = parser.parse_args(argv)
    subprocess.run([sys.executable, "-c", "import boto3, pydantic, aws_lambda_powertools"], check=True)  # warm disk
    rows = [measure(m, max(1, args.repeats)) for m in handler_modules()]
    over = [r["module"] for r in rows if r["import_ms_median"] > args.budget_ms or r["heavy_imports"]]
    if args.json:
        print(json.dumps({"budget_ms": args.budget_ms, "handlers": rows, "over_budget": over}, indent=2))
    else:
        print(f"Handler cold import, median of {args.repeats} fresh interpreters (budget {args.budget_ms:.0f} ms)")
        print(f"{'module':<24} {'median ms':>10} {'min':>7} {'max':>7} {'+boto3 client ms':>17}  heavy")
        for r in rows:
            heavy = ",".join(r["heavy_imports"]) or "-"
            print(
                f"{r['module']:<24} {r['import_ms_median']:>10.1f} {r['import_ms_min']:>7.1f} "
                f"{r['import_ms_max']:>7.1f} {r['first_client_ms_median']:>17.1f}  {heavy}"
            )
        print("all within budget" if not over else f"OVER BUDGET: {', '.join(over)}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
