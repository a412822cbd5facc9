import math

import pytest
import torch
from torchvision.ops import generalized_box_iou_loss

from liafkd.models.losses import distribution_focal_loss, gfl_loss, quality_focal_loss

LOG2, LOG3 = math.log(2), math.log(3)


def test_quality_focal_loss_hand_checked():
    # sigmoid(0) = 0.5, sigmoid(ln 3) = 0.75; BCE(logit 0, any target) = ln 2.
    # negative class, logit 0:    ln 2 * 0.5^2                          = 0.173287
    # negative class, logit ln 3: -ln(1 - 0.75) * 0.75^2 = ln 4 * 0.5625 = 0.779791
    # positive class, logit ln 3, quality 0.5:
    #   -(0.5 ln 0.75 + 0.5 ln 0.25) * |0.5 - 0.75|^2 = 0.836988 * 0.0625 = 0.052312
    # location 0 (positive, class 1): 0.173287 + 0.052312 = 0.225599
    # location 1 (background):        0.779791 + 0.173287 = 0.953078
    logits = torch.tensor([[0.0, LOG3], [LOG3, 0.0]])
    labels = torch.tensor([1, -1])
    quality = torch.tensor([0.5, 0.0])
    loss = quality_focal_loss(logits, labels, quality)
    assert torch.allclose(loss, torch.tensor([0.225599, 0.953078]), atol=1e-6)


def test_quality_focal_loss_zero_when_prediction_matches_quality():
    # the positive term vanishes when sigmoid equals the target quality
    loss = quality_focal_loss(torch.tensor([[0.0]]), torch.tensor([0]), torch.tensor([0.5]))
    assert loss.item() == 0.0


def test_distribution_focal_loss_hand_checked():
    # logits [0, ln 2, 0] -> probs [1/4, 1/2, 1/4]; CE to bin 0 or 2 = ln 4, to bin 1 = ln 2
    # target 0.25: 0.75 * ln 4 + 0.25 * ln 2 = 1.213008
    # target 1.5:  0.5 * ln 2 + 0.5 * ln 4   = 1.039721
    # target 1.0:  1.0 * ln 2                = 0.693147
    logits = torch.tensor([[0.0, LOG2, 0.0]]).repeat(3, 1)
    loss = distribution_focal_loss(logits, torch.tensor([0.25, 1.5, 1.0]))
    assert torch.allclose(loss, torch.tensor([1.213008, 1.039721, 0.693147]), atol=1e-6)


def test_giou_loss_sanity():
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    targets = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 4.0], [2.0, 0.0, 3.0, 1.0]])
    # identical: 0; nested (IoU 1/2, hull = union): 1/2; disjoint (IoU 0, hull 3, union 2):
    # 1 + (3 - 2) / 3 = 4/3
    loss = generalized_box_iou_loss(boxes, targets, reduction="none")
    assert torch.allclose(loss, torch.tensor([0.0, 0.5, 4 / 3]), atol=1e-6)


def test_gfl_loss_hand_checked():
    # reg_max 2, K = 1; location 0 positive, location 1 background; all logits 0.
    # box logits 0 -> uniform over bins {0,1,2} -> every side 1 -> pred [-1,-1,1,1].
    # target [-1,-1,1,3]: IoU 4/8 = 0.5 (hull = target), GIoU loss 0.5, quality 0.5.
    # QFL: positive, sigmoid 0.5 == quality 0.5 -> 0; background: ln 2 * 0.25 = 0.173287.
    # DFL: uniform CE is ln 3 whatever the targets -> 1.098612 per side, mean 1.098612.
    # score weight = sigmoid(0) = 0.5, normaliser max(0.5, 1) = 1.
    # loss_cls  = 0.173287 / 1 positive
    # loss_bbox = 2.0 * 0.5 * 0.5 / 1 = 0.5
    # loss_dfl  = 0.25 * 0.5 * ln 3 / 1 = 0.137327
    # positive location loss = 0 + 2.0 * 0.5 + 0.25 * ln 3 = 1.274653
    cls_logits = torch.zeros(2, 1, requires_grad=True)
    box_logits = torch.zeros(2, 12, requires_grad=True)
    centres = torch.zeros(2, 2)
    labels = torch.tensor([0, -1])
    target_boxes = torch.tensor([[-1.0, -1.0, 1.0, 3.0], [0.0, 0.0, 0.0, 0.0]])
    target_distances = torch.tensor([[1.0, 1.0, 1.0, 1.9], [0.0, 0.0, 0.0, 0.0]])
    losses, positive_loss = gfl_loss(
        cls_logits, box_logits, centres, labels, target_boxes, target_distances, reg_max=2
    )
    assert losses["loss_cls"].item() == pytest.approx(0.173287, abs=1e-6)
    assert losses["loss_bbox"].item() == pytest.approx(0.5, abs=1e-6)
    assert losses["loss_dfl"].item() == pytest.approx(0.25 * 0.5 * LOG3, abs=1e-6)
    assert positive_loss.tolist() == pytest.approx([1.0 + 0.25 * LOG3], abs=1e-6)
    assert not positive_loss.requires_grad
    sum(losses.values()).backward()
    assert box_logits.grad[1].abs().sum() == 0  # background locations get no box gradient


def test_gfl_loss_without_positives_is_exactly_zero_for_boxes():
    cls_logits = torch.zeros(3, 2, requires_grad=True)
    box_logits = torch.randn(3, 4 * 17, requires_grad=True)
    labels = torch.full((3,), -1)
    losses, positive_loss = gfl_loss(
        cls_logits, box_logits, torch.zeros(3, 2), labels, torch.zeros(3, 4), torch.zeros(3, 4), 16
    )
    # 6 negative entries at logit 0, each ln 2 * 0.25, divided by max(0, 1)
    assert losses["loss_cls"].item() == pytest.approx(6 * LOG2 * 0.25, abs=1e-6)
    assert losses["loss_bbox"].item() == 0.0
    assert losses["loss_dfl"].item() == 0.0
    assert positive_loss.shape == (0,)
    sum(losses.values()).backward()
    assert torch.isfinite(box_logits.grad).all()
