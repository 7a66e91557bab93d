"""The import graph, read statically with ``ast``: recon3d stays a pure geometry library, no cycles.

Every ``import`` statement counts, also those inside functions (a lazy import is still a
dependency); only imports under ``if TYPE_CHECKING:`` are left out, because they never run.
``from package import name`` depends on ``package.name`` when that is a module (as grimp reads
it), else on ``package``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
FORBIDDEN_FOR_RECON3D = ("vlserve.tasks", "vlserve.runtime", "vlserve.api", "vlserve.service",
                         "vlserve.scheduling", "vlserve.cli", "vlserve.jobs")


def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name → (file, is a package) for everything under ``src/vlserve``."""
    out = {}
    for path in (SRC / "vlserve").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module → the vlserve modules it imports."""
    mods = modules()

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in mods.items():
        package = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(filter(None, (known(a.name) for a in node.names)))
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                target = f"{source}.{alias.name}" if f"{source}.{alias.name}" in mods else known(source)
                if target:
                    targets.add(target)
        graph[name] = targets - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_graph_reader_sees_imports_and_cycles() -> None:
    graph = import_graph()
    # a module-level, a lazy (in-function) and a relative-free from-import are all seen
    assert "vlserve.recon3d.spec" in graph["vlserve.recon3d.validation"]
    assert "vlserve.recon3d.compiler" in graph["vlserve.recon3d.repair"]
    assert "vlserve.recon3d.profiles" in graph["vlserve.recon3d.solids"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_recon3d_imports_nothing_above_it() -> None:
    graph = import_graph()
    offending = {
        f"{module} imports {target}"
        for module, targets in graph.items()
        if module == "vlserve.recon3d" or module.startswith("vlserve.recon3d.")
        for target in targets
        if target.startswith(FORBIDDEN_FOR_RECON3D)
    }
    assert not offending, sorted(offending)


def test_no_import_cycles_in_the_package() -> None:
    assert cycles(import_graph()) == []


def test_importing_recon3d_loads_no_upper_layer() -> None:
    # the static check above, confirmed at run time in a fresh interpreter (also a full compile)
    code = (
        "import sys, vlserve.recon3d as r\n"
        "r.compile_spec({'name': 'x', 'parts': [{'id': 'a', 'shape': 'box', 'size': {'x': 1, 'y': 1, 'z': 1}}]})\n"
        f"bad = [m for m in sys.modules if m.startswith({FORBIDDEN_FOR_RECON3D!r})]\n"
        "print(bad)\n"
    )
    pytest.importorskip("manifold3d")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
