"""GT instance masks on an FPN level's grid, under one of two rules (`mask_rule`).

`fgd` (FGD's official code, the default): the box is scaled to the level's grid by
(feature size / padded image size) per axis; its cells run from floor(x1') to ceil(x2')
and from floor(y1') to ceil(y2'), both ends included, clipped to the grid. Each instance
weighs 1 / (h * w) on its cells, h = ceil(y2') + 1 - floor(y1') and
w = ceil(x2') + 1 - floor(x1') from those integer bounds before clipping (so a box cut
by the grid's edge sums to less than 1, as in FGD). FGD's code scales by each image's
`img_shape`; our batches share one padded shape, which is what `image_shape` gives.

`center` (the rule used before): cell (x, y) of a level with stride s covers input pixels
[x*s, (x+1)*s) x [y*s, (y+1)*s) and belongs to a box when its centre
((x + 0.5) * s, (y + 0.5) * s) lies in the half-open box [x1, x2) x [y1, y2), so two boxes
that share an edge never share a cell. Along an axis where the box's extent contains no
cell centre (thinner than a cell), it takes the cell holding its centre, so a tiny box
covers one cell and every instance reaches every level. Ranges are clipped to the grid.
Each instance's mask sums to 1: 1 / (h_il * w_il) over its h_il x w_il covered cells.

Under either rule, Gaussian masks (sigma = box side / 6, at least half a stride) replace
the box values on the same cells, divided by their sum. The foreground mask of an
image is the max over its instances; the background mask is 1 / (number of cells no
instance covers) on those cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

MaskRule = Literal["fgd", "center"]


@dataclass
class LevelMasks:
    """Masks of one level for a batch.

    instance: [N, H, W] per-instance normalised masks (batch-wide instance order).
    image_index: [N] image of each instance.
    fg: [B, H, W] FGD foreground mask: max over the image's instances of `instance`.
    bg: [B, H, W] 1 / (number of uncovered cells) on cells no instance covers, else 0.
    """

    instance: Tensor
    image_index: Tensor
    fg: Tensor
    bg: Tensor


def _axis_ranges(lo: Tensor, hi: Tensor, stride: float, size: int) -> tuple[Tensor, Tensor]:
    """Half-open cell ranges [start, end) along one axis for intervals [lo, hi)."""
    start = torch.ceil(lo / stride - 0.5).clamp(0, size).long()
    end = torch.ceil(hi / stride - 0.5).clamp(0, size).long()
    centre_cell = torch.floor((lo + hi) / (2 * stride)).clamp(0, size - 1).long()
    empty = end <= start
    start = torch.where(empty, centre_cell, start)
    end = torch.where(empty, centre_cell + 1, end)
    return start, end


def box_cell_ranges(
    boxes: Tensor, stride: float, height: int, width: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x_start, x_end, y_start, y_end), half-open, each [N] int64, never empty."""
    boxes = boxes.float()
    x0, x1 = _axis_ranges(boxes[:, 0], boxes[:, 2], stride, width)
    y0, y1 = _axis_ranges(boxes[:, 1], boxes[:, 3], stride, height)
    return x0, x1, y0, y1


def box_regions(boxes: Tensor, stride: float, height: int, width: int) -> Tensor:
    """[N, H, W] bool: the cells each box covers."""
    x0, x1, y0, y1 = box_cell_ranges(boxes, stride, height, width)
    xs = torch.arange(width, device=boxes.device)
    ys = torch.arange(height, device=boxes.device)
    in_x = (xs[None, :] >= x0[:, None]) & (xs[None, :] < x1[:, None])
    in_y = (ys[None, :] >= y0[:, None]) & (ys[None, :] < y1[:, None])
    return in_y[:, :, None] & in_x[:, None, :]


def _gaussian_values(boxes: Tensor, stride: float, height: int, width: int) -> Tensor:
    """[N, H, W] unnormalised Gaussian centred on each box, on cell centres."""
    boxes = boxes.float()
    centres_x = (torch.arange(width, device=boxes.device, dtype=torch.float32) + 0.5) * stride
    centres_y = (torch.arange(height, device=boxes.device, dtype=torch.float32) + 0.5) * stride
    box_cx = (boxes[:, 0] + boxes[:, 2]) / 2
    box_cy = (boxes[:, 1] + boxes[:, 3]) / 2
    sigma_x = ((boxes[:, 2] - boxes[:, 0]) / 6).clamp_min(stride / 2)
    sigma_y = ((boxes[:, 3] - boxes[:, 1]) / 6).clamp_min(stride / 2)
    gx = ((centres_x[None, :] - box_cx[:, None]) / sigma_x[:, None]) ** 2
    gy = ((centres_y[None, :] - box_cy[:, None]) / sigma_y[:, None]) ** 2
    return torch.exp(-0.5 * (gy[:, :, None] + gx[:, None, :]))


