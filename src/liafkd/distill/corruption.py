"""A teacher made wrong on a known share of instances, and the oracle that knows which:
the mechanism bench (configs/bench/cpu-mechanism.yaml) where instance weighting must
matter.

`distill.teacher_corruption: {fraction: 0.3, seed: 0, strength: 1.0}` alters the
teacher's FPN features inside a fixed share of the GT boxes, between its neck and its
head, so the teacher's own predictions on those instances are made from the altered
features too (a teacher that is wrong there, as a real one is on some instances):

    altered(image_id, k) = hash(seed, image_id, k) < fraction    (k: the box's index in
                                                                  the image's target)
    F_T'[l] = (1 - strength) * F_T[l] + strength * flip_xy(F_T[l])   on the cells of the
                                                                  altered boxes

flip_xy point-mirrors the level's map (x -> W-1-x, y -> H-1-y): inside an altered box
the teacher shows what lies opposite, usually background, with the statistics of real
features (so the attention maps stay plausible). The cells of a box on level l are FGD's
(floor(x1/s) .. ceil(x2/s), at least one cell), as in masks.py.

Only two things receive the `TeacherCorruption`: the training module, which applies it
to the teacher (`corrupted_teacher`), and `OracleLIAF` (objective `oracle`), which
gives weight 0 to exactly the altered instances and 1 to every other. No field of
DistillInputs carries it and the targets are left as they are, so no other method or
selector can read which instances were altered. With `selector.oracle_skip_seed` the
oracle row becomes its own control: weight 0 on a share of the same size drawn by
another hash seed, so as much imitation is removed without choosing the altered
instances.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from liafkd.distill.base import DistillInputs
from liafkd.distill.liaf import LIAF
from liafkd.distill.masks import LevelMasks


class TeacherCorruption:
    """Which instances are altered, and the alteration of the teacher's features."""

    def __init__(self, fraction: float, seed: int = 0, strength: float = 1.0) -> None:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"teacher_corruption.fraction must be in (0, 1], got {fraction}")
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"teacher_corruption.strength must be in (0, 1], got {strength}")
        self.fraction = fraction
        self.seed = seed
        self.strength = strength

    def is_altered(self, image_id: int, index: int) -> bool:
        """Whether box `index` of image `image_id` is altered: a hash, not a draw, so the
        same instance is altered in every epoch, run and process."""
        digest = hashlib.blake2b(f"{self.seed}:{image_id}:{index}".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big") / 2.0**64 < self.fraction

    def altered(self, targets: list[dict[str, Tensor]]) -> Tensor:
        """[N] bool over the batch's instances (batch-wide order)."""
        flags = []
        for number, target in enumerate(targets):
            if "image_id" not in target:
                raise ValueError(
                    f"teacher_corruption: targets[{number}] has no image_id, which decides "
                    "which of its instances are altered"
                )
            image_id = int(target["image_id"])
            flags += [self.is_altered(image_id, k) for k in range(len(target["boxes"]))]
        return torch.tensor(flags, dtype=torch.bool)

    def apply(
        self,
        feats: list[Tensor],
        targets: list[dict[str, Tensor]],
        strides: list[int],
        altered: Tensor | None = None,
    ) -> list[Tensor]:
        """The teacher's FPN features with the cells of the altered boxes replaced."""
        altered = self.altered(targets) if altered is None else altered
        if not bool(altered.any()):
            return list(feats)
        boxes = torch.cat([t["boxes"].float().reshape(-1, 4) for t in targets])[altered]
        counts = torch.tensor([len(t["boxes"]) for t in targets])
        images = torch.repeat_interleave(torch.arange(len(targets)), counts)[altered]
        out = []
        for feat, stride in zip(feats, strides, strict=True):
            region = box_cells(boxes, images, feat.shape[0], stride, feat.shape[-2:])
            region = region.to(feat.device)[:, None]
            mirrored = torch.flip(feat, dims=(-2, -1))
            mixed = (1 - self.strength) * feat + self.strength * mirrored
            out.append(torch.where(region, mixed, feat))
        return out


def box_cells(
    boxes: Tensor, images: Tensor, batch_size: int, stride: int, size: tuple[int, int]
) -> Tensor:
    """[B, H, W] bool: the cells of a level covered by any of `boxes` (FGD's rule: from
    floor(x1 / s) to ceil(x2 / s), both in, at least one cell; clipped to the map)."""
    height, width = int(size[0]), int(size[1])
    region = torch.zeros(batch_size, height, width, dtype=torch.bool)
    for box, image in zip(boxes.tolist(), images.tolist(), strict=True):
        x0 = min(max(math.floor(box[0] / stride), 0), width - 1)
        y0 = min(max(math.floor(box[1] / stride), 0), height - 1)
        x1 = min(max(math.ceil(box[2] / stride), x0), width - 1)
        y1 = min(max(math.ceil(box[3] / stride), y0), height - 1)
        region[image, y0 : y1 + 1, x0 : x1 + 1] = True
    return region


@contextmanager
def corrupted_teacher(
    teacher: nn.Module, corruption: TeacherCorruption | None, targets: list[dict[str, Tensor]]
) -> Iterator[None]:
    """Within the block, the teacher's neck output is altered by `corruption` (nothing
    when None): its head and every method then see the altered features."""
    if corruption is None:
        yield
        return
    neck = getattr(teacher, "neck", None)
    if neck is None or not hasattr(teacher, "strides"):
        raise ValueError(
            f"teacher_corruption needs a teacher with an FPN `neck` and `strides`; "
            f"{type(teacher).__name__} has none"
        )
    altered = corruption.altered(targets)
    strides = list(teacher.strides)

    def alter(module: nn.Module, args: tuple, output: list[Tensor]) -> list[Tensor]:
        return corruption.apply(output, targets, strides, altered)

    handle = neck.register_forward_hook(alter)
    try:
        yield
    finally:
        handle.remove()


class OracleLIAF(LIAF):
    """LIAF-KD with the oracle's weights (selector objective `oracle`): 0 on exactly the
    instances the teacher corruption altered, 1 on every other; no selector. Only a
    mechanism bench can have it: it reads what no real run knows."""

    def __init__(self, channels: int, num_levels: int, corruption: TeacherCorruption, **liaf):
        super().__init__(channels, num_levels, **(liaf | {"lam": 0.0, "objective": "joint"}))
        self.objective = "oracle"
        self.corruption = corruption
        self.selector = None
        self.needs = frozenset({"feats"})

    def _select(
        self, inputs: DistillInputs, masks: list[LevelMasks], per_instance: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        altered = self.corruption.altered(inputs.targets).to(per_instance.device)
        weights = (~altered).to(per_instance.dtype)
        self.weight_log.record(inputs, weights, {"altered": altered.float()})
        return weights, {}
