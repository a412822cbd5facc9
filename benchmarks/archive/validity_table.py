"""One table of a bench's validity rows across its diagnosis benches.

    python benchmarks/archive/validity_table.py [--readme README.md]

Reads the committed results of cpu-synthetic-v2 and its diagnoses (-4ep, -2ep, -small,
-w12, -t8) and prints, per bench, `none`'s AP and each row of its `validity` list as ΔAP to `none`
paired by seed (mean ± std, beyond noise or not), with the bench's verdict
(liafkd.bench.report.validity_checks, as in each bench's report). With --readme it rewrites
the README between <!-- bench:v2-validity:start --> and <!-- bench:v2-validity:end -->.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from liafkd.bench.config import BASELINE
from liafkd.bench.report import (
    Table,
    fmt_delta,
    fmt_noise,
    fmt_summary,
    markdown_table,
    replace_between_markers,
    validity_checks,
    validity_state,
)
from liafkd.bench.results import load_results
from liafkd.bench.stats import summarize

ARCHIVE = Path(__file__).resolve().parent  # the diagnosis variants; v2 itself is live


def folder(name: str) -> Path:
    return ARCHIVE / name if (ARCHIVE / name).is_dir() else ARCHIVE.parent / name


V2_TEACHER = "R18 w16, 36 epochs"
BENCHES = {  # bench: (teacher, student and what it trained on)
    "cpu-synthetic-v2": (V2_TEACHER, "R18 w8; 2,025 images, 8 epochs (2,032 steps)"),
    "cpu-synthetic-v2-4ep": (V2_TEACHER, "R18 w8; 2,025 images, 4 epochs (1,016 steps)"),
    "cpu-synthetic-v2-2ep": (V2_TEACHER, "R18 w8; 2,025 images, 2 epochs (508 steps)"),
    "cpu-synthetic-v2-small": (V2_TEACHER, "R18 w8; 192 images, 12 epochs (288 steps)"),
    "cpu-synthetic-v2-w12": (V2_TEACHER, "R18 w12; 2,025 images, 8 epochs (2,032 steps)"),
    "cpu-synthetic-v2-t8": ("R18 w8, 36 epochs", "R18 w8; 2,025 images, 8 epochs (2,032 steps)"),
}


def table() -> Table:
    loaded = [
        (name, what, load_results(folder(name)))
        for name, what in BENCHES.items()
        if (folder(name) / "results.jsonl").is_file()
    ]
    columns = loaded[0][2].bench.get("validity", []) if loaded else []
    headers = ["bench", "teacher", "student; trained on", "seeds", "none AP"]
    headers += [f"Δ{m} [95% CI] (beyond noise?)" for m in columns] + ["validity"]
    rows = []
    for name, what, results in loaded:
        dataset = results.datasets()[0]
        none = results.values(dataset, BASELINE, "AP")
        teacher, student = what
        row = [f"`{name}`", teacher, student, str(len(none)), fmt_summary(summarize(none.values()))]
        checks = validity_checks(results, dataset)
        for _method, d, _passed in checks:
            row.append("-" if d is None else f"{fmt_delta(d)} ({fmt_noise(d)}, n={d.n})")
        row.append(validity_state(checks))
        rows.append(row)
    return Table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", type=Path)
    args = parser.parse_args()
    text = markdown_table(table())
    print(text)
    if args.readme:
        source = "python benchmarks/archive/validity_table.py --readme README.md"
        readme = args.readme.read_text()
        args.readme.write_text(replace_between_markers(readme, "v2-validity", text, source))
        print(f"{args.readme}: v2-validity section regenerated")


if __name__ == "__main__":
    main()
