import json

from liafkd.bench.results import read_results
from liafkd.bench.standing import liaf_standing


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
