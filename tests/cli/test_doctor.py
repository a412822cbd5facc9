"""`liafkd doctor CONFIG`: the checks' table without training; exit 1 on any FAIL."""

from pathlib import Path

import pytest
import torch
import yaml

from liafkd.cli.main import main
from liafkd.config import load_config
from liafkd.engine.build import build_student

CLASSES = ["Car", "Pedestrian", "Cyclist"]  # the synthetic set's classes


@pytest.fixture
def distill_config(tmp_path, tiny_config):
    """Factory: a tiny distill config against a random teacher (sanity threshold 0)."""
    teacher_yaml = tiny_config("teacher")
    torch.manual_seed(0)
    state = build_student(load_config(teacher_yaml).model, len(CLASSES)).state_dict()

    def make(rename: tuple[str, str] | None = None, **distill) -> Path:
        weights = {k.replace(*rename): v for k, v in state.items()} if rename else state
        checkpoint = tmp_path / "teacher.pt"
        torch.save({"model": weights, "meta": {"class_names": CLASSES}}, checkpoint)
        raw = yaml.safe_load(tiny_config("student").read_text())
        raw["distill"] = {
            "method": "liaf",
            "teacher": {"config": str(teacher_yaml), "checkpoint": str(checkpoint)},
            "checks": {"min_teacher_ap50": 0.0},
            **distill,
        }
        path = tmp_path / "student.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    return make


def table(capsys) -> dict[str, str]:
    """check name -> status, from the printed table."""
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        status, _, rest = line.partition(" ")
        if status in {"PASS", "WARN", "FAIL", "SKIP"}:
            rows[rest.strip().split("  ")[0]] = status
    return rows


def test_doctor_passes_a_healthy_distill_config_without_training(distill_config, capsys):
    config = distill_config()
    assert main(["doctor", str(config)]) == 0
    rows = table(capsys)
    for name in ("data.train", "model", "teacher classes", "teacher weights", "teacher sanity"):
        assert rows[name] == "PASS"
    assert rows["term loss_liaf_fg"] == "PASS"
    assert "distiller selector" not in rows  # lam 0, the default, builds no selector
    assert rows["teacher frozen"] == "PASS"
    assert not Path(load_config(config).output_dir).exists()
    assert main(["doctor", str(config), "--set", "distill.liaf.selector.lam=0.5"]) == 0
    assert table(capsys)["distiller selector"] == "PASS"


def test_doctor_fails_with_exit_1_naming_the_broken_term_and_its_fix(distill_config, capsys):
    config = distill_config(liaf={"beta_bg": 0.0})
    assert main(["doctor", str(config)]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("FAIL  term loss_liaf_bg"))
    assert lines[row + 1].split()[:1] == ["fix:"]
    assert "distill.checks.allow_zero=[loss_liaf_bg]" in lines[row + 1]
    assert "PASS  term loss_liaf_fg" in out
    # the fix it prints works: the documented override lets the zero term through
    override = "distill.checks.allow_zero=[loss_liaf_bg]"
    assert main(["doctor", str(config), "--set", override]) == 0
    assert table(capsys)["term loss_liaf_bg"] == "PASS"


def test_doctor_reports_a_wrong_teacher_and_skips_what_needs_it(distill_config, capsys):
    assert main(["doctor", str(distill_config(rename=("neck.", "fpn.")))]) == 1
    out = capsys.readouterr().out
    assert "FAIL  teacher weights" in out and "missing keys: neck." in out
    assert "SKIP  step health" in out


def test_doctor_honours_the_threshold_override(distill_config, capsys):
    config = distill_config()
    assert main(["doctor", str(config), "--set", "distill.checks.min_teacher_ap50=0.5"]) == 1
    assert table(capsys)["teacher sanity"] == "FAIL"


def test_doctor_on_a_train_config(tiny_config, capsys):
    assert main(["doctor", str(tiny_config("plain"))]) == 0
    rows = table(capsys)
    assert rows["detection losses"] == "PASS" and "teacher sanity" not in rows


def test_doctor_fails_on_missing_data(tiny_config, tmp_path, capsys):
    raw = yaml.safe_load(tiny_config("nodata").read_text())
    raw["data"]["train"] = {"format": "yolo", "root": str(tmp_path / "absent")}
    config = tmp_path / "nodata.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["doctor", str(config)]) == 1
    assert table(capsys)["data.train"] == "FAIL"


def test_distill_exits_2_with_the_failed_check(distill_config, capsys):
    assert main(["distill", str(distill_config(liaf={"alpha_fg": 0.0}))]) == 2
    err = capsys.readouterr().err
    assert "failed before training" in err and "loss_liaf_fg" in err
    assert "  fix: give it a positive weight" in err
