"""The installable distribution ships every package: the training image installs the project with a plain
(non-editable) ``pip install .``, which copies only the packages pyproject.toml lists."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _configured() -> tuple[list[str], dict[str, str], dict[str, list[str]]]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    return config["packages"], config["package-dir"], config["package-data"]


def test_every_python_package_is_listed() -> None:
    packages, roots, _ = _configured()
    found = set()
    for top, folder in roots.items():
        for init in (REPO / folder).rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join((top, *rel.parts)))
    assert found - set(packages) == set(), "packages missing from [tool.setuptools] packages"
    assert all(p in found or p == "stratos.data" for p in packages)


def test_package_data_matches_the_catalog_files() -> None:
    _, roots, data = _configured()
    catalogs = sorted(p.name for p in (REPO / roots["stratos"] / "data").glob("*.json"))
    assert catalogs == ["bedrock.json", "instances.json", "models.json", "spot.json"]
    assert data["stratos.data"] == ["*.json"]
    assert "py.typed" in data["stratos"]
