"""Box-aware transforms on torchvision.transforms.v2.

A sample is `(image, target)`: `image` a `tv_tensors.Image` (uint8 CHW) and `target` a
dict with "boxes" (`tv_tensors.BoundingBoxes`, XYXY), "labels" (int64 [N]) and "attrs"
({name: tensor [N]}). Every step moves boxes with the image; the final sanitize drops
boxes that became degenerate together with their labels and attributes.

The transformed image size divided by the original size is the scale a prediction is
divided by to return to original pixels (`unscale_boxes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from liafkd.config import AugmentConfig


def fit_size(height: int, width: int, short: int, long: int) -> tuple[int, int]:
    """(height, width) scaled by one factor so the short side is at most `short` and
    the long side at most `long`, one of them reaching its limit."""
    scale = min(short / min(height, width), long / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


class KeepRatioResize(v2.Transform):
    """Resize to fit one (short, long) size, drawn at random when several are given."""

    def __init__(self, sizes: Sequence[tuple[int, int]]) -> None:
        super().__init__()
        if not sizes:
            raise ValueError("KeepRatioResize needs at least one (short, long) size")
        self.sizes = [(int(s), int(lg)) for s, lg in sizes]

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        pick = int(torch.randint(len(self.sizes), ())) if len(self.sizes) > 1 else 0
        return {"size": list(fit_size(height, width, *self.sizes[pick]))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.resize, inpt, size=params["size"], antialias=True)


def labels_and_attrs(sample: tuple[Any, dict[str, Any]]) -> tuple[torch.Tensor, ...]:
    """Every per-box tensor of a sample, for `SanitizeBoundingBoxes` to filter alike."""
    _, target = sample
    return (target["labels"], *target.get("attrs", {}).values())


def build_transforms(aug: AugmentConfig, train: bool) -> v2.Compose:
    """Training: multiscale (when configured) keep-ratio resize and horizontal flip;
    evaluation: resize to `aug.image_size`. Both end with float normalisation and box
    sanitizing. Call as `image, target = transforms(image, target)`."""
    sizes = list(aug.multiscale) if train and aug.multiscale else [aug.image_size]
    steps: list[v2.Transform] = [KeepRatioResize(sizes)]
    if train and aug.hflip > 0:
        steps.append(v2.RandomHorizontalFlip(p=aug.hflip))
    steps += [
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(aug.mean), std=list(aug.std)),
        v2.ClampBoundingBoxes(),
        v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=labels_and_attrs),
    ]
    return v2.Compose(steps)


def make_target(
    boxes_xyxy: torch.Tensor,
    labels: torch.Tensor,
    attrs: dict[str, torch.Tensor],
    canvas_size: tuple[int, int],
) -> dict[str, Any]:
    """The target dict the transforms expect."""
    boxes = tv_tensors.BoundingBoxes(
        boxes_xyxy.reshape(-1, 4).to(torch.float32), format="XYXY", canvas_size=canvas_size
    )
    return {"boxes": boxes, "labels": labels.to(torch.int64), "attrs": dict(attrs)}


def unscale_boxes(boxes_xyxy: torch.Tensor, scale: tuple[float, float]) -> torch.Tensor:
    """Boxes in transformed pixels back to original pixels; `scale` is (sy, sx)."""
    sy, sx = scale
    return boxes_xyxy / boxes_xyxy.new_tensor([sx, sy, sx, sy])
