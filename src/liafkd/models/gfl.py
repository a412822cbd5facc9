"""GFL v1 detector: ResNet + FPN (P3-P7) + GFL head, ATSS assignment, QFL/DFL/GIoU.

Targets are a list (one per image) of dicts {"boxes": float [N, 4] xyxy input pixels,
"labels": int64 [N] in [0, num_classes)}; other keys are ignored. Instances are
indexed batch-wide: image 0's instances first, then image 1's, ...
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms

from liafkd.config import ModelConfig
from liafkd.models.assigner import atss_assign, make_points
from liafkd.models.backbone import PretrainedReport, ResNetBackbone
from liafkd.models.box_coder import decode_boxes, encode_distance_targets
from liafkd.models.gfl_head import GFLHead
from liafkd.models.losses import gfl_loss
from liafkd.models.neck import FPN
from liafkd.models.outputs import (
    AssignResult,
    BranchFeats,
    DetectorOutput,
    HeadOutputs,
    InstanceState,
)

GFL_STRIDES = (8, 16, 32, 64, 128)
ANCHOR_SCALE = 8.0  # GFL: octave_base_scale 8, scales_per_octave 1
PRE_NMS_TOPK = 1000  # candidates kept per level before NMS

Target = dict[str, Tensor]


class GFL(nn.Module):
    """Generalized Focal Loss detector (v1)."""

    def __init__(self, cfg: ModelConfig, num_classes: int) -> None:
        super().__init__()
        if cfg.type != "gfl":
            raise ValueError(f"model.type: GFL cannot build {cfg.type!r}")
        if tuple(cfg.strides) != GFL_STRIDES:
            raise ValueError(f"model.strides: a ResNet+FPN P3-P7 GFL has {GFL_STRIDES}")
        if cfg.num_classes is not None and cfg.num_classes != num_classes:
            raise ValueError(
                f"model.num_classes is {cfg.num_classes} but the dataset has {num_classes}"
            )
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.cfg = cfg
        self.num_classes = num_classes
        self.strides = GFL_STRIDES
        self.reg_max = cfg.reg_max
        self.backbone = ResNetBackbone(cfg.depth, cfg.width, cfg.frozen_stages, cfg.norm_eval)
        self.pretrained_report: PretrainedReport | None = None
        if cfg.pretrained:
            self.pretrained_report = self.backbone.load_pretrained(cfg.pretrained)
        self.neck = FPN(self.backbone.out_channels, cfg.fpn_channels)
        self.head = GFLHead(
            num_classes,
            cfg.fpn_channels,
            cfg.head_channels,
            cfg.head_convs,
            cfg.reg_max,
            num_levels=len(GFL_STRIDES),
            norm=cfg.norm,
        )

    # --- features and head -------------------------------------------------------

    def extract_feats(self, images: Tensor) -> list[Tensor]:
        """[B, 3, H, W] normalised images -> FPN features [P3, ..., P7]."""
        return self.neck(self.backbone(images))

    def forward_head(self, feats: list[Tensor]) -> HeadOutputs:
        return self.head(feats)

    # --- assignment and losses ---------------------------------------------------

    def points(
        self, level_sizes: list[tuple[int, int]], device: torch.device
    ) -> tuple[Tensor, Tensor]:
        """[L, 2] location centres ((x + 0.5) * stride, (y + 0.5) * stride) and [L] strides."""
        return make_points(level_sizes, self.strides, device)

    @torch.no_grad()
    def compute_assign(
        self, head: HeadOutputs, image_shape: Sequence[int], targets: list[Target]
    ) -> AssignResult:
        """ATSS assignment for every image. image_shape: (H, W) of the (padded) batch."""
        level_sizes = [(t.shape[-2], t.shape[-1]) for t in head.cls_logits]
        self._check_level_sizes(level_sizes, image_shape)
        device = head.cls_logits[0].device
        batch_size = head.cls_logits[0].shape[0]
        _check_targets(targets, batch_size, self.num_classes)
        points, strides = self.points(level_sizes, device)
        level_counts = [h * w for h, w in level_sizes]
        gt_index = []
        offset = 0
        for target in targets:
            boxes = target["boxes"].to(device=device, dtype=torch.float32)
            assigned = atss_assign(
                points, strides, level_counts, boxes, self.cfg.atss_topk, ANCHOR_SCALE
            )
            gt_index.append(torch.where(assigned >= 0, assigned + offset, assigned))
            offset += boxes.shape[0]
        return AssignResult(points, strides, level_sizes, torch.stack(gt_index))

    def _check_level_sizes(
        self, level_sizes: list[tuple[int, int]], image_shape: Sequence[int]
    ) -> None:
        """Head outputs must come from an image of `image_shape` (every level ceil(H/s))."""
        height, width = image_shape[-2:]
        expected = [(math.ceil(height / s), math.ceil(width / s)) for s in self.strides]
        if level_sizes != expected:
            raise ValueError(
                f"head level sizes {level_sizes} do not fit a {height}x{width} image "
                f"(expected {expected})"
            )

    def loss(
        self, head: HeadOutputs, assign: AssignResult, targets: list[Target]
    ) -> tuple[dict[str, Tensor], InstanceState]:
        """GFL losses (loss_cls, loss_bbox, loss_dfl) and each GT instance's state."""
        device = head.cls_logits[0].device
        batch_size = head.cls_logits[0].shape[0]
        gt_boxes = torch.cat([t["boxes"] for t in targets]).to(device=device, dtype=torch.float32)
        gt_labels = torch.cat([t["labels"] for t in targets]).to(device=device, dtype=torch.long)
        cls_logits = head.flat_cls().reshape(-1, self.num_classes).float()
        box_logits = head.flat_box().reshape(-1, 4 * (self.reg_max + 1)).float()
        gt_index = assign.gt_index.reshape(-1)
        points = assign.points.repeat(batch_size, 1)
        strides = assign.strides.repeat(batch_size)

        positive = gt_index >= 0
        pos_gt = gt_index[positive]
        labels = torch.full_like(gt_index, -1)
        labels[positive] = gt_labels[pos_gt]
        target_boxes = torch.zeros_like(box_logits[:, :4])
        target_boxes[positive] = gt_boxes[pos_gt]
        target_distances = encode_distance_targets(points, target_boxes, strides, self.reg_max)
        losses, positive_loss = gfl_loss(
            cls_logits,
            box_logits,
            points / strides[:, None],
            labels,
            target_boxes / strides[:, None],
            target_distances,
            self.reg_max,
        )
        pos_scores = cls_logits.detach()[positive, labels[positive]].sigmoid()
        levels = location_levels(assign.level_sizes, device).repeat(batch_size)
        instances = _instance_state(
            gt_boxes.shape[0],
            pos_gt,
            positive_loss,
            pos_scores,
            levels[positive],
            len(assign.level_sizes),
        )
        return losses, instances

    def forward_train(
        self, images: Tensor, targets: list[Target], branch_cut: int | None = None
    ) -> DetectorOutput:
        """Losses and what distillation reads. branch_cut=k also keeps the head's branch
        features after its first k blocks (the head runs once, split at k; same outputs)."""
        feats = self.extract_feats(images)
        branches = None
        if branch_cut is None:
            head = self.forward_head(feats)
        else:
            branches = BranchFeats(branch_cut, *self.head.branch_feats(feats, branch_cut))
            head = self.head.forward_from(branches.cls_feats, branches.reg_feats, branch_cut)
        assign = self.compute_assign(head, images.shape[-2:], targets)
        losses, instances = self.loss(head, assign, targets)
        return DetectorOutput(losses, feats, head, assign, instances, branches)

    # --- inference ---------------------------------------------------------------

    @torch.no_grad()
    def predict(
        self, inputs: Tensor | HeadOutputs, image_sizes: Sequence[Sequence[int]] | None = None
    ) -> list[dict[str, Tensor]]:
        """Detections per image: boxes [n, 4] xyxy input pixels (clipped), scores, labels.

        inputs: a batch of images, or head outputs already computed for one.
        image_sizes: (h, w) of each image's valid region (before padding); defaults to
          the batch tensor's size, required for HeadOutputs.
        """
        head, image_sizes = head_and_sizes(self, inputs, image_sizes)
        level_sizes = [(t.shape[-2], t.shape[-1]) for t in head.cls_logits]
        level_points = [
            make_points([size], [stride], head.cls_logits[0].device)
            for size, stride in zip(level_sizes, self.strides, strict=True)
        ]
        return [
            self._predict_image(head, level_points, index, image_size)
            for index, image_size in enumerate(image_sizes)
        ]

    def _predict_image(
        self,
        head: HeadOutputs,
        level_points: list[tuple[Tensor, Tensor]],
        index: int,
        image_size: Sequence[int],
    ) -> dict[str, Tensor]:
        boxes, scores, labels = [], [], []
        for cls_map, box_map, (points, strides) in zip(
            head.cls_logits, head.box_dists, level_points, strict=True
        ):
            level_scores = cls_map[index].float().sigmoid().flatten(1).T  # [HW, K]
            flat_scores = level_scores.reshape(-1)
            candidates = torch.nonzero(flat_scores > self.cfg.score_thr).squeeze(1)
            if candidates.numel() > PRE_NMS_TOPK:
                top = flat_scores[candidates].topk(PRE_NMS_TOPK).indices
                candidates = candidates[top]
            locations = candidates // self.num_classes
            box_logits = box_map[index].float().flatten(1).T[locations]
            boxes.append(
                decode_boxes(points[locations], box_logits, strides[locations], self.reg_max)
            )
            scores.append(flat_scores[candidates])
            labels.append(candidates % self.num_classes)
        boxes_all = torch.cat(boxes)
        height, width = image_size
        boxes_all[:, 0::2] = boxes_all[:, 0::2].clamp(0, width)
        boxes_all[:, 1::2] = boxes_all[:, 1::2].clamp(0, height)
        scores_all, labels_all = torch.cat(scores), torch.cat(labels)
        keep = batched_nms(boxes_all, scores_all, labels_all, self.cfg.nms_iou)
        keep = keep[: self.cfg.max_dets]
        return {"boxes": boxes_all[keep], "scores": scores_all[keep], "labels": labels_all[keep]}

    def forward(
        self, images: Tensor, targets: list[Target] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Training mode: the loss dict (targets required). Eval mode: detections."""
        if self.training:
            if targets is None:
                raise ValueError("GFL in training mode needs targets (call .eval() to predict)")
            return self.forward_train(images, targets).losses
        return self.predict(images)


def _check_targets(targets: list[Target], batch_size: int, num_classes: int) -> None:
    if len(targets) != batch_size:
        raise ValueError(f"{len(targets)} targets for a batch of {batch_size} images")
    for i, target in enumerate(targets):
        boxes, labels = target.get("boxes"), target.get("labels")
        if boxes is None or labels is None:
            raise ValueError(f"targets[{i}] needs 'boxes' and 'labels'")
        if boxes.ndim != 2 or boxes.shape[1] != 4 or labels.shape != (boxes.shape[0],):
            raise ValueError(
                f"targets[{i}]: boxes must be [N, 4] and labels [N], got "
                f"{tuple(boxes.shape)} and {tuple(labels.shape)}"
            )
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"targets[{i}]: labels must be in [0, {num_classes}), got values "
                f"{int(labels.min())}..{int(labels.max())}"
            )


def _instance_state(
    num_instances: int,
    pos_gt: Tensor,
    positive_loss: Tensor,
    pos_scores: Tensor,
    pos_level: Tensor,
    num_levels: int,
) -> InstanceState:
    """Per-instance state from the positives' instance, loss, score and FPN level."""
    device = positive_loss.device
    level_loss = torch.zeros(num_instances, num_levels, device=device)
    level_loss.index_put_((pos_gt, pos_level), positive_loss.float(), accumulate=True)
    quality = torch.zeros(num_instances, device=device).scatter_reduce_(
        0, pos_gt, pos_scores, reduce="amax"
    )
    num_pos = torch.bincount(pos_gt, minlength=num_instances)
    return InstanceState(level_loss.sum(dim=1), quality, num_pos, level_loss)


def location_levels(level_sizes: list[tuple[int, int]], device: torch.device) -> Tensor:
    """[sum H*W] the FPN level of each location, in the flattened location order."""
    counts = torch.tensor([h * w for h, w in level_sizes], device=device)
    return torch.repeat_interleave(torch.arange(len(level_sizes), device=device), counts)


def head_and_sizes(
    detector: nn.Module, inputs: Tensor | HeadOutputs, image_sizes: Sequence[Sequence[int]] | None
) -> tuple[HeadOutputs, Sequence[Sequence[int]]]:
    """`predict`'s inputs made uniform: head outputs (computed from images when given
    images) and the valid (h, w) of each image (the batch size when not given)."""
    if isinstance(inputs, HeadOutputs):
        head = inputs
        if image_sizes is None:
            raise ValueError("predict(HeadOutputs) needs image_sizes")
    else:
        head = detector.forward_head(detector.extract_feats(inputs))
        if image_sizes is None:
            image_sizes = [tuple(inputs.shape[-2:])] * inputs.shape[0]
    batch_size = head.cls_logits[0].shape[0]
    if len(image_sizes) != batch_size:
        raise ValueError(f"{len(image_sizes)} image_sizes for a batch of {batch_size}")
    return head, image_sizes
