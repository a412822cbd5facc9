"""CrossKD: cross-head knowledge distillation (Wang et al., CVPR 2024), for GFL.

The path. The student's head branch features after its first `cut` blocks (cls and
reg branch, every FPN level) go through one 1x1 adapter per branch (student to teacher
channels, shared by the levels as the head is, identity-initialised when the widths
match; training only), optionally take on the per-channel mean and std of the
teacher's own branch features at the same cut (`align_stats`, as the reference code
does), pass a ReLU when cut > 0 (the teacher's next block expects post-activation
input), then run through the rest of the frozen teacher head (`GFLHead.forward_from`).
The resulting cross-head predictions x mimic the teacher's predictions t:

    qfl  = weight_qfl * sum_{p,k} |s(x_pk) - s(t_pk)|^beta * BCE(x_pk, s(t_pk)) / max(P, 1)
    kl   = weight_kl * sum_p v_p * KL_p / sum_p v_p
    KL_p = mean over the 4 box edges of T^2 * sum_bins KL(softmax(t_pe/T) || softmax(x_pe/T))

s = sigmoid; p runs over every location of the batch and k over the classes; P is the
number of positive locations (the student's assignment); v_p = max_k s(t_pk), the
teacher's score, so box distributions are distilled where the teacher sees an object.
Optional per-location weights ([B, L], LIAF-KD's instance weights at each instance's
assigned locations, 1 elsewhere) multiply each location's qfl and kl terms; the
normalisers P and sum v stay unweighted.

The student's own head is trained by the ground truth alone. The cross-head losses
reach the adapters, the student's head blocks before the cut, its neck and backbone,
never the teacher's weights (the Distiller freezes them; the graph passes through the
teacher's blocks to their input).

Defaults: CrossKD's GFL R101 -> R50 1x config (github.com/jbwang1997/CrossKD, commit
b0c5a76): cut after 3 of 4 blocks (`cut: -1`), KD-QFL with beta 1 and weight 1, KL with
T = 1 summed over the bins and weight 4. Deliberate differences:
- none in the statistics `align_stats` matches: our head is cut after a block's ReLU
  (`GFLHead.branch_feats`); the reference cuts before it, but its ReLU runs in place, so
  the tensor it takes statistics of is post-activation too, as here;
- the qfl normaliser is the batch's positives, max(sum_i P_i, 1), as GFL's own QFL
  here; the reference divides by sum_i max(P_i, 1), one more per image without a
  positive location (on a batch with P = [27, 0]: 28 against our 27, 3.7% less loss);
- every location of the padded batch counts, including those outside a smaller image's
  own extent (the reference gives those zero weight). The two agree wherever a batch's
  images share one size, as in every shipped bench (each resizes to one fixed size);
- the adapters let the two heads differ in width (the reference needs equal widths);
- `align_stats` uses the population std (see pkd.py);
- the GIoU term between decoded boxes that later reference commits add is left out.
`crosskd+pkd` adds PKD on the FPN features (pkd.py), as CrossKD's +PKD row;
`fgd+crosskd` adds FGD (fgd.py) instead: the control that `liaf+crosskd` is read against
(the same cross-head terms, a feature term without a learnt instance weighting).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liafkd.distill.base import DistillInputs, DistillMethod, HeadPair
from liafkd.distill.ld import edge_distribution_kl
from liafkd.distill.pkd import channel_moments, standardize_channels
from liafkd.models.outputs import HeadOutputs


def kd_quality_focal_loss(logits: Tensor, teacher_logits: Tensor, beta: float) -> Tensor:
    """[..., K] -> [...]: sum over classes of |s(x) - s(t)|^beta * BCE(x, s(t)).
    Zero where the logits equal the teacher's; the teacher side is detached."""
    target = teacher_logits.detach().float().sigmoid()
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (bce * (logits.sigmoid() - target).abs().pow(beta)).sum(dim=-1)


