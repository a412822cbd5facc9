"""One table of a bench's validity rows across its diagnosis benches.

    python benchmarks/validity_table.py [--readme README.md]

Reads the committed results of cpu-synthetic-v2 and its diagnoses (-4ep, -2ep, -small)
and prints, per bench, `none`'s AP and each validity row's ΔAP to `none` paired by seed
(mean ± std, beyond noise or not), with the bench's verdict. With --readme it rewrites
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
    load_results,
    markdown_table,
    replace_between_markers,
)
from liafkd.bench.stats import paired_delta, summarize

ROOT = Path(__file__).resolve().parent
BENCHES = {
    "cpu-synthetic-v2": "2,025 images, 8 epochs (2,032 steps)",
    "cpu-synthetic-v2-4ep": "2,025 images, 4 epochs (1,016 steps)",
    "cpu-synthetic-v2-2ep": "2,025 images, 2 epochs (508 steps)",
    "cpu-synthetic-v2-small": "192 images, 12 epochs (288 steps)",
}


def table() -> Table:
    rows_of = ["mimic", "fgd", "crosskd"]
    headers = ["bench", "student trained on", "seeds", "none AP"]
    headers += [f"Δ{m} (beyond noise?)" for m in rows_of] + ["validity"]
    rows = []
    for name, what in BENCHES.items():
        folder = ROOT / name
        if not (folder / "results.jsonl").is_file():
            continue
        results = load_results(folder)
        dataset = results.datasets()[0]
        none = results.values(dataset, BASELINE, "AP")
        row = [f"`{name}`", what, str(len(none)), fmt_summary(summarize(none.values()))]
        seeds = len(results.bench.get("seeds", [])) or 1
        verdicts = []
        for method in rows_of:
            d = paired_delta(results.values(dataset, method, "AP"), none)
            row.append("-" if d is None else f"{fmt_delta(d)} ({fmt_noise(d)}, n={d.n})")
            verdicts.append(None if d is None or d.n < seeds else bool(d.beyond_noise))
        if None in verdicts:
            row.append("pending")
        else:
            row.append("holds" if all(verdicts) else "does not hold")
        rows.append(row)
    return Table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", type=Path)
    args = parser.parse_args()
    text = markdown_table(table())
    print(text)
    if args.readme:
        source = "python benchmarks/validity_table.py --readme README.md"
        readme = args.readme.read_text()
        args.readme.write_text(replace_between_markers(readme, "v2-validity", text, source))
        print(f"{args.readme}: v2-validity section regenerated")


if __name__ == "__main__":
    main()
