"""torchvision's RetinaNet and FCOS behind liafkd's detector API (the same as GFL's).

Both run on our ResNetBackbone + FPN (P3-P7, strides 8..128; the same modules and
state-dict names as GFL's `backbone.*` and `neck.*`, so `model.pretrained`, depth,
width and fpn_channels work as for GFL) and use torchvision's own head, anchors,
matcher, losses (`compute_loss`) and post-processing (`postprocess_detections`).

Inputs: our data pipeline already normalises and pads the images, so torchvision's
GeneralizedRCNNTransform (resize + normalise) is never used: backbone, head, anchors
and post-processing run directly on the prepared batch. Every detector thus sees the
same inputs, and boxes stay in input pixels.

Anchors: torchvision's AnchorGenerator.forward takes a level's stride to be
image_size // grid_size, which is wrong for P6/P7 when the padded size is not a
multiple of 128, so we call its `grid_anchors` with the true strides. Anchors are
centred on (x * s, y * s), torchvision's convention (GFL's points are at (x + 0.5) * s).
RetinaNet: 9 anchors per location, sides 4 * s * 2^(i/3), ratios 0.5, 1, 2 (torchvision's
32..512 on P3-P7). FCOS: one s x s anchor per location.

Head outputs (HeadOutputs, per level, torchvision's channel layout a * D + d):
  cls_logits [B, A * K, H, W]; box_dists [B, A * 4, H, W] plain regression outputs, no
  distributions (reg_max = 0 in outputs.py's terms): RetinaNet's (dx, dy, dw, dh)
  deltas, FCOS's (l, t, r, b) distances divided by the anchor side. FCOS also has
  centerness logits (FCOSHeadOutputs.centerness, [B, 1, H, W]). A = 9 for RetinaNet,
  1 for FCOS. The head towers use `model.norm` (gn: as torchvision's RetinaNet v2 and
  FCOS) and `model.head_convs` blocks of fpn_channels width.

Assignment: torchvision's matchers (RetinaNet: IoU >= 0.5 positive, < 0.4 negative, in
between ignored, plus each GT's best anchors; FCOS: centre sampling within 1.5 strides
and per-level scale ranges). AssignResult.gt_index is per location: with several
anchors at a location it holds the match of the first matched anchor (lowest anchor
index); ignored anchors count as background (-1).

Instance states (the detector-agnostic learning state): per GT instance,
  loss: the sum over its matched anchors of the per-anchor terms of torchvision's
    losses, before their 1 / num_foreground normalisation: focal classification
    (summed over classes) + box loss (RetinaNet: L1 on the encoded deltas; FCOS: GIoU
    + centerness BCE);
  quality: the max over its matched anchors of the score torchvision ranks detections
    by, for its class (RetinaNet: sigmoid(cls); FCOS: sqrt(sigmoid(cls) * sigmoid(ctr)));
  num_pos: its number of matched anchors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import FCOS, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import (
    FCOSClassificationHead,
    FCOSHead,
    FCOSRegressionHead,
)
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss
from torchvision.ops.misc import Conv2dNormActivation

from liafkd.config import ModelConfig
from liafkd.models.backbone import PretrainedReport, ResNetBackbone
from liafkd.models.gfl import (
    GFL_STRIDES,
    _check_targets,
    _instance_state,
    head_and_sizes,
    location_levels,
)
from liafkd.models.gfl_head import group_norm_groups
from liafkd.models.neck import FPN
from liafkd.models.outputs import AssignResult, DetectorOutput, HeadOutputs, InstanceState

RETINANET_OCTAVE_SCALES = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
RETINANET_ASPECT_RATIOS = (0.5, 1.0, 2.0)
RETINANET_ANCHOR_SCALE = 4  # base anchor side in strides
TOPK_CANDIDATES = 1000  # per level before NMS, torchvision's default
LOSS_NAMES = {
    "classification": "loss_cls",
    "bbox_regression": "loss_bbox",
    "bbox_ctrness": "loss_centerness",
}

Target = dict[str, Tensor]


@dataclass
class FCOSHeadOutputs(HeadOutputs):
    """HeadOutputs plus FCOS's centerness logits per level, [B, 1, H, W]."""

    centerness: list[Tensor]

    def detach(self) -> FCOSHeadOutputs:
        plain = super().detach()
        return FCOSHeadOutputs(
            plain.cls_logits, plain.box_dists, [t.detach() for t in self.centerness]
        )


