"""distill.inherit: exactly the neck/head tensors with the teacher's name and shape are
copied; everything else (backbone, other shapes, tensors the teacher lacks) is kept."""

import pytest
import torch

from liafkd.config import ConfigError, ModelConfig
from liafkd.distill.config import load_distill_config
from liafkd.distill.inherit import inherit_from_teacher
from liafkd.engine.runs import inherit_or_fail
from liafkd.models.gfl import GFL


def gfl(seed: int, **model) -> GFL:
    torch.manual_seed(seed)
    base = dict(depth=18, width=8, fpn_channels=16, head_channels=16, head_convs=2, reg_max=4)
    return GFL(ModelConfig(**(base | model)), 3)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_copies_exactly_the_matching_tensors():
    # thinner backbone (lateral convs differ in input width), one more head block
    student = gfl(0, width=8, head_convs=2)
    teacher = gfl(1, width=16, head_convs=1)
    before = snapshot(student)
    report = inherit_from_teacher(student, teacher)
    after, source = student.state_dict(), teacher.state_dict()

    lateral = {f"neck.fpn.inner_blocks.{i}.0.weight" for i in range(3)}
    deeper = {
        f"head.{branch}_convs.1.{part}"
        for branch in ("cls", "reg")
        for part in ("0.weight", "1.weight", "1.bias")
    }
    neck_head = {k for k in after if k.startswith(("neck.", "head."))}
    assert {name for name, _, _ in report.skipped_shape} == lateral
    assert set(report.missing) == deeper
    assert set(report.copied) == neck_head - lateral - deeper
    assert "neck.fpn.inner_blocks.0.0.bias" in report.copied  # per tensor: same shape (16,)
    assert ("neck.fpn.inner_blocks.1.0.weight", (16, 32, 1, 1), (16, 64, 1, 1)) in (
        report.skipped_shape
    )
    for name, value in after.items():
        expected = source[name] if name in report.copied else before[name]
        assert torch.equal(value, expected), name
    assert not any(k.startswith("backbone.") for k in report.copied)


def test_same_architecture_copies_neck_and_head_not_backbone():
    student, teacher = gfl(0), gfl(1)
    report = inherit_from_teacher(student, teacher)
    assert not report.skipped_shape and not report.missing
    assert len(report.copied) == sum(k.startswith(("neck.", "head.")) for k in student.state_dict())
    conv1 = "backbone.conv1.weight"
    assert not torch.equal(student.state_dict()[conv1], teacher.state_dict()[conv1])
    # copies, not shared storage: training the student leaves the teacher alone
    student.head.gfl_cls.weight.data.add_(1.0)
    assert not torch.equal(student.head.gfl_cls.weight, teacher.head.gfl_cls.weight)


def test_batchnorm_buffers_are_inherited():
    student, teacher = gfl(0, norm="bn"), gfl(1, norm="bn")
    teacher.head.cls_convs[0][1].running_mean.fill_(0.5)
    report = inherit_from_teacher(student, teacher)
    assert "head.cls_convs.0.1.running_mean" in report.copied
    assert torch.equal(student.head.cls_convs[0][1].running_mean, torch.full((16,), 0.5))


def test_summary_lists_what_was_kept(capsys):
    student, teacher = gfl(0, head_convs=2), gfl(1, width=16, head_convs=1)
    inherit_or_fail(student, teacher, "exp.yaml")
    printed = capsys.readouterr().out
    assert printed.startswith("inherit: copied ")
    total = sum(
        v.numel() for k, v in student.state_dict().items() if k.startswith(("neck", "head"))
    )
    assert f"of {total:,} values)" in printed
    assert "neck.fpn.inner_blocks.0.0.weight [16, 16, 1, 1] (teacher [16, 32, 1, 1])" in printed
    assert "not in the teacher (6)" in printed and "head.cls_convs.1.0.weight" in printed


def test_nothing_to_inherit_and_no_teacher_are_config_errors():
    student, teacher = gfl(0, fpn_channels=8, head_channels=8), gfl(1, head_convs=0)
    with pytest.raises(ConfigError, match="exp.yaml: distill.inherit: no neck or head weight"):
        inherit_or_fail(student, teacher, "exp.yaml")
    with pytest.raises(ConfigError, match="inherit: true needs a `teacher`"):
        load_distill_config({"method": "none", "inherit": True}, "exp.yaml")
    cfg = load_distill_config(
        {"method": "fgd", "inherit": True, "teacher": {"config": "t.yaml", "checkpoint": "t.pt"}},
        "exp.yaml",
    )
    assert cfg.inherit
