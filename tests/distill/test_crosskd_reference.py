"""Where CrossKD here departs from the reference code on purpose (crosskd.py's docstring):
the qfl normaliser on a batch with an image that has no positive location."""

import pytest
import torch

from liafkd.config import ModelConfig
from liafkd.distill.base import HeadPair
from liafkd.distill.config import load_distill_config
from liafkd.distill.crosskd import kd_quality_focal_loss
from liafkd.distill.distiller import build_distiller
from liafkd.models.gfl import GFL

IMAGES_SHAPE = (64, 96)
SMALL = dict(depth=18, reg_max=4, head_convs=2)


def test_qfl_divides_by_the_batch_positives_not_one_per_empty_image():
    torch.manual_seed(0)
    student = GFL(ModelConfig(width=8, fpn_channels=16, head_channels=8, **SMALL), 3)
    teacher = GFL(ModelConfig(width=8, fpn_channels=16, head_channels=8, **SMALL), 3).eval()
    raw = {"method": "crosskd", "teacher": {"config": "t.yaml", "checkpoint": "t.pth"}}
    cfg = load_distill_config(raw, "exp.yaml")
    heads = HeadPair(student.head, teacher.head)
    distiller = build_distiller(cfg, 16, 16, 5, heads=heads)
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0]]), "labels": torch.tensor([0])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # P = 0
    ]
    images = torch.randn(2, 3, *IMAGES_SHAPE, generator=torch.Generator().manual_seed(1))
    cut = distiller.branch_cut
    out_s = student.forward_train(images, targets, branch_cut=cut)
    with torch.no_grad():
        out_t = teacher.forward_train(images, targets, branch_cut=cut)
    inputs = distiller.build_inputs(out_s, out_t, targets, IMAGES_SHAPE, list(student.strides))
    per_image_pos = (out_s.assign.gt_index >= 0).sum(dim=1).tolist()
    assert per_image_pos[0] > 0 and per_image_pos[1] == 0
    qfl_sum = kd_quality_focal_loss(
        distiller.method.cross_head(inputs).flat_cls(), out_t.head.flat_cls(), 1.0
    ).sum()
    loss = distiller.method.prediction_losses(inputs)["loss_crosskd_qfl"].item()
    ours = qfl_sum.item() / per_image_pos[0]
    reference = qfl_sum.item() / sum(max(p, 1) for p in per_image_pos)
    assert loss == pytest.approx(ours, rel=1e-5)
    assert loss != pytest.approx(reference, rel=1e-5)
    assert reference / loss == pytest.approx(per_image_pos[0] / (per_image_pos[0] + 1))