def box_distribution_kl(logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """[P, 4 * (n + 1)] -> [P]: mean over the 4 edges of T^2 * bin-summed KL(t || x)."""
    dims = logits.shape[-1]
    if dims < 8 or dims % 4:
        raise ValueError(
            f"CrossKD needs box-edge distributions (4 * (reg_max + 1) channels with "
            f"reg_max >= 1), got {dims} channels"
        )
    return edge_distribution_kl(logits, teacher_logits, temperature) * (dims // 4) / 4


def resolve_cut(cut: int, student_head: nn.Module, teacher_head: nn.Module) -> int:
    """The configured cut as a block count; negative counts from the teacher head's end."""
    resolved = teacher_head.num_convs + cut if cut < 0 else cut
    limit = min(student_head.num_convs, teacher_head.num_convs)
    if not 0 <= resolved <= limit:
        raise ValueError(
            f"distill.crosskd.cut {cut}: the student's head has {student_head.num_convs} "
            f"blocks and the teacher's {teacher_head.num_convs}; the cut must fall in "
            f"[0, {limit}] (or [-{teacher_head.num_convs}, -1] from the teacher's end)"
        )
    return resolved


def branch_channels(head: nn.Module, cut: int) -> tuple[int, int]:
    """(cls, reg) channels of a GFL head's branch features after `cut` blocks."""
    if cut < head.num_convs:
        return head.cls_convs[cut][0].in_channels, head.reg_convs[cut][0].in_channels
    return head.gfl_cls.in_channels, head.gfl_reg.in_channels


def identity_conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A 1x1 conv, identity-initialised when the channel counts match."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)
    if in_channels == out_channels:
        with torch.no_grad():
            conv.weight.copy_(torch.eye(in_channels)[:, :, None, None])
            conv.bias.zero_()
    return conv


class CrossKD(DistillMethod):
    def __init__(
        self,
        cut: int,
        student_channels: tuple[int, int],
        teacher_channels: tuple[int, int],
        weight_qfl: float = 1.0,
        beta: float = 1.0,
        weight_kl: float = 4.0,
        temperature: float = 1.0,
        align_stats: bool = True,
        feature: DistillMethod | None = None,
    ) -> None:
        """cut: resolved block count (>= 0); *_channels: (cls, reg) branch widths at it;
        feature: an FPN-feature method whose terms are added (PKD or FGD), or None."""
        super().__init__()
        if cut < 0:
            raise ValueError(f"CrossKD expects a resolved cut (>= 0), got {cut}")
        self.branch_cut = cut
        self.cls_adapter = identity_conv1x1(student_channels[0], teacher_channels[0])
        self.reg_adapter = identity_conv1x1(student_channels[1], teacher_channels[1])
        self.weight_qfl = weight_qfl
        self.beta = beta
        self.weight_kl = weight_kl
        self.temperature = temperature
        self.align_stats = align_stats
        self.feature = feature
        needs = {"head", "assign", "head_branches", "teacher_head_module"}
        if feature is not None:
            needs |= feature.needs
        self.needs = frozenset(needs)

    @classmethod
    def from_heads(cls, heads: HeadPair, cut: int, **options) -> CrossKD:
        """Resolve the cut and the adapters' widths from the two GFL heads."""
        student, teacher = heads.student, heads.teacher
        if (student.num_classes, student.reg_max) != (teacher.num_classes, teacher.reg_max):
            raise ValueError(
                f"CrossKD: the student's head predicts {student.num_classes} classes with "
                f"reg_max {student.reg_max}, the teacher's {teacher.num_classes} with reg_max "
                f"{teacher.reg_max}; they must match"
            )
        resolved = resolve_cut(cut, student, teacher)
        return cls(
            resolved,
            branch_channels(student, resolved),
            branch_channels(teacher, resolved),
            **options,
        )

    def cross_head(self, inputs: DistillInputs) -> HeadOutputs:
        """The teacher head's predictions on the student's branch features."""
        inputs.require("student_branches", "teacher_branches", "teacher_head_module")
        teacher_head = inputs.teacher_head_module
        if teacher_head.training:
            raise ValueError("CrossKD: the teacher's head must be in eval mode")
        student, teacher = inputs.student_branches, inputs.teacher_branches
        cls_feats = [
            self._bridge(self.cls_adapter, s, t)
            for s, t in zip(student.cls_feats, teacher.cls_feats, strict=True)
        ]
        reg_feats = [
            self._bridge(self.reg_adapter, s, t)
            for s, t in zip(student.reg_feats, teacher.reg_feats, strict=True)
        ]
        return teacher_head.forward_from(cls_feats, reg_feats, self.branch_cut)

    def _bridge(self, adapter: nn.Conv2d, student: Tensor, teacher: Tensor) -> Tensor:
        feat = adapter(student)
        if self.align_stats:
            mean, std = channel_moments(teacher)
            feat = standardize_channels(feat) * std + mean
        return F.relu(feat) if self.branch_cut > 0 else feat

    def prediction_losses(
        self, inputs: DistillInputs, location_weights: Tensor | None = None
    ) -> dict[str, Tensor]:
        """The qfl and kl terms; `location_weights`: optional [B, L] factor per location."""
        inputs.require("teacher_head", "student_assign")
        cross = self.cross_head(inputs)
        cross_cls, teacher_cls = cross.flat_cls(), inputs.teacher_head.flat_cls()
        cross_box, teacher_box = cross.flat_box(), inputs.teacher_head.flat_box()
        if cross_cls.shape != teacher_cls.shape or cross_box.shape != teacher_box.shape:
            raise ValueError(
                f"CrossKD: cross-head outputs {tuple(cross_cls.shape)}/{tuple(cross_box.shape)} "
                f"differ from the teacher's {tuple(teacher_cls.shape)}/{tuple(teacher_box.shape)}"
            )
        batch, locations, dims = cross_box.shape
        qfl = kd_quality_focal_loss(cross_cls, teacher_cls, self.beta)
        kl = box_distribution_kl(
            cross_box.reshape(-1, dims), teacher_box.reshape(-1, dims), self.temperature
        ).reshape(batch, locations)
        scores = teacher_cls.detach().float().sigmoid().max(dim=-1).values
        if location_weights is not None:
            qfl, kl = qfl * location_weights, kl * location_weights
        num_pos = (inputs.student_assign.gt_index >= 0).sum().clamp_min(1)
        return {
            "loss_crosskd_qfl": self.weight_qfl * qfl.sum() / num_pos,
            "loss_crosskd_kl": self.weight_kl * (scores * kl).sum() / scores.sum().clamp_min(1e-6),
        }

    def forward(self, inputs: DistillInputs) -> dict[str, Tensor]:
        losses = self.prediction_losses(inputs)
        if self.feature is not None:
            losses.update(self.feature(inputs))
        return losses
