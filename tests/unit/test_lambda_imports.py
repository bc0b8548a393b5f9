"""What a Lambda imports stays small: no torch, transformers, numpy, moto, rich or matplotlib."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

HEAVY = ("torch", "transformers", "numpy", "moto", "rich", "matplotlib", "peft", "sagemaker", "mahjong")
LAMBDA_MODULES = (
    "stratos",
    "stratos.spec",
    "stratos.events",
    "stratos.naming",
    "stratos.payloads",
    "stratos.errors",
    "stratos.tasks_meta",
    "stratos.planner",
    "stratos.planner.catalog",
    "stratos.planner.pricing",
    "stratos.planner.estimators",
    "stratos.planner.matching",
    "stratos.planner.selection",
    "stratos.planner.plan",
    "stratos.planner.store",
    "stratos.planner.steps",
    "stratos.planner.reference",
    "stratos.planner.cli",
)


def test_domain_modules_import_no_heavy_library():
    code = (
        "import importlib, json, sys\n"
        f"for m in {LAMBDA_MODULES!r}: importlib.import_module(m)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO / "functions"
    )
    assert json.loads(out.stdout) == []
