"""Location points and the ATSS assigner (Zhang et al., CVPR 2020) as GFL uses it.

Convention: the point of grid cell (x, y) on a level of stride s is the cell's centre
((x + 0.5) * s, (y + 0.5) * s) in input pixels. Each point carries one square anchor of
side `anchor_scale * s` (GFL: octave_base_scale 8, one scale, one ratio), used only to
measure IoU during assignment.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou

# a location counts as inside a GT box when its point is this far (pixels) from every edge
INSIDE_MARGIN = 0.01


def make_points(
    level_sizes: list[tuple[int, int]],
    strides: list[int] | tuple[int, ...],
    device: torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """[L, 2] cell-centre points (x, y) and [L] strides, level by level, row-major."""
    points, point_strides = [], []
    for (height, width), stride in zip(level_sizes, strides, strict=True):
        ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * stride
        xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * stride
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), dim=1))
        point_strides.append(torch.full((height * width,), float(stride), device=device))
    return torch.cat(points), torch.cat(point_strides)


def square_anchors(points: Tensor, strides: Tensor, anchor_scale: float) -> Tensor:
    """[L, 4] xyxy squares of side anchor_scale * stride centred on the points."""
    half = (anchor_scale * strides / 2)[:, None]
    return torch.cat((points - half, points + half), dim=1)


def atss_assign(
    points: Tensor,
    strides: Tensor,
    level_counts: list[int],
    gt_boxes: Tensor,
    topk: int = 9,
    anchor_scale: float = 8.0,
) -> Tensor:
    """[L] int64: the index of the GT box each location is assigned to, -1 background.

    Per GT: on every level take the `topk` locations closest to the GT centre; their
    anchors' IoUs with the GT give a threshold mean + std (unbiased std, as
    mmdetection); candidates at or above it whose point lies inside the GT box are
    positive. A location positive for several GTs goes to the one of highest IoU.
    """
    num_locations = points.shape[0]
    assigned = torch.full((num_locations,), -1, dtype=torch.long, device=points.device)
    if gt_boxes.shape[0] == 0:
        return assigned
    ious = box_iou(square_anchors(points, strides, anchor_scale), gt_boxes)  # [L, G]
    gt_centres = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    distances = torch.cdist(points, gt_centres)  # [L, G]

    candidates = []
    start = 0
    for count in level_counts:
        k = min(topk, count)
        nearest = distances[start : start + count].topk(k, dim=0, largest=False).indices
        candidates.append(nearest + start)
        start += count
    candidate_idx = torch.cat(candidates)  # [C, G]

    candidate_ious = ious.gather(0, candidate_idx)
    spread = candidate_ious.std(dim=0) if candidate_idx.shape[0] > 1 else 0.0
    threshold = candidate_ious.mean(dim=0) + spread
    candidate_points = points[candidate_idx]  # [C, G, 2]
    edge_distances = torch.cat(
        (candidate_points - gt_boxes[None, :, :2], gt_boxes[None, :, 2:] - candidate_points),
        dim=2,
    )
    inside = edge_distances.min(dim=2).values > INSIDE_MARGIN
    positive = (candidate_ious >= threshold) & inside

    positive_mask = torch.zeros_like(ious, dtype=torch.bool)
    positive_mask.scatter_(0, candidate_idx, positive)
    masked_ious = ious.masked_fill(~positive_mask, -1.0)
    best_iou, best_gt = masked_ious.max(dim=1)
    return torch.where(best_iou >= 0, best_gt, assigned)
