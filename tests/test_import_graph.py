"""No import cycle among liafkd's modules and no upward import between its stage
packages, counting imports inside functions too (a function-local import hides a cycle
or an upward import from Python's start-up, not from the design)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def module_files(src: Path, package: str) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's __init__) for every module under it."""
    modules = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules[".".join(parts)] = (path, is_package)
    return modules


def imported_modules(node: ast.AST, package: str, own: set[str]) -> set[str]:
    """The modules of `own` that an import statement anywhere in `node` names; `package`
    is the package relative imports start from."""
    found: set[str] = set()
    for stmt in ast.walk(node):
        if isinstance(stmt, ast.Import):
            found.update(alias.name for alias in stmt.names)
        elif isinstance(stmt, ast.ImportFrom):
            if stmt.level:
                base = package.split(".")[: len(package.split(".")) - stmt.level + 1]
                source = ".".join(base + ([stmt.module] if stmt.module else []))
            else:
                source = stmt.module or ""
            for alias in stmt.names:  # `from pkg import submodule` imports the submodule
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in own else source)
    return found & own


def import_graph(src: Path, package: str) -> dict[str, set[str]]:
    modules = module_files(src, package)
    own = set(modules)
    graph = {}
    for name, (path, is_package) in modules.items():
        parent = name if is_package else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = imported_modules(tree, parent, own) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as e:
        return list(e.args[1])
    return None


# CONTRIBUTING.md's layout, lowest first: a stage package imports only the ones before it.
# The top-level modules (config.py, outputs.py, safe_load.py, export.py, ...) are outside
# this order.
STAGE_ORDER = ("data", "models", "evaluation", "distill", "engine", "bench", "cli")


def stage_of(module: str, package: str, stages: tuple[str, ...]) -> str | None:
    """The stage package `module` lies in (`pkg.engine.trainer` -> `engine`), or None."""
    parts = module.split(".")
    if parts[0] == package and len(parts) > 1 and parts[1] in stages:
        return parts[1]
    return None


def upward_imports(
    graph: dict[str, set[str]], package: str, stages: tuple[str, ...]
) -> list[tuple[str, str]]:
    """(importer, imported) for every import of a later stage from an earlier one."""
    rank = {stage: i for i, stage in enumerate(stages)}
    found = []
    for importer, imported_set in sorted(graph.items()):
        low = stage_of(importer, package, stages)
        for imported in sorted(imported_set):
            high = stage_of(imported, package, stages)
            if low is not None and high is not None and rank[high] > rank[low]:
                found.append((importer, imported))
    return found


def write_package(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_sees_a_cycle_through_a_function_local_relative_import(tmp_path):
    write_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/sub/__init__.py": "",
            "pkg/sub/a.py": "from pkg.sub.b import thing\n",
            "pkg/sub/b.py": "def thing():\n    from . import a\n    return a\n",
            "pkg/c.py": "import pkg.sub.a\nimport os\n",
        },
    )
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.sub.a"] == {"pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.sub.a"}
    assert graph["pkg.c"] == {"pkg.sub.a"}
    assert set(find_cycle(graph)) == {"pkg.sub.a", "pkg.sub.b"}


def test_the_checker_passes_a_graph_that_only_imports_downward(tmp_path):
    write_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/low.py": "X = 1\n",
            "pkg/mid.py": "from .low import X\n",
            "pkg/top.py": "from pkg import mid\nfrom pkg.low import X\n",
        },
    )
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.top"] == {"pkg.mid", "pkg.low"}
    assert find_cycle(graph) is None


def test_liafkd_has_no_import_cycle():
    cycle = find_cycle(import_graph(SRC, "liafkd"))
    if cycle is not None:
        pytest.fail("import cycle: " + " -> ".join(cycle))


def test_the_checker_sees_an_upward_import_between_stages(tmp_path):
    write_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/neutral.py": "from pkg.engine.run import go\n",
            "pkg/data/__init__.py": "",
            "pkg/data/read.py": "def read():\n    from ..engine import run\n    return run\n",
            "pkg/models/__init__.py": "",
            "pkg/models/net.py": "from pkg.data.read import read\nfrom pkg import neutral\n",
            "pkg/engine/__init__.py": "",
            "pkg/engine/run.py": "from pkg.models import net\ngo = 1\n",
        },
    )
    graph = import_graph(tmp_path, "pkg")
    assert upward_imports(graph, "pkg", ("data", "models", "engine")) == [
        ("pkg.data.read", "pkg.engine.run")
    ]
    assert upward_imports(graph, "pkg", ("data", "engine", "models")) == [
        ("pkg.data.read", "pkg.engine.run"),
        ("pkg.engine.run", "pkg.models.net"),
    ]


def test_liafkd_stage_packages_import_only_downward():
    upward = upward_imports(import_graph(SRC, "liafkd"), "liafkd", STAGE_ORDER)
    assert not upward, (
        "upward imports (order "
        + " < ".join(STAGE_ORDER)
        + "):\n"
        + "\n".join(f"  {importer} -> {imported}" for importer, imported in upward)
    )
