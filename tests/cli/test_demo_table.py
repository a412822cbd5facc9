"""The demo's closing table names its metric and split and says how to read it."""

from liafkd.cli.demo import format_rows

ROWS = [
    {"run": "teacher", "params_M": 3.2, "AP": 0.108, "AP50": 0.22, "AP75": 0.092},
    {"run": "student_none", "params_M": 0.81, "AP": 0.067, "AP50": 0.143, "AP75": 0.056},
    {"run": "student_liaf", "params_M": 0.81, "AP": 0.037, "AP50": 0.107, "AP75": None},
]


def test_table_names_metric_split_and_conclusion():
    text = format_rows(ROWS, val_images=50, epochs=8)
    flat = " ".join(text.split())
    assert "COCO box AP in percent" in flat
    assert "validation split (50 images no run trained on)" in flat
    assert "student_none   " in text and "    6.7    14.3     5.6" in text  # percent cells
    assert "student_none, student_liaf are the same small model trained for 8 epochs" in flat
    assert "shipped with liafkd" in flat
    assert "benchmarks/demo/results.json holds the same recipe over 3 seeds" in flat
    assert all(len(line) <= 88 for line in text.splitlines())
    trained = " ".join(format_rows(ROWS, 50, 8, shipped_teacher=False).split())
    assert "trained here (--train-teacher)" in trained and "shipped with" not in trained


def test_closing_says_what_was_seen_and_what_to_run_next():
    from liafkd.cli.demo import closing

    text = closing(ROWS, wall_time_s=150.0)
    assert "in 2.5 min: LIAF-KD moved its AP by -3.0 points" in text  # 3.7 - 6.7
    assert "Next, distil your own detector on your own data" in text
    assert "liafkd bench cpu-synthetic-rank" in text
    assert len([s for s in text.split(". ") if s]) == 2  # two sentences


def test_table_closes_with_the_default_and_the_ranking_bench():
    from liafkd.cli.demo import ranking_standing

    standing = ranking_standing()
    assert "LIAF-KD ran its shipped default, chosen on a tuning split: " in standing
    assert "ranking bench cpu-synthetic-rank" in standing
    assert "ranking bench cpu-bccd-rank" in standing
    text = format_rows(ROWS, val_images=50, epochs=8, standing=standing)
    assert " ".join(standing.split()) in " ".join(text.split())
    assert all(len(line) <= 88 for line in text.splitlines())
