"""The generated tables in the README and docs/ are what their commands write today:
each `<!-- bench:NAME:start -->` block equals, byte for byte, the text `liafkd bench
report benchmarks/NAME --readme PAGE` (or `python benchmarks/results_table.py NAME
--readme PAGE`) would put there. A hand edit, or results committed without
regenerating the page, fails here; the fix is to rerun the command."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from liafkd.bench.report import readme_section
from liafkd.bench.results import load_results

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"<!-- bench:([\w.+-]+):start -->\n(.*?)\n<!-- bench:\1:end -->", re.S)


def results_table_script():
    spec = importlib.util.spec_from_file_location(
        "results_table", ROOT / "benchmarks" / "results_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def expected(name: str, page: Path) -> str:
    bench = ROOT / "benchmarks" / name
    if (bench / "results.jsonl").is_file():
        return readme_section(load_results(bench), bench, page.parent).strip()
    script = results_table_script()
    if name == "standing":
        return script.standing(page.parent).strip()
    assert name in script.TABLES, f"{page.name}: no command writes the block bench:{name}"
    return script.TABLES[name]().strip()


BLOCKS = [(page, name, body) for page in PAGES for name, body in BLOCK.findall(page.read_text())]


def test_the_pages_hold_generated_blocks():
    names = {name for _, name, _ in BLOCKS}
    assert {"standing", "cpu-synthetic-v2", "cpu-bccd-v2"} <= names


@pytest.mark.parametrize(
    ("page", "name", "body"),
    BLOCKS,
    ids=[f"{page.name}:{name}" for page, name, _ in BLOCKS],
)
def test_a_generated_block_is_what_its_command_writes(page, name, body, monkeypatch):
    monkeypatch.chdir(ROOT)  # the commands are given from the repository root
    assert body.strip() == expected(name, page), (
        f"{page.relative_to(ROOT)}: bench:{name} is not what its command writes; rerun it "
        f"(CONTRIBUTING.md, Documentation)"
    )
