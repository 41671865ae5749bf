"""The import structure of the package: only the CLI talks to the terminal, and no module cycle.

Every import statement of every module counts, including those inside functions (lazy imports
still tie two modules together), read from the source with :mod:`ast`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TERMINAL_LIBRARIES = ("typer", "rich")


def package_modules() -> dict[str, Path]:
    """Module name -> source file, for cmh_bench and its methods subpackage (mapped from methods/)."""
    modules = {}
    for folder, package in ((REPO / "cmh_bench", "cmh_bench"), (REPO / "methods", "cmh_bench.methods")):
        for path in sorted(folder.glob("*.py")):
            modules[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return modules


def imported_names(module: str, path: Path) -> set[str]:
    """Every module name an import statement of the file names (``from a import b`` gives a and a.b)."""
    package = module if path.stem == "__init__" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            names |= {base, *(f"{base}.{alias.name}" for alias in node.names)}
    return names


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {m: {n for n in imported_names(m, p) if n in modules and n != m} for m, p in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (a list of modules, first = last), or None."""
    state: dict[str, str] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt, [*stack, nxt])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle_inside_the_package():
    assert find_cycle(import_graph()) is None


@pytest.mark.parametrize("module", sorted(package_modules()))
def test_only_the_cli_imports_typer_or_rich(module):
    names = imported_names(module, package_modules()[module])
    terminal = sorted(n for n in names if n.split(".")[0] in TERMINAL_LIBRARIES)
    assert module == "cmh_bench.cli" or not terminal, f"{module} imports {terminal}"


def test_the_walk_sees_the_cli_and_lazy_imports():
    graph = import_graph()
    assert "typer" in imported_names("cmh_bench.cli", package_modules()["cmh_bench.cli"])
    assert "cmh_bench.harness" in graph["cmh_bench.executors"]  # imported inside execute_cell
