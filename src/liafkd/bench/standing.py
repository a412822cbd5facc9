"""Where LIAF-KD stands on the ranking benches, read from their committed results.

The row of the shipped default against `none`, `fgd`, `liaf-joint` (a learnt weighting)
and `crosskd`, paired by seed, with the bench's validity verdict: the
sentence `liafkd demo` closes with, so that the demo states what the bench measured
instead of a figure written into the code.
"""

from __future__ import annotations

from pathlib import Path

from liafkd.bench.report import fmt_delta, fmt_p, validity_checks, validity_state
from liafkd.bench.results import RESULTS_FILE, load_results
from liafkd.bench.stats import paired_delta

RANKING_BENCHES = ("cpu-synthetic-v2", "cpu-bccd-v2")
# the shipped default (uniform instance weights, frozen on cpu-synthetic-v2-tune) is
# this row of each ranking bench
DEFAULT_ROW = "liaf-uniform"
RIVALS = ("none", "fgd", "liaf-joint", "crosskd")
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
