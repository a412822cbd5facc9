"""Plain tensors that a dense detector hands to training, inference and distillation.

Locations are flattened level by level (P3 first), row-major inside a level, so
index j over `sum_l H_l * W_l` addresses the same place in every tensor below.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class HeadOutputs:
    """Raw head outputs per FPN level.

    cls_logits[l]: [B, K, H_l, W_l] classification-quality logits (sigmoid -> score).
    box_dists[l]: [B, 4 * (reg_max + 1), H_l, W_l] box-edge distribution logits
      (left, top, right, bottom), or [B, 4, H_l, W_l] for detectors without
      distributions (reg_max = 0 then means "plain distances").
    """

    cls_logits: list[Tensor]
    box_dists: list[Tensor]

    def detach(self) -> HeadOutputs:
        return HeadOutputs(
            [t.detach() for t in self.cls_logits], [t.detach() for t in self.box_dists]
        )

    def flat_cls(self) -> Tensor:
        """[B, L, K] over all locations."""
        return torch.cat([t.flatten(2).transpose(1, 2) for t in self.cls_logits], dim=1)

    def flat_box(self) -> Tensor:
        """[B, L, D] over all locations."""
        return torch.cat([t.flatten(2).transpose(1, 2) for t in self.box_dists], dim=1)


@dataclass
class AssignResult:
    """Which GT instance each location is assigned to.

    points: [L, 2] location centres (x, y) in input-image pixels.
    strides: [L] stride of each location's level.
    level_sizes: [(H_l, W_l)] per level.
    gt_index: [B, L] int64: -1 background, else the index of the instance in the
      batch-wide instance list (instances of image 0 first, then image 1, ...).
    """

    points: Tensor
    strides: Tensor
    level_sizes: list[tuple[int, int]]
    gt_index: Tensor


@dataclass
class InstanceState:
    """Per-GT-instance learning state, batch-wide instance order (see AssignResult).

    loss: [N] sum of the head's losses (quality focal + DFL + GIoU) over the
      locations assigned to the instance; 0 where none is assigned.
    quality: [N] max predicted score for the instance's class over its assigned
      locations; 0 where none is assigned.
    num_pos: [N] number of assigned locations.
    level_loss: [N, num_levels] `loss` split by the FPN level of each assigned location
      (sums over levels to `loss`).
    Always detached.
    """

    loss: Tensor
    quality: Tensor
    num_pos: Tensor
    level_loss: Tensor


@dataclass
class BranchFeats:
    """The head's per-level cls and reg branch features after its first `cut` blocks
    (kept by `forward_train(..., branch_cut=cut)` for CrossKD)."""

    cut: int
    cls_feats: list[Tensor]
    reg_feats: list[Tensor]

    def detach(self) -> BranchFeats:
        return BranchFeats(
            self.cut, [t.detach() for t in self.cls_feats], [t.detach() for t in self.reg_feats]
        )


@dataclass
class DetectorOutput:
    """What `Detector.forward_train` returns (`branches` only when asked for)."""

    losses: dict[str, Tensor]
    feats: list[Tensor]
    head: HeadOutputs
    assign: AssignResult
    instances: InstanceState
    branches: BranchFeats | None = None
