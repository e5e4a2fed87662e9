"""The engine's tiers stay honest: a cycle is broken by moving code down a tier, never by importing an
engine module inside a function (the import-linter `layers` contract cannot see those)."""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "engine"

# Imports kept lazy on purpose, each for a heavy import rather than a cycle.
LAZY = {
    "llm/__init__.py": "each LLM backend imports its own optional SDK (openai, anthropic) or torch",
    "server/core.py": "engine.status imports torch only once a client asks",
    "__main__.py": "start/stop/status never import the ops (and torch)",
}


def _local_engine_imports(path: Path) -> list[str]:
    found = []
    for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            module = (node.module or "") if isinstance(node, ast.ImportFrom) else ""
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [module]
            found += [f"{path.relative_to(ENGINE)}:{node.lineno} {n}" for n in names
                      if isinstance(node, (ast.Import, ast.ImportFrom)) and (n == "engine" or n.startswith("engine."))]
    return found


def test_no_engine_module_is_imported_inside_a_function() -> None:
    found = [hit for path in sorted(ENGINE.rglob("*.py")) if str(path.relative_to(ENGINE)) not in LAZY
             for hit in _local_engine_imports(path)]
    assert found == []


def test_engine_file_names_are_unique_across_tiers() -> None:
    names = [p.name for p in ENGINE.rglob("*.py") if p.name != "__init__.py"]
    assert sorted({n for n in names if names.count(n) > 1}) == []