class _KeepsMatches:
    """torchvision matches anchors inside the detector's compute_loss and hands the
    matches only to the head's compute_loss; the head keeps the latest ones so that
    forward_train builds its assignment and instance states from the same matches."""

    matched_idxs: list[Tensor] | None = None

    def compute_loss(
        self,
        targets: list[Target],
        head_outputs: dict[str, Tensor],
        anchors: list[Tensor],
        matched_idxs: list[Tensor],
    ) -> dict[str, Tensor]:
        self.matched_idxs = matched_idxs
        return super().compute_loss(targets, head_outputs, anchors, matched_idxs)


class _RetinaNetHead(_KeepsMatches, RetinaNetHead):
    pass


class _FCOSHead(_KeepsMatches, FCOSHead):
    pass


def _norm_layer(norm: str) -> Callable[[int], nn.Module]:
    if norm == "gn":
        return lambda channels: nn.GroupNorm(group_norm_groups(channels), channels)
    if norm == "bn":
        return nn.BatchNorm2d
    raise ValueError(f"model.norm must be 'gn' or 'bn', got {norm!r}")


def _retinanet_tower(channels: int, num_convs: int, norm: str) -> nn.Sequential:
    """`num_convs` conv-norm-ReLU blocks, initialised as torchvision's RetinaNet tower."""
    tower = nn.Sequential(
        *(
            Conv2dNormActivation(channels, channels, norm_layer=_norm_layer(norm))
            for _ in range(num_convs)
        )
    )
    for module in tower.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=0.01)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return tower


def build_retinanet_head(cfg: ModelConfig, num_anchors: int, num_classes: int) -> _RetinaNetHead:
    head = _RetinaNetHead(cfg.fpn_channels, num_anchors, num_classes)
    # torchvision's towers have 4 blocks; ours follow model.head_convs and model.norm
    head.classification_head.conv = _retinanet_tower(cfg.fpn_channels, cfg.head_convs, cfg.norm)
    head.regression_head.conv = _retinanet_tower(cfg.fpn_channels, cfg.head_convs, cfg.norm)
    return head


def build_fcos_head(cfg: ModelConfig, num_classes: int) -> _FCOSHead:
    # torchvision's FCOSHead hard-wires GroupNorm(32), which small FPNs cannot divide;
    # build it empty and give it branches with model.norm and model.head_convs
    head = _FCOSHead(cfg.fpn_channels, 1, num_classes, num_convs=0)
    norm = _norm_layer(cfg.norm)
    head.classification_head = FCOSClassificationHead(
        cfg.fpn_channels, 1, num_classes, cfg.head_convs, norm_layer=norm
    )
    head.regression_head = FCOSRegressionHead(cfg.fpn_channels, 1, cfg.head_convs, norm_layer=norm)
    return head


def _check_config(cfg: ModelConfig, num_classes: int, kind: str) -> None:
    if cfg.type != kind:
        raise ValueError(f"model.type: the {kind} builder cannot build {cfg.type!r}")
    if tuple(cfg.strides) != GFL_STRIDES:
        raise ValueError(f"model.strides: a ResNet+FPN P3-P7 {kind} has {GFL_STRIDES}")
    if cfg.num_classes is not None and cfg.num_classes != num_classes:
        raise ValueError(
            f"model.num_classes is {cfg.num_classes} but the dataset has {num_classes}"
        )
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")


def _level_sizes(head: HeadOutputs) -> list[tuple[int, int]]:
    return [(t.shape[-2], t.shape[-1]) for t in head.cls_logits]


def _flat(maps: list[Tensor], depth: int) -> Tensor:
    """Per-level [B, A * D, H, W] -> [B, sum H * W * A, D], torchvision's order."""
    batch = maps[0].shape[0]
    return torch.cat([t.permute(0, 2, 3, 1).reshape(batch, -1, depth) for t in maps], dim=1)


def _level_maps(flat: Tensor, level_sizes: list[tuple[int, int]], num_anchors: int) -> list[Tensor]:
    """[B, sum H * W * A, D] -> per-level [B, A * D, H, W] (inverse of `_flat`)."""
    batch, _, depth = flat.shape
    counts = [h * w * num_anchors for h, w in level_sizes]
    return [
        part.reshape(batch, h, w, num_anchors * depth).permute(0, 3, 1, 2)
        for part, (h, w) in zip(flat.split(counts, dim=1), level_sizes, strict=True)
    ]


