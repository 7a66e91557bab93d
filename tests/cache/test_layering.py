"""The cache package stays below the service: it never imports api, service, tasks, cli or
scheduling (read statically, lazy imports included), and ``import vlserve.cache`` loads no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CACHE = Path(__file__).resolve().parents[2] / "src" / "vlserve" / "cache"
FORBIDDEN = ("vlserve.api", "vlserve.service", "vlserve.tasks", "vlserve.cli", "vlserve.scheduling")


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_cache_never_imports_the_floors_above() -> None:
    files = sorted(CACHE.glob("*.py"))
    assert len(files) >= 7
    bad = {f"{path.name}: {name}" for path in files for name in imported(path)
           if name.startswith(FORBIDDEN)}
    assert not bad


def test_importing_the_cache_package_loads_no_torch() -> None:
    code = "import sys, vlserve.cache; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False"
