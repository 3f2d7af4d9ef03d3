"""Imports point down the layers of DESIGN.md §8, never back up, and no package imports another of its own
layer: checked on every import statement of the package (function-level ones included)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "snapsearch"
# Bottom to top. A package may import its own modules and any package of a lower layer.
LAYERS = [
    {"utils"},
    {"data", "retrieval"},
    {"models"},
    {"runtime"},
    {"search"},
    {"training", "evaluation", "deploy", "catalog", "serve"},
]
LAYER_OF = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}


def _imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "snapsearch" and len(parts) > 1 and parts[1] in LAYER_OF:
                found.add(parts[1])
    return found


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert packages == set(LAYER_OF), packages ^ set(LAYER_OF)


def test_imports_point_down() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = path.relative_to(PACKAGE).parts[0]
        if own not in LAYER_OF:
            continue
        for pkg in _imported_packages(path) - {own}:
            if LAYER_OF[pkg] >= LAYER_OF[own]:
                wrong.append(f"{path.relative_to(PACKAGE)} imports snapsearch.{pkg}")
    assert not wrong, "\n".join(wrong)
