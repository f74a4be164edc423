"""Test modules share helpers through ``tests/support`` only, never by importing each other."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_module_imports_a_test_module() -> None:
    modules = sorted(p for p in TESTS.rglob("*.py") if "plugin_pkg" not in p.parts)
    offenders = {
        str(p.relative_to(TESTS)): sorted(
            m for m in _imported(p) if m.split(".")[-1].startswith("test_")
        )
        for p in modules
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    assert len(modules) > 40  # the walk really saw the suite
