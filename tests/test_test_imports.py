"""Tests share code through helper modules only: no test imports another test module or a conftest
(a conftest's names are pytest's to load; importing one runs it twice under two names)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def test_no_test_imports_a_test_module_or_a_conftest() -> None:
    bad = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                last = name.rsplit(".", 1)[-1]
                if name.startswith("tests") and (last == "conftest" or last.startswith("test_")):
                    bad.append(f"{path.relative_to(TESTS.parent)}:{node.lineno} imports {name}")
    assert not bad, "\n".join(bad)
