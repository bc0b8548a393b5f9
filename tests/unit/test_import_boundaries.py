"""The import arrows between the packages: the contract imports nothing of Stratos; the training container
imports the contract, never the Lambda core; the Lambda core and handlers never import local mode, the CLI or
the container. Every import counts: module level, inside functions, and ``importlib.import_module("...")``
with a literal name."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAMBDA = REPO / "functions" / "lambda"

#: package folder -> the first-party top-level packages it must not import.
FORBIDDEN: dict[str, set[str]] = {
    "functions/lambda/stratos_contract": {"stratos", "stratos_cli", "stratos_train"},
    "training_container/stratos_train": {"stratos", "stratos_cli"},
    "functions/lambda/stratos": {"stratos_cli", "stratos_train"},
    **{
        str(handler.parent.relative_to(REPO)): {"stratos_cli", "stratos_train"}
        for handler in sorted(LAMBDA.glob("*/app.py"))
    },
}
#: The contract is pure: the standard library and pydantic only.
CONTRACT_ALLOWED = {"pydantic", "pydantic_core", "typing_extensions", "stratos_contract", "__future__"}


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (absolute imports; relative ones stay in-package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value.split(".")[0])
    return names


def test_imported_modules_sees_lazy_and_importlib_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("import os\ndef f():\n    from stratos.spec import x\n    importlib.import_module('torch.nn')\n")
    assert imported_modules(source) == {"os", "stratos", "torch"}


@pytest.mark.parametrize("folder", sorted(FORBIDDEN), ids=str)
def test_no_forbidden_import_arrow(folder: str) -> None:
    files = sorted((REPO / folder).rglob("*.py"))
    assert files, f"{folder} has no Python files"
    found = {
        f"{path.relative_to(REPO)} imports {name}"
        for path in files
        for name in imported_modules(path) & FORBIDDEN[folder]
    }
    assert not found, sorted(found)


def test_the_contract_imports_only_the_standard_library_and_pydantic() -> None:
    stdlib = set(sys.stdlib_module_names)
    for path in sorted((LAMBDA / "stratos_contract").rglob("*.py")):
        outside = imported_modules(path) - stdlib - CONTRACT_ALLOWED
        assert not outside, f"{path.relative_to(REPO)} imports {sorted(outside)}"


def test_the_training_image_copies_the_contract_and_the_container_only() -> None:
    dockerfile = (REPO / "training_container" / "Dockerfile").read_text(encoding="utf-8")
    copies = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    assert copies == [
        "training_container/requirements.txt",
        "functions/lambda/stratos_contract",
        "training_container/stratos_train",
    ]
    requirements = (REPO / "training_container" / "requirements.txt").read_text(encoding="utf-8")
    assert "powertools" not in requirements and "boto3" not in requirements
