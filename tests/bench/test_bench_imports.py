"""liafkd.bench's modules import one another downward only: no cycle, lazy imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import liafkd.bench

PACKAGE = "liafkd.bench"
FOLDER = Path(liafkd.bench.__file__).parent


def bench_imports(path: Path) -> set[str]:
    """The liafkd.bench modules `path` imports anywhere (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == PACKAGE:
                found |= {f"{PACKAGE}.{alias.name}" for alias in node.names}
            elif node.module.startswith(PACKAGE + "."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith(PACKAGE + ".")}
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path that ends where it starts, or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, [*path, nxt])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_bench_package_has_no_import_cycle():
    graph = {f"{PACKAGE}.{p.stem}": bench_imports(p) for p in FOLDER.glob("*.py")}
    assert graph[f"{PACKAGE}.runner"] >= {f"{PACKAGE}.report", f"{PACKAGE}.results"}
    assert find_cycle(graph) is None
