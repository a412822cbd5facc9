"""Distance box coding for GFL: boxes as (left, top, right, bottom) distances from a point.

Distances are expressed in units of the level's stride for the distribution targets,
and in pixels for decoding. The box-edge distribution of one side has `reg_max + 1`
bins at the values 0, 1, ..., reg_max (stride units); its expectation is the distance.
"""

from __future__ import annotations

import torch
from torch import Tensor


def boxes_to_distances(points: Tensor, boxes: Tensor) -> Tensor:
    """[N, 2] points, [N, 4] xyxy boxes -> [N, 4] (left, top, right, bottom) distances."""
    return torch.stack(
        (
            points[:, 0] - boxes[:, 0],
            points[:, 1] - boxes[:, 1],
            boxes[:, 2] - points[:, 0],
            boxes[:, 3] - points[:, 1],
        ),
        dim=1,
    )


def distances_to_boxes(points: Tensor, distances: Tensor) -> Tensor:
    """[N, 2] points, [N, 4] (l, t, r, b) distances -> [N, 4] xyxy boxes."""
    return torch.stack(
        (
            points[:, 0] - distances[:, 0],
            points[:, 1] - distances[:, 1],
            points[:, 0] + distances[:, 2],
            points[:, 1] + distances[:, 3],
        ),
        dim=1,
    )


def encode_distance_targets(
    points: Tensor, boxes: Tensor, strides: Tensor, reg_max: int, eps: float = 0.1
) -> Tensor:
    """Distribution-focal targets: distances in stride units, clamped to [0, reg_max - eps].

    The upper clamp keeps the target strictly below the last bin so that both
    neighbouring bins exist (eps = 0.1 as mmdetection's `bbox2distance`).
    """
    distances = boxes_to_distances(points, boxes) / strides[:, None]
    return distances.clamp(min=0.0, max=reg_max - eps)


def integral(dist_logits: Tensor, reg_max: int) -> Tensor:
    """[..., 4 * (reg_max + 1)] logits -> [..., 4] expected distances (stride units)."""
    probs = dist_logits.reshape(*dist_logits.shape[:-1], 4, reg_max + 1).softmax(dim=-1)
    bins = torch.arange(reg_max + 1, dtype=probs.dtype, device=probs.device)
    return probs @ bins


def decode_boxes(points: Tensor, dist_logits: Tensor, strides: Tensor, reg_max: int) -> Tensor:
    """[N, 2] points, [N, 4 * (reg_max + 1)] logits, [N] strides -> [N, 4] xyxy pixels."""
    return distances_to_boxes(points, integral(dist_logits, reg_max) * strides[:, None])


def aligned_box_iou(boxes_a: Tensor, boxes_b: Tensor, eps: float = 1e-6) -> Tensor:
    """IoU of boxes_a[i] with boxes_b[i]: [N, 4] x [N, 4] -> [N]."""
    top_left = torch.maximum(boxes_a[:, :2], boxes_b[:, :2])
    bottom_right = torch.minimum(boxes_a[:, 2:], boxes_b[:, 2:])
    overlap = (bottom_right - top_left).clamp(min=0).prod(dim=1)
    area_a = (boxes_a[:, 2:] - boxes_a[:, :2]).clamp(min=0).prod(dim=1)
    area_b = (boxes_b[:, 2:] - boxes_b[:, :2]).clamp(min=0).prod(dim=1)
    return overlap / (area_a + area_b - overlap).clamp(min=eps)
