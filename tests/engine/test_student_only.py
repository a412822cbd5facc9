"""The saved student holds only the student: a LIAF-KD student's final.pt has the same
keys, parameter count and FLOPs as the same student trained with `none`, and loads into
a plain `liafkd eval`."""

import json

import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from liafkd.cli.main import main
from liafkd.config import ModelConfig
from liafkd.engine.build import build_student
from liafkd.engine.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow


def output_dir(config) -> str:
    return yaml.safe_load(config.read_text())["output_dir"]


def rebuilt_student(checkpoint: dict) -> torch.nn.Module:
    meta = checkpoint["meta"]
    student = build_student(ModelConfig(**meta["model_cfg"]), len(meta["class_names"]))
    student.load_state_dict(checkpoint["model"], strict=True)
    return student.eval()


def forward_flops(student: torch.nn.Module) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        student.forward_head(student.extract_feats(torch.zeros(1, 3, 96, 160)))
    return counter.get_total_flops()


def test_liaf_student_checkpoint_equals_plain_student(tiny_distill_runs):
    liaf = load_checkpoint(f"{output_dir(tiny_distill_runs['liaf'])}/final.pt")
    plain = load_checkpoint(f"{output_dir(tiny_distill_runs['none'])}/final.pt")
    assert set(liaf) == set(plain) == {"model", "meta"}
    assert liaf["meta"]["model_cfg"] == plain["meta"]["model_cfg"]
    assert liaf["model"].keys() == plain["model"].keys()
    assert {k: v.shape for k, v in liaf["model"].items()} == {
        k: v.shape for k, v in plain["model"].items()
    }
    # the distiller's parts (adapters, selector) exist, in the training checkpoint only
    training = load_checkpoint(f"{output_dir(tiny_distill_runs['liaf'])}/checkpoints/epoch_2.pt")
    assert any("selector" in key for key in training["distiller"])
    assert not any("selector" in key or "adapter" in key for key in liaf["model"])

    liaf_student, plain_student = rebuilt_student(liaf), rebuilt_student(plain)
    count = sum(p.numel() for p in liaf_student.parameters())
    assert count == sum(p.numel() for p in plain_student.parameters())
    flops = forward_flops(liaf_student)
    assert flops > 0
    assert flops == forward_flops(plain_student)


def test_liaf_student_loads_into_plain_eval(tiny_distill_runs, tmp_path):
    raw = yaml.safe_load(tiny_distill_runs["liaf"].read_text())
    del raw["distill"]
    raw["output_dir"] = str(tmp_path / "plain_eval")
    config = tmp_path / "plain.yaml"
    config.write_text(yaml.safe_dump(raw))
    checkpoint = f"{output_dir(tiny_distill_runs['liaf'])}/final.pt"
    metrics = tmp_path / "metrics.json"

    dets = tmp_path / "dets.json"  # by default beside the checkpoint (a shared fixture's run)
    args = ["--checkpoint", checkpoint, "--json", str(metrics), "--out", str(dets)]
    assert main(["eval", str(config), *args]) == 0
    assert "AP" in json.loads(metrics.read_text())
    assert dets.is_file()
    assert not (tmp_path / "plain_eval").exists()  # the config's output_dir is left alone
