import json

import pytest
from PIL import Image

from liafkd.bench.plots import method_colors
from liafkd.bench.report import (
    comparison_table,
    cost_table,
    kind_note,
    kind_tables,
    method_table,
    replace_between_markers,
    step_ratio,
    update_readme,
    write_reports,
)
from liafkd.bench.results import append_result, load_results, read_results
from liafkd.cli.main import main
from liafkd.config import ConfigError


def _row(table, first_cell):
    row = next(r for r in table.rows if r[0] == first_cell)
    return dict(zip(table.headers, row, strict=False))


def test_method_table_hand_checked(fake_bench):
    table = method_table(load_results(fake_bench), "synth")
    none, liaf = _row(table, "none"), _row(table, "liaf")
    assert none["AP"] == "40.7 ± 0.8"  # 40.0, 40.5, 41.5
    assert liaf["AP"] == "42.0 ± 1.0"  # 41.0, 42.0, 43.0
    assert liaf["seeds"] == "3"
    # deltas 1.0, 1.5, 1.5: SE 1/6, t = 8 on 2 df (hand-checked in test_bench_stats)
    assert liaf["ΔAP [95% CI], p (beyond noise?)"] == "+1.33 [+0.62, +2.05] p=0.015 (yes)"
    assert liaf["ΔModerate [95% CI], p (beyond noise?)"] == "+1.33 [+0.62, +2.05] p=0.015 (yes)"
    assert none["ΔAP [95% CI], p (beyond noise?)"] == ""
    assert liaf["APl"] == "-"  # undefined (no large objects)
    # KITTI: mean over classes of AP|R40 (fabricated as 100 AP + 10, Easy +5, Hard -5)
    assert liaf["Moderate"] == "52.0 ± 1.0"
    assert liaf["Easy"] == "57.0 ± 1.0"
    teacher = _row(table, "teacher (reference)")
    assert teacher["AP"] == "50.0" and teacher["Hard"] == "55.0"


def test_comparison_table_pairs_by_seed(fake_bench):
    table = comparison_table(load_results(fake_bench), "synth")
    assert len(table.rows) == 1  # the pair with a method that has no runs is left out
    row = _row(table, "liaf")
    assert row["against"] == "none" and row["seeds"] == "3"
    assert row["ΔAP [95% CI], p (beyond noise?)"] == "+1.33 [+0.62, +2.05] p=0.015 (yes)"
    md = write_reports(fake_bench)["markdown"].read_text()
    assert "Paired comparisons (method - against, per seed)" in md


