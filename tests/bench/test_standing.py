import json
import os

from liafkd.bench.results import read_results
from liafkd.bench.standing import DEFAULT_ROW, liaf_standing, standing_table


def test_standing_reads_the_committed_rows(fake_bench):
    """liaf - none per seed: 1.0, 1.5, 1.5 (conftest): +1.33 [+0.62, +2.05], beyond noise."""
    text = liaf_standing(fake_bench, row="liaf")
    assert text.startswith("On the ranking bench fake (no validity check)")
    assert "+1.33 [+0.62, +2.05] AP against none (above, beyond noise, p=0.015, 3 seeds)" in text
    assert "fgd" not in text  # no fgd runs: no comparison claimed


def test_standing_without_a_liaf_row_says_so(fake_bench):
    path = fake_bench / "results.jsonl"
    records = [r for r in read_results(path) if r.get("method") != "liaf"]
    bench = next(r for r in records if r["kind"] == "bench")
    bench["validity"] = ["liaf"]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    text = liaf_standing(fake_bench, row="liaf")
    assert text == (
        "The ranking bench fake (its validity check not decided yet) has no LIAF-KD row yet."
    )


def test_standing_table_pairs_each_row_with_none(fake_bench, tmp_path):
    """The fabricated default row - none per seed: 1.0, 1.5, 1.5, so +1.33 with the 95%
    t-interval 1.33 ± 4.303 * 0.289 / sqrt(3) = [+0.62, +2.05]; rows no bench ran are left
    out."""
    path = fake_bench / "results.jsonl"
    records = [
        {**r, "method": DEFAULT_ROW} if r.get("method") == "liaf" else r for r in read_results(path)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    lines = standing_table([fake_bench], tmp_path).splitlines()
    assert lines[0] == "| method | fake AP | fake ΔAP vs none |"
    assert lines[2] == "| `none` (the student alone) | 40.7 ± 0.8 |  |"
    assert (
        f"| `{DEFAULT_ROW}` (LIAF-KD, shipped default) | 42.0 ± 1.0 | +1.33 [+0.62, +2.05] |"
        in lines
    )
    assert not any(line.startswith("| `fgd` |") for line in lines)
    assert f"| `{DEFAULT_ROW}` − `fgd` |  | - |" in lines
    assert not any(line.startswith("| `liaf-coop` − ") for line in lines)
    link = os.path.relpath(fake_bench / "report.md", tmp_path)
    assert f"[fake]({link}): 3 seeds, no validity check." in lines[-1]
