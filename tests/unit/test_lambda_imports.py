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
    "stratos_cli.plan_cli",
    "stratos.pipeline",
    "stratos.pipeline.settings",
    "stratos.pipeline.models",
    "stratos.pipeline.services",
    "stratos.pipeline.state",
    "stratos.pipeline.validate",
    "stratos.pipeline.planning",
    "stratos.pipeline.training",
    "stratos.pipeline.gate",
    "stratos.pipeline.deploy",
    "stratos.pipeline.latency",
    "stratos.loadtest",
    "stratos.pipeline.record",
    "stratos.pipeline.sweep",
    "stratos.aws",
    "stratos.aws.clients",
    "stratos.aws.artifacts",
    "stratos.aws.records",
    "stratos.aws.sagemaker",
    "stratos.aws.stepfunctions",
)
#: One module per Lambda function folder (functions/lambda/<step>/app.py), as the template's Handler names them.
HANDLER_MODULES = (
    "validate_spec.app",
    "look_up_prices.app",
    "select_plan.app",
    "prepare_training.app",
    "evaluation_gate.app",
    "deploy.app",
    "check_latency.app",
    "record_run.app",
    "redistill_sweep.app",
)


def test_domain_modules_import_no_heavy_library():
    code = (
        "import importlib, json, sys\n"
        f"for m in {LAMBDA_MODULES!r}: importlib.import_module(m)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO / "functions" / "lambda"
    )
    assert json.loads(out.stdout) == []


def _imported_by(module: str) -> list[str]:
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO / "functions" / "lambda"
    )
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def test_each_handler_imports_no_torch_transformers_or_moto():
    for module in HANDLER_MODULES:
        loaded = set(_imported_by(module))
        assert not loaded & {"torch", "transformers", "moto", *HEAVY}, (module, sorted(loaded & set(HEAVY)))


def test_handler_list_matches_the_template():
    from stratos_cli.local.template import load_template

    handlers = {
        r["Properties"]["Handler"].rsplit(".", 1)[0]
        for r in load_template(REPO / "template.yaml")["Resources"].values()
        if r["Type"] == "AWS::Serverless::Function"
    }
    assert handlers == set(HANDLER_MODULES)
