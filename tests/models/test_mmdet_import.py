"""MMDetection GFL checkpoints into our GFL: key mapping, exact round trip on a state
dict with MMDetection's names and shapes, refusals, and the import-mmdet command."""

import re

import pytest
import torch
import yaml

from liafkd.cli.main import main
from liafkd.config import ConfigError, ModelConfig
from liafkd.engine.evaluate import load_detector
from liafkd.models.gfl import GFL
from liafkd.models.mmdet_import import import_mmdet_gfl, mmdet_to_liafkd_key

R50 = dict(depth=50, width=64, fpn_channels=256, head_convs=4, head_channels=256)
TINY = dict(depth=18, width=8, fpn_channels=16, head_convs=2, head_channels=16)
INTEGRAL_KEY = "bbox_head.integral.project"  # MMDetection's Integral buffer, no weight


def mmdet_name(key: str) -> str:
    """Our GFL key -> MMDetection's, written out by hand from mmdet's module names."""
    neck = {"inner_blocks": "lateral_convs", "layer_blocks": "fpn_convs"}
    if m := re.fullmatch(r"neck\.fpn\.(inner_blocks|layer_blocks)\.(\d)\.0\.(\w+)", key):
        return f"neck.{neck[m[1]]}.{m[2]}.conv.{m[3]}"
    if m := re.fullmatch(r"neck\.fpn\.extra_blocks\.p([67])\.(\w+)", key):
        return f"neck.fpn_convs.{int(m[1]) - 3}.conv.{m[2]}"
    if m := re.fullmatch(r"head\.(cls|reg)_convs\.(\d+)\.([01])\.(\w+)", key):
        return f"bbox_head.{m[1]}_convs.{m[2]}.{'conv' if m[3] == '0' else 'gn'}.{m[4]}"
    if key.startswith("head."):
        return "bbox_head." + key.removeprefix("head.")
    return key  # the backbone keeps torchvision's ResNet names


def as_mmdet(model: GFL) -> dict[str, torch.Tensor]:
    state = {mmdet_name(k): v.clone() for k, v in model.state_dict().items()}
    state[INTEGRAL_KEY] = torch.linspace(0, model.reg_max, model.reg_max + 1)
    return state


def test_key_rules_on_hand_written_examples():
    expected = {
        "backbone.layer3.5.downsample.1.running_var": "backbone.layer3.5.downsample.1.running_var",
        "neck.lateral_convs.2.conv.weight": "neck.fpn.inner_blocks.2.0.weight",
        "neck.fpn_convs.1.conv.bias": "neck.fpn.layer_blocks.1.0.bias",
        "neck.fpn_convs.3.conv.weight": "neck.fpn.extra_blocks.p6.weight",
        "neck.fpn_convs.4.conv.bias": "neck.fpn.extra_blocks.p7.bias",
        "bbox_head.reg_convs.3.conv.weight": "head.reg_convs.3.0.weight",
        "bbox_head.cls_convs.0.gn.bias": "head.cls_convs.0.1.bias",
        "bbox_head.gfl_reg.weight": "head.gfl_reg.weight",
        "bbox_head.scales.4.scale": "head.scales.4.scale",
    }
    assert {k: mmdet_to_liafkd_key(k) for k in expected} == expected
    assert mmdet_to_liafkd_key(INTEGRAL_KEY) is None
    assert mmdet_to_liafkd_key("neck.fpn_convs.0.conv.bn.weight") is None


def test_r50_round_trip_is_exact_and_reports_the_integral_buffer():
    torch.manual_seed(0)
    source = GFL(ModelConfig(**R50), num_classes=3)
    ckpt = {"state_dict": as_mmdet(source), "meta": {"CLASSES": ("car", "person", "bike")}}
    report, class_names, num_classes = import_mmdet_gfl(ckpt, ModelConfig(**R50), "gfl.pth")
    assert (class_names, num_classes) == (["car", "person", "bike"], 3)
    assert report.unmapped_source == [INTEGRAL_KEY]
    assert report.missing_target == [] and report.filled == []
    original = source.state_dict()
    assert report.state_dict.keys() == original.keys()
    assert all(torch.equal(report.state_dict[k], v) for k, v in original.items())

    source.load_state_dict(report.state_dict, strict=True)  # our names, every key


@pytest.fixture
def tiny_mmdet() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return as_mmdet(GFL(ModelConfig(**TINY), num_classes=3))


def test_missing_batchnorm_counters_are_filled_and_listed(tiny_mmdet):
    state = {k: v for k, v in tiny_mmdet.items() if not k.endswith("num_batches_tracked")}
    report, _, _ = import_mmdet_gfl(state, ModelConfig(**TINY), "bare.pth")
    assert report.filled and all(k.endswith(".num_batches_tracked") for k in report.filled)
    assert all(report.state_dict[k] == 0 for k in report.filled)


def test_shape_mismatch_is_refused_naming_the_tensor(tiny_mmdet):
    with pytest.raises(ConfigError) as err:
        import_mmdet_gfl(tiny_mmdet, ModelConfig(**(TINY | {"width": 16})), "gfl.pth")
    assert "backbone.conv1.weight (8, 3, 7, 7) -> backbone.conv1.weight (16, 3, 7, 7)" in str(
        err.value
    )


def test_missing_weight_is_refused_with_both_sides_reported(tiny_mmdet):
    del tiny_mmdet["bbox_head.reg_convs.1.gn.weight"]
    tiny_mmdet["bbox_head.stem.weight"] = torch.zeros(1)
    with pytest.raises(ConfigError) as err:
        import_mmdet_gfl({"state_dict": tiny_mmdet}, ModelConfig(**TINY), "gfl.pth")
    text = str(err.value)
    assert "gfl.pth: the checkpoint lacks model weights" in text
    assert "head.reg_convs.1.1.weight" in text and "bbox_head.stem.weight" in text


def test_reg_max_and_non_gfl_configs_are_refused(tiny_mmdet):
    with pytest.raises(ConfigError, match="reg_max 16, the config model.reg_max 8"):
        import_mmdet_gfl(tiny_mmdet, ModelConfig(**TINY, reg_max=8), "gfl.pth")
    with pytest.raises(ConfigError, match="builds a GFL"):
        import_mmdet_gfl(tiny_mmdet, ModelConfig(type="fcos", **TINY), "gfl.pth")


def test_import_mmdet_command_writes_a_teacher_checkpoint(tmp_path, tiny_mmdet, capsys):
    ckpt = tmp_path / "gfl_mmdet.pth"
    classes = ("Car", "Pedestrian", "Cyclist")
    torch.save({"state_dict": tiny_mmdet, "meta": {"CLASSES": classes, "epoch": 12}}, ckpt)
    synth = {"format": "synthetic", "root": str(tmp_path / "synth")}
    config = tmp_path / "teacher.yaml"
    raw = {"data": {"train": synth, "val": synth | {"split": "val"}}, "model": TINY}
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "teacher.pt"
    assert main(["import-mmdet", str(ckpt), "--config", str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "unmapped source keys (1):\n  bbox_head.integral.project" in printed
    teacher = load_detector(ModelConfig(**TINY), str(out), list(classes))
    assert torch.equal(teacher.head.gfl_reg.weight, tiny_mmdet["bbox_head.gfl_reg.weight"])
    with pytest.raises(ConfigError, match="trained on classes"):
        load_detector(ModelConfig(**TINY), str(out), ["a", "b", "c"])