def fgd_cell_bounds(
    boxes: Tensor, image_shape: tuple[int, int], height: int, width: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """FGD's integer bounds (x_min, x_max, y_min, y_max), inclusive, before clipping:
    floor / ceil of the box scaled by feature size / image size."""
    boxes = boxes.float()
    scale_x = width / image_shape[1]
    scale_y = height / image_shape[0]
    x_min = torch.floor(boxes[:, 0] * scale_x).long()
    x_max = torch.ceil(boxes[:, 2] * scale_x).long()
    y_min = torch.floor(boxes[:, 1] * scale_y).long()
    y_max = torch.ceil(boxes[:, 3] * scale_y).long()
    return x_min, x_max, y_min, y_max


def fgd_regions(
    boxes: Tensor, image_shape: tuple[int, int], height: int, width: int
) -> tuple[Tensor, Tensor]:
    """([N, H, W] bool cells of each box, [N] 1 / (h * w) from the unclipped bounds)."""
    x_min, x_max, y_min, y_max = fgd_cell_bounds(boxes, image_shape, height, width)
    xs = torch.arange(width, device=boxes.device)
    ys = torch.arange(height, device=boxes.device)
    in_x = (xs[None, :] >= x_min[:, None]) & (xs[None, :] <= x_max[:, None])
    in_y = (ys[None, :] >= y_min[:, None]) & (ys[None, :] <= y_max[:, None])
    area = 1.0 / ((y_max + 1 - y_min) * (x_max + 1 - x_min)).clamp_min(1).float()
    return in_y[:, :, None] & in_x[:, None, :], area


def instance_masks(
    boxes: Tensor,
    stride: float,
    height: int,
    width: int,
    gaussian: bool = False,
    rule: MaskRule = "center",
    image_shape: tuple[int, int] | None = None,
) -> Tensor:
    """[N, H, W] float masks of each box under `rule` (`fgd` needs `image_shape`)."""
    regions, area = _regions(boxes, stride, height, width, rule, image_shape)
    return _instance_values(regions, area, boxes, stride, gaussian)


def _regions(
    boxes: Tensor,
    stride: float,
    height: int,
    width: int,
    rule: MaskRule,
    image_shape: tuple[int, int] | None,
) -> tuple[Tensor, Tensor | None]:
    """Covered cells and, for `fgd`, each box's 1 / (h * w) (None: normalise to sum 1)."""
    if rule == "center":
        return box_regions(boxes, stride, height, width), None
    if rule == "fgd":
        if image_shape is None:
            raise ValueError("mask_rule 'fgd' needs the padded image shape")
        return fgd_regions(boxes, image_shape, height, width)
    raise ValueError(f"unknown mask_rule {rule!r} (fgd | center)")


def _instance_values(
    regions: Tensor, area: Tensor | None, boxes: Tensor, stride: float, gaussian: bool
) -> Tensor:
    values = regions.float()
    if gaussian:
        values = _gaussian_values(boxes, stride, *regions.shape[1:]) * values
    elif area is not None:
        return values * area[:, None, None]
    return values / values.sum(dim=(1, 2), keepdim=True).clamp_min(1e-12)


def level_masks(
    boxes: Tensor,
    image_index: Tensor,
    batch_size: int,
    stride: float,
    height: int,
    width: int,
    gaussian: bool = False,
    rule: MaskRule = "center",
    image_shape: tuple[int, int] | None = None,
) -> LevelMasks:
    """All masks of one level. `boxes` [N, 4] and `image_index` [N] cover the batch;
    `image_shape` (H, W) of the padded batch, needed by the `fgd` rule."""
    regions, area = _regions(boxes, stride, height, width, rule, image_shape)
    inst = _instance_values(regions, area, boxes, stride, gaussian)
    covered_by = regions.float()
    fg = inst.new_zeros((batch_size, height, width))
    covered = inst.new_zeros((batch_size, height, width))
    if boxes.shape[0]:
        index = image_index[:, None, None].expand_as(inst)
        fg.scatter_reduce_(0, index, inst, "amax")
        covered.scatter_reduce_(0, index, covered_by, "amax")
    background = 1.0 - covered
    count = background.sum(dim=(1, 2), keepdim=True).clamp_min(1.0)
    return LevelMasks(instance=inst, image_index=image_index, fg=fg, bg=background / count)
