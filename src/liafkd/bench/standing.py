"""Where LIAF-KD stands on the ranking benches, read from their committed results.

The row of the shipped default against `none`, `fgd`, `aid` and `crosskd`, paired by
seed, with the bench's validity verdict: the sentence `liafkd demo` closes with, so
that the demo states what the bench measured instead of a figure written into the code.
"""

from __future__ import annotations

import os
from pathlib import Path

from liafkd.bench.report import fmt_delta, fmt_p, validity_checks, validity_state
from liafkd.bench.results import RESULTS_FILE, BenchResults, load_results
from liafkd.bench.stats import paired_delta, summarize

# cpu-synthetic-rank and cpu-bccd-rank: the v2 benches' ranking rows on 5 paired seeds,
# each from one committed teacher
RANKING_BENCHES = ("cpu-synthetic-rank", "cpu-bccd-rank")
# the shipped default (uniform instance weights, frozen on cpu-synthetic-v2-tune) is
# this row of each ranking bench
DEFAULT_ROW = "liaf-uniform"
RIVALS = ("none", "fgd", "aid", "crosskd")
VALIDITY = {
    "pending": "its validity check not decided yet",
    "holds": "its validity check holds",
    "does not hold": "its validity check does NOT hold",
}


def find_bench(name: str) -> Path | None:
    """benchmarks/NAME under the working directory or the source checkout, if committed."""
    checkout = Path(__file__).resolve().parents[3]
    for root in (Path.cwd(), checkout):
        folder = root / "benchmarks" / name
        if (folder / RESULTS_FILE).is_file():
            return folder
    return None


def _word(mean: float, beyond_noise: bool | None) -> str:
    if beyond_noise is None:
        return "one seed"
    if not beyond_noise:
        return "within noise"
    return "above, beyond noise" if mean > 0 else "below, beyond noise"


def liaf_standing(folder: Path, row: str = DEFAULT_ROW) -> str:
    results = load_results(folder)
    dataset = results.datasets()[0]
    checks = validity_checks(results, dataset)
    validity = VALIDITY[validity_state(checks)] if checks else "no validity check"
    liaf = results.values(dataset, row, "AP")
    if not liaf:
        return f"The ranking bench {results.name} ({validity}) has no LIAF-KD row yet."
    parts = []
    for rival in RIVALS:
        d = paired_delta(liaf, results.values(dataset, rival, "AP"))
        if d is not None:
            word = _word(d.mean, d.beyond_noise)
            parts.append(f"{fmt_delta(d)} AP against {rival} ({word}, {fmt_p(d)}, {d.n} seeds)")
    return (
        f"On the ranking bench {results.name} ({validity}), LIAF-KD with this default "
        f"(`{row}`) measured, paired by seed (mean [95% confidence interval]): "
        f"{'; '.join(parts)}."
    )


# the rows of the README's table, in order; the FGD family and the prediction-level
# rivals beside LIAF-KD, then its learnt weightings
TABLE_ROWS = (
    "fgd", "aid", "crosskd", "fgd+crosskd", DEFAULT_ROW, "liaf+crosskd",
    "fgd+inherit", "liaf+inherit", "liaf-coop", "liaf-joint",
)  # fmt: skip
# LIAF-KD against the control that differs from it only in the feature term
# and the learnt selector against uniform weights
CONTROLS = (
    (DEFAULT_ROW, "fgd"),
    ("liaf+crosskd", "fgd+crosskd"),
    ("liaf+inherit", "fgd+inherit"),
    ("liaf-coop", DEFAULT_ROW),
)


def _ap_cell(values: dict[int, float | None]) -> str:
    s = summarize(values.values())
    if s is None:
        return "-"
    return f"{s.mean:.1f}" if s.std is None else f"{s.mean:.1f} ± {s.std:.1f}"


def _rows_run(benches: list[BenchResults], methods: tuple[str, ...]) -> list[str]:
    """The methods at least one bench ran; a row no bench ran would be all `-`."""
    return [
        method
        for method in methods
        if any(results.values(results.datasets()[0], method, "AP") for results in benches)
    ]


def standing_table(folders: list[Path], page_dir: Path) -> str:
    """One Markdown table over the ranking benches: per bench each row's AP (mean ± std
    over seeds) and its difference to `none` paired by seed, then LIAF-KD against its
    FGD controls; a row a bench did not run is `-`, a row none ran is left out. Links
    resolve from `page_dir`."""
    benches = [load_results(folder) for folder in folders]
    header = ["method"]
    for results in benches:
        header += [f"{results.name} AP", f"{results.name} ΔAP vs none"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]

    def row(label: str, cells: list[str]) -> None:
        lines.append("| " + " | ".join([label, *cells]) + " |")

    none_cells = []
    for results in benches:
        dataset = results.datasets()[0]
        none_cells += [_ap_cell(results.values(dataset, "none", "AP")), ""]
    row("`none` (the student alone)", none_cells)
    shown = _rows_run(benches, TABLE_ROWS)
    for method in shown:
        cells = []
        for results in benches:
            dataset = results.datasets()[0]
            values = results.values(dataset, method, "AP")
            d = paired_delta(values, results.values(dataset, "none", "AP"))
            cells += [_ap_cell(values), fmt_delta(d)]
        label = f"`{method}`" + (" (LIAF-KD, shipped default)" if method == DEFAULT_ROW else "")
        row(label, cells)
    for method, control in CONTROLS:
        if method not in shown:
            continue
        cells = []
        for results in benches:
            dataset = results.datasets()[0]
            d = paired_delta(
                results.values(dataset, method, "AP"), results.values(dataset, control, "AP")
            )
            cells += ["", fmt_delta(d)]
        row(f"`{method}` − `{control}`", cells)
    notes = []
    for folder, results in zip(folders, benches, strict=True):
        dataset = results.datasets()[0]
        checks = validity_checks(results, dataset)
        state = f"validity {validity_state(checks)}" if checks else "no validity check"
        failed = [method for method, _, passed in checks if passed is False]
        detail = f" ({', '.join(failed)} not above `none`)" if failed else ""
        link = os.path.relpath(Path(folder) / "report.md", page_dir)
        notes.append(f"[{results.name}]({link}): {results.seed_count} seeds, {state}{detail}")
    lines += [
        "",
        "AP: COCO box AP in percent on the bench's validation images, mean ± std over "
        "seeds. Δ: the difference paired by seed, mean and its 95% confidence interval. "
        + "; ".join(notes)
        + ".",
    ]
    return "\n".join(lines)
