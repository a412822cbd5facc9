"""Every AP liafkd prints is in percent (the files keep pycocotools' fractions)."""

from liafkd.engine.guardrails.summary import side_by_side
from liafkd.engine.guardrails.teacher import sanity_result
from liafkd.engine.trainer import _print_epoch


def test_epoch_line_prints_percent(capsys):
    _print_epoch({"epoch": 3, "loss": 1.5, "img_s": 12.0, "val": {"AP": 0.0674, "AP50": 0.143}})
    assert "val AP 6.74 AP50 14.30" in capsys.readouterr().out


def test_teacher_lines_print_percent():
    line = side_by_side({"AP": 0.0674, "AP50": 0.143}, {"run": {"final": {"AP": 0.108}}})
    assert "student AP 6.7 AP50 14.3" in line
    assert "teacher (its own run) AP 10.8 AP50 -" in line
    passed = sanity_result(0.42, 12, 30, 80, 0.01, "")
    assert "teacher AP50 42.00 (percent)" in passed.detail and ">= 1.00" in passed.detail
