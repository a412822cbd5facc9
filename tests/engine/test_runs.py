"""engine.runs: what `liafkd train|distill` build, outside the CLI."""

from pathlib import Path

import torch
import yaml

import liafkd.engine.guardrails.teacher
import liafkd.engine.runs
from liafkd.config import load_config
from liafkd.engine.build import build_student, load_indices
from liafkd.engine.guardrails import collect_checks
from liafkd.engine.runs import build_distill_module


def test_a_distill_build_and_its_checks_read_the_teacher_config_once(
    tmp_path, tiny_config, monkeypatch
):
    teacher_yaml = tiny_config("teacher")
    torch.manual_seed(0)
    state = build_student(load_config(teacher_yaml).model, 3).state_dict()
    checkpoint = tmp_path / "teacher.pt"
    classes = ["Car", "Pedestrian", "Cyclist"]
    torch.save({"model": state, "meta": {"class_names": classes}}, checkpoint)
    raw = yaml.safe_load(tiny_config("student").read_text())
    raw["distill"] = {
        "method": "liaf",
        "teacher": {"config": str(teacher_yaml), "checkpoint": str(checkpoint)},
        "checks": {"min_teacher_ap50": 0.0, "step_health": False},
    }
    config = tmp_path / "student.yaml"
    config.write_text(yaml.safe_dump(raw))
    cfg = load_config(config)
    train_index, val_index = load_indices(cfg)

    reads = []

    def counting(path, *args, **kwargs):
        reads.append(Path(path).name)
        return load_config(path, *args, **kwargs)

    monkeypatch.setattr(liafkd.engine.runs, "load_config", counting)
    monkeypatch.setattr(liafkd.engine.guardrails.teacher, "load_config", counting)
    module = build_distill_module(cfg, str(config), train_index.class_names)
    checks = collect_checks(cfg, str(config), module, train_index, val_index, torch.device("cpu"))
    assert not checks.failed
    assert "sanity" in checks.teacher  # the teacher sanity check ran, on the same config
    assert reads.count("teacher.yaml") == 1


def test_doctor_calls_a_train_config_model_a_detector(tiny_config):
    from liafkd.engine.doctor import model_result
    from liafkd.engine.runs import build_train_module

    cfg = load_config(tiny_config("teacher"))
    module = build_train_module(cfg, "teacher.yaml", ["Car", "Pedestrian", "Cyclist"])
    result = model_result(module, distilling=False)
    assert "GFL detector" in result.detail and "student" not in result.detail
