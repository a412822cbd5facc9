"""The Distiller on real (tiny) GFL outputs: every input kind, teacher untouched."""

import torch

from liafkd.config import ModelConfig
from liafkd.distill.config import load_distill_config
from liafkd.distill.distiller import build_distiller
from liafkd.models.gfl import GFL


def test_liaf_ld_aligned_on_tiny_gfl():
    torch.manual_seed(0)
    small = dict(depth=18, head_channels=16, head_convs=1, reg_max=4)
    student = GFL(ModelConfig(width=8, fpn_channels=16, **small), 3)
    teacher = GFL(ModelConfig(width=16, fpn_channels=24, **small), 3).eval()
    images = torch.randn(2, 3, 64, 96)
    targets = [
        {
            "boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0], [50.0, 10.0, 90.0, 30.0]]),
            "labels": torch.tensor([0, 2]),
        },
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]
    raw = {
        "method": "liaf+ld",
        "teacher": {"config": "t.yaml", "checkpoint": "t.pth"},
        "liaf": {"delta_global": 1e-5, "selector": {"objective": "aligned", "lam": 0.5}},
    }
    distiller = build_distiller(load_distill_config(raw, "exp.yaml"), 16, 24, 5)
    out_s = student.forward_train(images, targets)
    with torch.no_grad():
        out_t = teacher.forward_train(images, targets)
    det_loss = sum(out_s.losses.values())
    losses = distiller(out_s, out_t, targets, images.shape[-2:], list(student.strides), det_loss)
    assert set(losses) == {
        "loss_liaf_fg",
        "loss_liaf_bg",
        "loss_liaf_att",
        "loss_liaf_global",
        "loss_liaf_entropy",
        "loss_liaf_align",
        "loss_liaf_ld",
    }
    assert all(torch.isfinite(v) for v in losses.values())
    (det_loss + sum(losses.values())).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert distiller.method.selector.score[-1].weight.grad.abs().sum() > 0
    assert any(p.grad is not None for p in student.neck.parameters())
    assert [r["image"] for r in distiller.instance_records()] == [0, 0]
    assert distiller.stats()["num_instances"] == 2