class _TorchvisionDense:
    """liafkd's detector API over a torchvision RetinaNet / FCOS subclass.

    Subclasses provide `num_anchors`, `_head_outputs`, `_torchvision_outputs`,
    `_torchvision_loss` and `_positive_terms`.
    """

    cfg: ModelConfig
    num_classes: int
    num_anchors: int
    strides: tuple[int, ...]
    backbone: ResNetBackbone
    neck: FPN
    head: _KeepsMatches
    anchor_generator: AnchorGenerator

    def _build_trunk(self, cfg: ModelConfig, num_classes: int) -> None:
        self.cfg = cfg
        self.num_classes = num_classes
        self.strides = GFL_STRIDES
        self.pretrained_report: PretrainedReport | None = None
        if cfg.pretrained:
            self.pretrained_report = self.backbone.load_pretrained(cfg.pretrained)
        self.neck = FPN(self.backbone.out_channels, cfg.fpn_channels)
        del self.transform  # never used: inputs arrive normalised and padded

    # --- features and head -------------------------------------------------------

    def extract_feats(self, images: Tensor) -> list[Tensor]:
        """[B, 3, H, W] normalised images -> FPN features [P3, ..., P7]."""
        return self.neck(self.backbone(images))

    def forward_head(self, feats: list[Tensor]) -> HeadOutputs:
        level_sizes = [(f.shape[-2], f.shape[-1]) for f in feats]
        return self._head_outputs(self.head(feats), level_sizes)

    def anchors(self, level_sizes: list[tuple[int, int]], device: torch.device) -> Tensor:
        """[sum H * W * A, 4] xyxy anchors in input pixels, torchvision's order."""
        self.anchor_generator.set_cell_anchors(torch.float32, device)
        strides = [
            [torch.tensor(s, device=device), torch.tensor(s, device=device)] for s in self.strides
        ]
        grid_sizes = [list(size) for size in level_sizes]
        return torch.cat(self.anchor_generator.grid_anchors(grid_sizes, strides))

    # --- training ------------------------------------------------------------------

    def forward_train(
        self, images: Tensor, targets: list[Target], branch_cut: int | None = None
    ) -> DetectorOutput:
        if branch_cut is not None:
            raise ValueError(
                f"{type(self).__name__} has no head branches to cut (CrossKD needs GFL)"
            )
        batch_size = images.shape[0]
        _check_targets(targets, batch_size, self.num_classes)
        targets = _torchvision_targets(targets, images.device)
        feats = self.extract_feats(images)
        head = self.forward_head(feats)
        level_sizes = _level_sizes(head)
        anchors = self.anchors(level_sizes, images.device)
        outputs = self._torchvision_outputs(head)
        raw_losses = self._torchvision_loss(targets, outputs, [anchors] * batch_size, level_sizes)
        losses = {LOSS_NAMES[name]: value for name, value in raw_losses.items()}
        matched = torch.stack(self.head.matched_idxs)  # [B, sum H * W * A]
        assign = self._assign(anchors, level_sizes, matched, targets)
        instances = self._instance_state(outputs, anchors, matched, targets, level_sizes)
        return DetectorOutput(losses, feats, head, assign, instances)

    def _assign(
        self,
        anchors: Tensor,
        level_sizes: list[tuple[int, int]],
        matched: Tensor,
        targets: list[Target],
    ) -> AssignResult:
        num_locations = sum(h * w for h, w in level_sizes)
        per_location = matched.reshape(matched.shape[0], num_locations, self.num_anchors)
        first = (per_location >= 0).to(torch.uint8).argmax(dim=-1, keepdim=True)
        gt = per_location.gather(-1, first).squeeze(-1)
        offsets = _instance_offsets(targets, matched.device)[:, None]
        gt_index = torch.where(gt >= 0, gt + offsets, torch.full_like(gt, -1))
        centres = anchors.reshape(num_locations, self.num_anchors, 4)[:, 0]
        points = (centres[:, :2] + centres[:, 2:]) / 2
        strides = torch.cat(
            [
                torch.full((h * w,), float(s), device=anchors.device)
                for (h, w), s in zip(level_sizes, self.strides, strict=True)
            ]
        )
        return AssignResult(points, strides, level_sizes, gt_index)

    @torch.no_grad()
    def _instance_state(
        self,
        outputs: dict[str, Tensor],
        anchors: Tensor,
        matched: Tensor,
        targets: list[Target],
        level_sizes: list[tuple[int, int]],
    ) -> InstanceState:
        gt_boxes = torch.cat([t["boxes"] for t in targets])
        gt_labels = torch.cat([t["labels"] for t in targets])
        image, anchor = torch.nonzero(matched >= 0, as_tuple=True)
        pos_gt = matched[image, anchor] + _instance_offsets(targets, matched.device)[image]
        positives = {name: value[image, anchor].float() for name, value in outputs.items()}
        loss, score = self._positive_terms(
            positives, anchors[anchor], gt_boxes[pos_gt], gt_labels[pos_gt]
        )
        levels = location_levels(level_sizes, matched.device)[anchor // self.num_anchors]
        return _instance_state(gt_boxes.shape[0], pos_gt, loss, score, levels, len(level_sizes))

    # --- inference -----------------------------------------------------------------

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
        level_sizes = _level_sizes(head)
        counts = [h * w * self.num_anchors for h, w in level_sizes]
        outputs = self._torchvision_outputs(head)
        per_level = {name: list(value.split(counts, dim=1)) for name, value in outputs.items()}
        anchors = list(self.anchors(level_sizes, head.cls_logits[0].device).split(counts))
        shapes = [(int(h), int(w)) for h, w in image_sizes]
        return self.postprocess_detections(per_level, [anchors] * len(shapes), shapes)

    def forward(
        self, images: Tensor, targets: list[Target] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Training mode: the loss dict (targets required). Eval mode: detections."""
        if self.training:
            if targets is None:
                name = type(self).__name__
                raise ValueError(f"{name} in training mode needs targets (call .eval() to predict)")
            return self.forward_train(images, targets).losses
        return self.predict(images)


class TorchvisionRetinaNet(_TorchvisionDense, RetinaNet):
    """RetinaNet (torchvision's head, anchors, matcher and losses) on our ResNet + FPN."""

    def __init__(self, cfg: ModelConfig, num_classes: int) -> None:
        _check_config(cfg, num_classes, "retinanet")
        sizes = tuple(
            tuple(int(RETINANET_ANCHOR_SCALE * s * k) for k in RETINANET_OCTAVE_SCALES)
            for s in GFL_STRIDES
        )
        anchor_generator = AnchorGenerator(sizes, (RETINANET_ASPECT_RATIOS,) * len(sizes))
        num_anchors = anchor_generator.num_anchors_per_location()[0]
        super().__init__(
            backbone=ResNetBackbone(cfg.depth, cfg.width, cfg.frozen_stages, cfg.norm_eval),
            num_classes=num_classes,
            anchor_generator=anchor_generator,
            head=build_retinanet_head(cfg, num_anchors, num_classes),
            score_thresh=cfg.score_thr,
            nms_thresh=cfg.nms_iou,
            detections_per_img=cfg.max_dets,
            topk_candidates=TOPK_CANDIDATES,
        )
        self.num_anchors = num_anchors
        self._build_trunk(cfg, num_classes)

    def _head_outputs(
        self, outputs: dict[str, Tensor], level_sizes: list[tuple[int, int]]
    ) -> HeadOutputs:
        return HeadOutputs(
            _level_maps(outputs["cls_logits"], level_sizes, self.num_anchors),
            _level_maps(outputs["bbox_regression"], level_sizes, self.num_anchors),
        )

    def _torchvision_outputs(self, head: HeadOutputs) -> dict[str, Tensor]:
        return {
            "cls_logits": _flat(head.cls_logits, self.num_classes).float(),
            "bbox_regression": _flat(head.box_dists, 4).float(),
        }

    def _torchvision_loss(
        self,
        targets: list[Target],
        outputs: dict[str, Tensor],
        anchors: list[Tensor],
        level_sizes: list[tuple[int, int]],
    ) -> dict[str, Tensor]:
        return self.compute_loss(targets, outputs, anchors)

    def _positive_terms(
        self, positives: dict[str, Tensor], anchors: Tensor, boxes: Tensor, labels: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Per matched anchor: focal + L1 loss terms and the score for the GT class."""
        logits = positives["cls_logits"]
        onehot = F.one_hot(labels, self.num_classes).to(logits.dtype)
        cls_loss = sigmoid_focal_loss(logits, onehot, reduction="none").sum(dim=1)
        deltas = self.head.regression_head.box_coder.encode_single(boxes, anchors)
        box_loss = (positives["bbox_regression"] - deltas).abs().sum(dim=1)
        score = logits.gather(1, labels[:, None]).squeeze(1).sigmoid()
        return cls_loss + box_loss, score


class TorchvisionFCOS(_TorchvisionDense, FCOS):
    """FCOS (torchvision's head, centre sampling and losses) on our ResNet + FPN."""

    def __init__(self, cfg: ModelConfig, num_classes: int) -> None:
        _check_config(cfg, num_classes, "fcos")
        anchor_generator = AnchorGenerator(
            tuple((s,) for s in GFL_STRIDES), ((1.0,),) * len(GFL_STRIDES)
        )
        super().__init__(
            backbone=ResNetBackbone(cfg.depth, cfg.width, cfg.frozen_stages, cfg.norm_eval),
            num_classes=num_classes,
            anchor_generator=anchor_generator,
            head=build_fcos_head(cfg, num_classes),
            score_thresh=cfg.score_thr,
            nms_thresh=cfg.nms_iou,
            detections_per_img=cfg.max_dets,
            topk_candidates=TOPK_CANDIDATES,
        )
        self.num_anchors = 1
        self._build_trunk(cfg, num_classes)

    def _head_outputs(
        self, outputs: dict[str, Tensor], level_sizes: list[tuple[int, int]]
    ) -> FCOSHeadOutputs:
        return FCOSHeadOutputs(
            _level_maps(outputs["cls_logits"], level_sizes, 1),
            _level_maps(outputs["bbox_regression"], level_sizes, 1),
            _level_maps(outputs["bbox_ctrness"], level_sizes, 1),
        )

    def _torchvision_outputs(self, head: HeadOutputs) -> dict[str, Tensor]:
        if not isinstance(head, FCOSHeadOutputs):
            raise ValueError("FCOS needs FCOSHeadOutputs (with centerness), got HeadOutputs")
        return {
            "cls_logits": _flat(head.cls_logits, self.num_classes).float(),
            "bbox_regression": _flat(head.box_dists, 4).float(),
            "bbox_ctrness": _flat(head.centerness, 1).float(),
        }

    def _torchvision_loss(
        self,
        targets: list[Target],
        outputs: dict[str, Tensor],
        anchors: list[Tensor],
        level_sizes: list[tuple[int, int]],
    ) -> dict[str, Tensor]:
        return self.compute_loss(targets, outputs, anchors, [h * w for h, w in level_sizes])

    def _positive_terms(
        self, positives: dict[str, Tensor], anchors: Tensor, boxes: Tensor, labels: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Per matched location: focal + GIoU + centerness loss terms and the score."""
        logits = positives["cls_logits"]
        ctr_logits = positives["bbox_ctrness"].squeeze(1)
        onehot = F.one_hot(labels, self.num_classes).to(logits.dtype)
        cls_loss = sigmoid_focal_loss(logits, onehot, reduction="none").sum(dim=1)
        coder = self.head.box_coder
        pred_boxes = coder.decode(positives["bbox_regression"], anchors)
        giou = generalized_box_iou_loss(pred_boxes, boxes, reduction="none")
        ctr_loss = F.binary_cross_entropy_with_logits(
            ctr_logits, _centerness_targets(coder.encode(anchors, boxes)), reduction="none"
        )
        cls_score = logits.gather(1, labels[:, None]).squeeze(1).sigmoid()
        score = (cls_score * ctr_logits.sigmoid()).sqrt()
        return cls_loss + giou + ctr_loss, score


def _centerness_targets(distances: Tensor) -> Tensor:
    """FCOS centerness sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)), [P]."""
    left_right = distances[:, [0, 2]]
    top_bottom = distances[:, [1, 3]]
    return torch.sqrt(
        (left_right.min(dim=1).values / left_right.max(dim=1).values)
        * (top_bottom.min(dim=1).values / top_bottom.max(dim=1).values)
    )


def _torchvision_targets(targets: list[Target], device: torch.device) -> list[Target]:
    """Only boxes (float32) and labels (int64), on the images' device."""
    return [
        {
            "boxes": t["boxes"].to(device=device, dtype=torch.float32),
            "labels": t["labels"].to(device=device, dtype=torch.int64),
        }
        for t in targets
    ]


def _instance_offsets(targets: list[Target], device: torch.device) -> Tensor:
    """[B] the batch-wide index of each image's first instance."""
    counts = torch.tensor([len(t["labels"]) for t in targets], device=device)
    return torch.cumsum(counts, 0) - counts