def test_validity_verdict_is_printed_before_the_ranking(fake_bench):
    """The published ordering the bench declares, judged on all its seeds, comes before
    the accuracy table; a row beyond noise holds, one within noise does not."""
    path = fake_bench / "results.jsonl"
    records = read_results(path)
    bench = next(r for r in records if r["kind"] == "bench")
    bench["validity"] = ["liaf"]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    md = write_reports(fake_bench)["markdown"].read_text()
    verdict = "liaf +1.33 [+0.62, +2.05] AP, p=0.015 (above). Verdict: holds."
    assert verdict in md and md.index(verdict) < md.index("Accuracy (mean ± std over seeds)")
    liaf_seed_1 = next(r for r in records if r.get("method") == "liaf" and r["seed"] == 1)
    liaf_seed_1["metrics"]["AP"] = 0.395  # delta -1.0 on seed 1: signs differ
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    md = write_reports(fake_bench)["markdown"].read_text()
    assert "(not above). Verdict: does NOT hold" in md
    records = [r for r in records if not (r.get("method") == "liaf" and r["seed"] == 2)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    md = write_reports(fake_bench)["markdown"].read_text()
    assert "liaf pending (2 of 3 seeds). Verdict: not decided yet" in md


def _liaf_ap(records, by_seed):
    for r in records:
        if r.get("method") == "liaf":
            r["metrics"]["AP"] = by_seed[r["seed"]]


def test_validity_fails_below_none_and_on_one_complete_row(fake_bench):
    """Beyond noise *below* `none` is a failure, and one row that failed on all seeds
    decides the verdict while another row still misses seeds."""
    path = fake_bench / "results.jsonl"
    records = read_results(path)
    bench = next(r for r in records if r["kind"] == "bench")
    bench["validity"] = ["liaf"]
    _liaf_ap(records, {0: 0.390, 1: 0.395, 2: 0.405})  # none 40.0, 40.5, 41.5: -1.0 each
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    md = write_reports(fake_bench)["markdown"].read_text()
    assert "liaf -1.00 [-1.00, -1.00] AP, p<0.001 (not above). Verdict: does NOT hold" in md
    bench["validity"] = ["liaf", "fgd"]  # fgd: no runs at all
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    md = write_reports(fake_bench)["markdown"].read_text()
    assert "fgd pending (0 of 3 seeds). Verdict: does NOT hold" in md


def test_ap_by_instance_kind_per_class_small_objects_and_kitti(fake_bench):
    path = fake_bench / "results.jsonl"
    records = read_results(path)
    for r in records:
        if r.get("kind") == "run":  # Car tracks AP; Pedestrian is 0.10 for none, 0.12 for liaf
            ped = 0.10 if r["method"] == "none" else 0.12
            r["metrics"]["per_class"] = {"Car": r["metrics"]["AP"], "Pedestrian": ped}
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    results = load_results(fake_bench)
    absolute, deltas = kind_tables(results, "synth")
    assert absolute.headers == [
        "method", "seeds", "APs", "AP Car", "AP Pedestrian", "Easy", "Moderate", "Hard"
    ]  # fmt: skip
    assert _row(absolute, "liaf")["AP Car"] == "42.0 ± 1.0"
    assert _row(absolute, "none")["AP Pedestrian"] == "10.0 ± 0.0"
    liaf = _row(deltas, "liaf")
    assert [r[0] for r in deltas.rows] == ["liaf"]  # no row for the baseline itself
    assert liaf["AP Car"] == "+1.3 [+0.6, +2.1] *"  # deltas 1.0, 1.5, 1.5
    assert liaf["APs"] == "+1.3 [+0.6, +2.1] *"
    assert liaf["AP Pedestrian"] == "+2.0 [+2.0, +2.0] *"
    md = write_reports(fake_bench)["markdown"].read_text()
    assert "AP by instance kind: Δ to `none` paired by seed [95% CI]" in md
    assert "COCO AP per class" in md and "stored no per-class AP" not in md


def test_ap_by_instance_kind_says_when_runs_lack_per_class_ap(fake_bench):
    results = load_results(fake_bench)  # conftest's runs store an empty per_class
    absolute, _ = kind_tables(results, "synth")
    assert "AP Car" not in absolute.headers and "APs" in absolute.headers
    assert "stored no per-class AP" in kind_note(results, "synth")


def test_notes_are_shown_first_and_a_bench_without_them_has_no_such_section(fake_bench):
    md = write_reports(fake_bench)["markdown"].read_text()
    assert "Reading this bench" not in md
    (fake_bench / "notes.md").write_text("First paragraph\nwrapped.\n\nSecond `code`.\n")
    paths = write_reports(fake_bench)
    md = paths["markdown"].read_text()
    assert "## Reading this bench\n\nFirst paragraph wrapped.\n\nSecond `code`." in md
    assert md.index("Reading this bench") < md.index("Dataset `synth`")
    assert "<p>Second <code>code</code>.</p>" in paths["html"].read_text()


def test_teacher_curve_says_what_its_last_third_added(fake_bench):
    path = fake_bench / "results.jsonl"
    records = read_results(path)
    teacher = next(r for r in records if r["kind"] == "teacher")
    teacher["epochs"] = [{"epoch": e, "AP": ap} for e, ap in ((3, 0.2), (6, 0.4), (9, 0.45))]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    md = write_reports(fake_bench)["markdown"].read_text()
    # the last third of 9 epochs starts at epoch 6: 45.0 - 40.0
    assert "Teacher validation AP by epoch: 3: 20.0, 6: 40.0, 9: 45.0." in md
    assert "Its last third of epochs (6 to 9) added +5.0 AP." in md


def test_cost_table_ratios_and_goal(fake_bench):
    cost = load_results(fake_bench).costs["synth"]
    table = cost_table(cost)
    assert [r[0] for r in table.rows] == [
        "none (student alone)",
        "floor: none + teacher forward",
        "liaf",
    ]
    liaf = _row(table, "liaf")
    assert liaf["× floor"] == "1.050"
    assert liaf["× none"] == "1.260"
    assert liaf["mem × floor"] == "1.050"
    assert liaf["KD share"] == "3.0%"
    assert liaf["goal (≤1.10× floor, share <5%)"] == "met"
    cost["variants"]["liaf"]["step_ms"] = 133.0  # 1.108x the floor
    assert _row(cost_table(cost), "liaf")["goal (≤1.10× floor, share <5%)"] == "not met"


def test_cost_ratios_show_their_spread_over_rounds(fake_bench):
    cost = load_results(fake_bench).costs["synth"]
    variants = cost["variants"]
    variants["floor"]["step_ms_rounds"] = [100.0, 200.0, 100.0]
    variants["liaf"]["step_ms_rounds"] = [105.0, 220.0, 104.0]
    variants["none"]["step_ms_rounds"] = [84.0, 168.0, 80.0]
    ratio, rounds = step_ratio(variants["liaf"], variants["floor"])
    assert ratio == pytest.approx(1.05) and rounds == pytest.approx([1.05, 1.1, 1.04])
    liaf = _row(cost_table(cost), "liaf")
    assert liaf["× floor"] == "1.050 (1.04-1.10)"  # 126 / 120, then 105/100, 220/200, 104/100
    assert liaf["× none"] == "1.260 (1.25-1.31)"  # 126 / 100, then 105/84, 220/168, 104/80
    md = write_reports(fake_bench)["markdown"].read_text()
    assert "(1.04-1.10)" not in md  # the written results have no rounds: plain ratios
    del variants["none"]["step_ms_rounds"][0]  # rounds that do not pair up are not shown
    assert _row(cost_table(cost), "liaf")["× none"] == "1.260"


def test_reports_and_plots_are_written(fake_bench):
    paths = write_reports(fake_bench)
    md = paths["markdown"].read_text()
    assert "+1.33 [+0.62, +2.05]" in md and "Cost per training step" in md
    assert "2.50 M parameters, 3.00 GFLOPs and 12.5 ms" in md
    page = paths["html"].read_text()
    assert page.startswith("<!DOCTYPE html>") and "<table>" in page
    for name in ("synth_ap.png", "synth_val_ap.png", "synth_instance_weights.png"):
        png = fake_bench / "plots" / name
        assert f"plots/{name}" in md and f'src="plots/{name}"' in page
        with Image.open(png) as image:
            assert image.format == "PNG" and image.width > 300


def test_replace_between_markers():
    text = "intro\n<!-- bench:a:start -->\nold\n<!-- bench:a:end -->\noutro\n"
    out = replace_between_markers(text, "a", "new table", "README.md")
    assert out == "intro\n<!-- bench:a:start -->\nnew table\n<!-- bench:a:end -->\noutro\n"
    assert replace_between_markers(out, "a", "new table", "README.md") == out
    with pytest.raises(ConfigError, match="README.md: marker <!-- bench:b:start --> not found"):
        replace_between_markers(text, "b", "x", "README.md")
    with pytest.raises(ConfigError, match="comes before"):
        replace_between_markers("<!-- bench:a:end --><!-- bench:a:start -->", "a", "x", "R")
    with pytest.raises(ConfigError, match="more than once"):
        replace_between_markers(text + text, "a", "x", "R")


def test_update_readme_touches_only_its_section(fake_bench, tmp_path):
    readme = tmp_path / "README.md"
    before = "# Project\n\n## Results\n"
    after = "\n## Licence\nMIT\n"
    other = "<!-- bench:other:start -->\nkeep me\n<!-- bench:other:end -->\n"
    readme.write_text(
        before + "<!-- bench:fake:start -->\nstale\n<!-- bench:fake:end -->" + after + other
    )
    assert update_readme(readme, fake_bench) == "fake"
    text = readme.read_text()
    assert text.startswith(before) and text.endswith(after + other)
    section = text.split("<!-- bench:fake:start -->")[1].split("<!-- bench:fake:end -->")[0]
    assert "stale" not in section
    assert "| liaf | 3 |" in section and "+1.33 [+0.62, +2.05]" in section
    assert "[fake_bench/report.md](fake_bench/report.md)" in section  # relative to the README
    update_readme(readme, fake_bench)
    assert readme.read_text() == text  # regenerating is idempotent


def test_cli_report_with_readme(fake_bench, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("<!-- bench:fake:start -->\n<!-- bench:fake:end -->\n")
    assert main(["bench", "report", str(fake_bench), "--readme", str(readme)]) == 0
    assert "| none | 3 |" in readme.read_text()
    assert (fake_bench / "report.html").is_file()
    readme.write_text("no markers\n")
    assert main(["bench", "report", str(fake_bench), "--readme", str(readme)]) == 2
    assert "marker <!-- bench:fake:start --> not found" in capsys.readouterr().err


def test_report_of_a_folder_without_results(tmp_path, capsys):
    assert main(["bench", "report", str(tmp_path)]) == 2
    assert "no results file" in capsys.readouterr().err


def test_torn_last_line_is_skipped_and_the_next_append_starts_a_fresh_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps({"key": "a"}) + "\n" + '{"key": "b", "met')
    assert [r["key"] for r in read_results(path)] == ["a"]
    append_result(path, {"key": "c"})
    assert [r["key"] for r in read_results(path)] == ["a", "c"]
    path.write_text('{"key": "a"}\nnot json\n{"key": "c"}\n')
    with pytest.raises(ValueError, match="results.jsonl:2: not a JSON line"):
        read_results(path)


def test_a_redone_unit_replaces_its_older_line(fake_bench):
    record = json.loads((fake_bench / "results.jsonl").read_text().splitlines()[2])
    record["metrics"]["AP"] = 0.9
    record["finished_at"] = "2026-02-01T00:00:00+00:00"
    append_result(fake_bench / "results.jsonl", record)
    results = load_results(fake_bench)
    assert results.runs["synth"][record["method"]][record["seed"]]["metrics"]["AP"] == 0.9


def test_the_report_shows_only_the_units_of_the_latest_bench_description(fake_bench):
    """Lines of an earlier version of the config (other keys) stay in the file but not
    in the report."""
    record = json.loads((fake_bench / "results.jsonl").read_text().splitlines()[0])
    record["units"] = {
        "synth": {"teacher": "teacher", "cost": "cost", "runs": ["none-0", "none-1", "liaf-0"]}
    }
    record["key"] = "bench-v2"
    record["finished_at"] = "2026-03-01T00:00:00+00:00"
    append_result(fake_bench / "results.jsonl", record)
    results = load_results(fake_bench)
    assert {m: sorted(s) for m, s in results.runs["synth"].items()} == {
        "none": [0, 1],
        "liaf": [0],
    }
    assert "synth" in results.teachers and "synth" in results.costs


@pytest.mark.parametrize("count", [3, 11, 17, 30])
def test_every_method_gets_its_own_colour_and_only_none_is_grey(count):
    methods = ["none"] + [f"m{k}" for k in range(count - 1)]
    colors = method_colors(methods)
    assert colors["none"] == "0.45"
    others = [tuple(colors[m]) for m in methods[1:]]
    assert len(set(others)) == len(others)
    assert not any(r == g == b for r, g, b, *_ in others)  # no grey besides `none`


APPEND_MANY = """
import sys
from pathlib import Path
from liafkd.bench.results import append_result
for k in range(40):
    append_result(Path(sys.argv[1]), {"key": f"{sys.argv[2]}-{k}", "pad": "x" * 5000})
"""


def test_processes_appending_at_once_lose_no_line(tmp_path):
    """Bench processes sharing one results file (--seeds, gpu_rank.sh) append under a lock;
    without it, runs of this test lost lines or left a torn one (each append reads the file)."""
    import subprocess
    import sys

    path = tmp_path / "results.jsonl"
    procs = [
        subprocess.Popen([sys.executable, "-c", APPEND_MANY, str(path), str(w)]) for w in range(6)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0] * 6
    keys = [r["key"] for r in read_results(path)]
    assert sorted(keys) == sorted(f"{w}-{k}" for w in range(6) for k in range(40))
