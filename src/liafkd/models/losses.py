"""Generalized Focal Loss (Li et al., NeurIPS 2020): quality focal loss, distribution
focal loss, and their combination with GIoU as in mmdetection's GFL head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss

from liafkd.models.box_coder import aligned_box_iou, distances_to_boxes, integral


def quality_focal_loss(
    logits: Tensor, labels: Tensor, quality: Tensor, beta: float = 2.0
) -> Tensor:
    """Per-location QFL summed over classes: [N, K] logits -> [N].

    labels: [N] class of a positive location, -1 for background.
    quality: [N] soft target (IoU) of the labelled class at positives.
    Every class is pushed towards 0 with weight sigmoid^beta, except the labelled
    class of a positive, pushed towards `quality` with weight |quality - sigmoid|^beta.
    """
    probs = logits.sigmoid()
    loss = F.binary_cross_entropy_with_logits(
        logits, torch.zeros_like(logits), reduction="none"
    ) * probs.pow(beta)
    positive = torch.nonzero(labels >= 0).squeeze(1)
    pos_labels = labels[positive]
    pos_logits = logits[positive, pos_labels]
    pos_target = quality[positive]
    pos_loss = F.binary_cross_entropy_with_logits(pos_logits, pos_target, reduction="none") * (
        pos_target - probs[positive, pos_labels]
    ).abs().pow(beta)
    loss = loss.index_put((positive, pos_labels), pos_loss)
    return loss.sum(dim=1)


def distribution_focal_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """DFL: [M, n + 1] bin logits, [M] real targets in [0, n) -> [M].

    Cross-entropy to the two bins around the target, weighted by the linear
    interpolation weights, so the distribution concentrates next to the target.
    """
    left = targets.long()
    right = left + 1
    weight_left = right.to(targets.dtype) - targets
    weight_right = targets - left.to(targets.dtype)
    return (
        F.cross_entropy(logits, left, reduction="none") * weight_left
        + F.cross_entropy(logits, right, reduction="none") * weight_right
    )


@dataclass(frozen=True)
class GFLLossWeights:
    cls: float = 1.0
    bbox: float = 2.0
    dfl: float = 0.25


def gfl_loss(
    cls_logits: Tensor,
    box_logits: Tensor,
    centres: Tensor,
    labels: Tensor,
    target_boxes: Tensor,
    target_distances: Tensor,
    reg_max: int,
    weights: GFLLossWeights = GFLLossWeights(),
) -> tuple[dict[str, Tensor], Tensor]:
    """GFL losses over a flat set of locations, and each positive location's loss.

    cls_logits [N, K], box_logits [N, 4 * (reg_max + 1)], labels [N] (-1 background);
    centres [N, 2], target_boxes [N, 4] (used at positives only) and
    target_distances [N, 4] (DFL targets, used at positives) all in stride units.

    loss_cls: QFL summed, divided by the number of positives (at least 1).
    loss_bbox / loss_dfl: GIoU and DFL (mean over the 4 sides) per positive, weighted
    by its detached max class score and divided by the sum of those weights (at
    least 1). With no positives both are exactly 0 (and still in the graph).
    Returns (losses, positive_loss) where positive_loss [P] (detached, same order as
    the positives in `labels`) is cls + w_bbox * GIoU + w_dfl * DFL at each positive,
    without the score weighting or normalisation.
    """
    positive = labels >= 0
    num_pos = int(positive.sum())
    pos_logits = box_logits[positive]
    pred_boxes = distances_to_boxes(centres[positive], integral(pos_logits, reg_max))
    pos_targets = target_boxes[positive]
    quality = torch.zeros(labels.shape, dtype=cls_logits.dtype, device=cls_logits.device)
    quality[positive] = aligned_box_iou(pred_boxes.detach(), pos_targets)

    cls_per_location = quality_focal_loss(cls_logits, labels, quality)
    score_weight = cls_logits.detach().sigmoid().max(dim=1).values[positive]
    giou = generalized_box_iou_loss(pred_boxes, pos_targets, reduction="none")
    dfl = (
        distribution_focal_loss(
            pos_logits.reshape(-1, reg_max + 1), target_distances[positive].reshape(-1)
        )
        .reshape(-1, 4)
        .mean(dim=1)
    )

    box_norm = score_weight.sum().clamp(min=1.0)
    losses = {
        "loss_cls": weights.cls * cls_per_location.sum() / max(num_pos, 1),
        "loss_bbox": weights.bbox * (score_weight * giou).sum() / box_norm,
        "loss_dfl": weights.dfl * (score_weight * dfl).sum() / box_norm,
    }
    positive_loss = (
        weights.cls * cls_per_location[positive] + weights.bbox * giou + weights.dfl * dfl
    ).detach()
    return losses, positive_loss
