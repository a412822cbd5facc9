"""Fake DistillInputs: 2 levels (strides 8, 16), hand-placed boxes, random features."""

from __future__ import annotations

import math

import pytest
import torch

from liafkd.distill.base import DistillInputs
from liafkd.models.outputs import AssignResult, HeadOutputs, InstanceState

DEFAULT_BOXES = [
    [[0.0, 0.0, 16.0, 16.0], [20.0, 4.0, 44.0, 28.0]],  # image 0
    [[8.0, 8.0, 40.0, 24.0]],  # image 1
]


def _assign(boxes_per_image, level_sizes, strides, batch):
    """Each instance gets the level-0 location holding its box centre."""
    points, point_strides = [], []
    for (h, w), s in zip(level_sizes, strides, strict=True):
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        points.append(torch.stack([(xs.flatten() + 0.5) * s, (ys.flatten() + 0.5) * s], dim=1))
        point_strides.append(torch.full((h * w,), s))
    total = sum(h * w for h, w in level_sizes)
    gt_index = torch.full((batch, total), -1, dtype=torch.int64)
    w0 = level_sizes[0][1]
    n = 0
    for b, boxes in enumerate(boxes_per_image):
        for box in boxes:
            cx = int((box[0] + box[2]) / 2 // strides[0])
            cy = int((box[1] + box[3]) / 2 // strides[0])
            gt_index[b, cy * w0 + cx] = n
            n += 1
    return AssignResult(
        points=torch.cat(points).float(),
        strides=torch.cat(point_strides),
        level_sizes=list(level_sizes),
        gt_index=gt_index,
    )


def fake_inputs(
    boxes_per_image=None,
    channels: int = 4,
    strides=(8, 16),
    images_shape=(32, 48),
    seed: int = 0,
    reg_max: int = 3,
    num_classes: int = 2,
    teacher_loss=None,
) -> DistillInputs:
    boxes_per_image = DEFAULT_BOXES if boxes_per_image is None else boxes_per_image
    gen = torch.Generator().manual_seed(seed)
    batch = len(boxes_per_image)
    level_sizes = [
        (math.ceil(images_shape[0] / s), math.ceil(images_shape[1] / s)) for s in strides
    ]
    teacher_feats = [torch.randn(batch, channels, h, w, generator=gen) for h, w in level_sizes]
    student_feats = [
        torch.randn(batch, channels, h, w, generator=gen).requires_grad_() for h, w in level_sizes
    ]
    targets = [
        {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.arange(len(boxes), dtype=torch.int64) % num_classes,
        }
        for boxes in boxes_per_image
    ]
    n = sum(len(b) for b in boxes_per_image)
    dims = 4 * (reg_max + 1)

    def head(requires_grad: bool) -> HeadOutputs:
        cls = [torch.randn(batch, num_classes, h, w, generator=gen) for h, w in level_sizes]
        box = [torch.randn(batch, dims, h, w, generator=gen) for h, w in level_sizes]
        return HeadOutputs(
            [t.requires_grad_(requires_grad) for t in cls],
            [t.requires_grad_(requires_grad) for t in box],
        )

    if teacher_loss is None:
        teacher_loss = torch.rand(n, generator=gen) * 2

    def state(loss) -> InstanceState:
        """Each instance's loss on level 0, where its one assigned location is."""
        loss = torch.as_tensor(loss, dtype=torch.float32)
        level_loss = torch.zeros(n, len(strides))
        level_loss[:, 0] = loss
        return InstanceState(
            loss=loss,
            quality=torch.rand(n, generator=gen),
            num_pos=torch.ones(n, dtype=torch.int64),
            level_loss=level_loss,
        )

    return DistillInputs(
        images_shape=tuple(images_shape),
        targets=targets,
        teacher_feats=teacher_feats,
        student_feats=student_feats,
        strides=list(strides),
        teacher_head=head(False),
        student_head=head(True),
        student_assign=_assign(boxes_per_image, level_sizes, strides, batch),
        teacher_instances=state(teacher_loss),
        student_instances=state(torch.rand(n, generator=gen) * 3),
    )


@pytest.fixture
def make_inputs():
    return fake_inputs
