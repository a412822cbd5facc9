"""The learnable instance selector of LIAF-KD (method page, sections 3 and 4).

Descriptor of GT instance i:
  t_i  RoIAlign(F_T at the instance's level, b_i, 7x7), averaged to [C];
  s_i  the same on the adapted student feature;
  signals (all detached), in this order:
    log1p(mean_c (t_i - s_i)^2)      feature discrepancy (mean over channels, then log1p)
    student quality, teacher quality  max score for c_i over the assigned locations
    log1p(student loss), log1p(teacher loss)   per-instance head loss
    log(box area / image area), log(box w / box h), level / (num_levels - 1)
  The logs keep losses and areas on a scale a small MLP can use.
Level mapping: FPN's k = floor(4 + log2(sqrt(w*h) / c)), clamped to the available
levels (k = log2(stride)), with c = canonical_size (224) * sqrt(H*W / (800*1333)): the
canonical box side scales with the padded input (H, W), so a box takes the same level
at any input size relative to it (FPN's 224 is set for COCO's 800x1333 inputs; on
192x320 synthetic images c is about 54, spreading instances over P3-P5 instead of all
on P3).
All descriptor inputs are detached: the selector learns its own parameters only, and
the student is shaped only through the weighted imitation loss.

g: t_i and s_i are embedded by two MLPs (LayerNorm, Linear, ReLU, Linear) to `width`;
[e_t, e_s, |e_t - e_s|, signals] -> Linear, ReLU, Linear -> logit z_i. The last layer
starts at zero, so training starts from uniform weights (FGD's behaviour).
Weights: w_i = (1 - lam) + lam * N * softmax_i(z_i / tau_w).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from liafkd.distill.attention import channel_attention, spatial_attention
from liafkd.distill.base import DistillInputs
from liafkd.distill.masks import LevelMasks

NUM_SIGNALS = 8


class GradientReversal(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by -scale."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.scale * grad, None


def grad_reverse(x: Tensor, scale: float = 1.0) -> Tensor:
    return GradientReversal.apply(x, scale)


REFERENCE_IMAGE_AREA = 800 * 1333  # the input size FPN's canonical 224 is set for


def assign_fpn_levels(
    boxes: Tensor,
    strides: list[int],
    image_shape: tuple[int, int],
    canonical_size: float = 224.0,
) -> Tensor:
    """[N] index into `strides` of each box's level (FPN level mapper, clamped), the
    canonical size scaled by sqrt(image area / 800*1333)."""
    side = (
        (boxes[:, 2] - boxes[:, 0]).clamp_min(1e-6) * (boxes[:, 3] - boxes[:, 1]).clamp_min(1e-6)
    ).sqrt()
    canonical = canonical_size * math.sqrt(image_shape[0] * image_shape[1] / REFERENCE_IMAGE_AREA)
    k = torch.floor(4 + torch.log2(side / canonical) + 1e-6)
    first = math.log2(strides[0])
    return (k - first).clamp(0, len(strides) - 1).long()


def roi_grids(
    feats: list[Tensor],
    boxes: Tensor,
    image_index: Tensor,
    levels: Tensor,
    strides: list[int],
    output_size: int = 7,
) -> Tensor:
    """[N, C, k, k] RoIAlign (k = output_size) of each box on its level, detached."""
    size = (boxes.shape[0], feats[0].shape[1], output_size, output_size)
    out = feats[0].new_zeros(size, dtype=torch.float32)
    rois = torch.cat([image_index[:, None].to(boxes.dtype), boxes], dim=1)
    for level, (feat, stride) in enumerate(zip(feats, strides, strict=True)):
        chosen = (levels == level).nonzero(as_tuple=True)[0]
        if chosen.numel() == 0:
            continue
        out[chosen] = roi_align(
            feat.detach().float(),
            rois[chosen],
            output_size=output_size,
            spatial_scale=1.0 / stride,
            sampling_ratio=2,
            aligned=True,
        )
    return out


def roi_descriptors(
    feats: list[Tensor],
    boxes: Tensor,
    image_index: Tensor,
    levels: Tensor,
    strides: list[int],
    output_size: int = 7,
) -> Tensor:
    """[N, C] RoIAlign of each box on its level, averaged over the output grid."""
    return roi_grids(feats, boxes, image_index, levels, strides, output_size).mean(dim=(2, 3))


@dataclass
class InstanceDescriptors:
    teacher: Tensor  # [N, C]
    student: Tensor  # [N, C]
    signals: Tensor  # [N, NUM_SIGNALS]
    levels: Tensor  # [N]


def build_descriptors(
    inputs: DistillInputs, canonical_size: float = 224.0, roi_size: int = 7
) -> InstanceDescriptors:
    inputs.require("teacher_instances", "student_instances")
    boxes = inputs.all_boxes()
    image_index = inputs.image_index()
    levels = assign_fpn_levels(boxes, inputs.strides, inputs.images_shape, canonical_size)
    teacher = roi_descriptors(
        inputs.teacher_feats, boxes, image_index, levels, inputs.strides, roi_size
    )
    student = roi_descriptors(
        inputs.student_feats, boxes, image_index, levels, inputs.strides, roi_size
    )
    signals = instance_signals(inputs, teacher, student, boxes, levels)
    return InstanceDescriptors(teacher=teacher, student=student, signals=signals, levels=levels)


def instance_signals(
    inputs: DistillInputs, teacher: Tensor, student: Tensor, boxes: Tensor, levels: Tensor
) -> Tensor:
    """[N, NUM_SIGNALS] the learning-state and geometry signals (module docstring), from
    the [N, C] pooled teacher and student RoI features; detached."""
    height, width = inputs.images_shape
    box_w = (boxes[:, 2] - boxes[:, 0]).clamp_min(1e-3)
    box_h = (boxes[:, 3] - boxes[:, 1]).clamp_min(1e-3)
    s_state, t_state = inputs.student_instances, inputs.teacher_instances
    return torch.stack(
        [
            torch.log1p((teacher - student).pow(2).mean(dim=1)),
            s_state.quality.float(),
            t_state.quality.float(),
            torch.log1p(s_state.loss.float().clamp_min(0)),
            torch.log1p(t_state.loss.float().clamp_min(0)),
            torch.log(box_w * box_h / (height * width)),
            torch.log(box_w / box_h),
            levels.float() / max(len(inputs.strides) - 1, 1),
        ],
        dim=1,
    ).detach()


def _embedder(channels: int, width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(channels), nn.Linear(channels, width), nn.ReLU(), nn.Linear(width, width)
    )


class InstanceSelector(nn.Module):
    """g: descriptor -> logit z_i (training only; dropped at export)."""

    def __init__(self, channels: int, width: int = 64, num_signals: int = NUM_SIGNALS) -> None:
        super().__init__()
        self.embed_teacher = _embedder(channels, width)
        self.embed_student = _embedder(channels, width)
        self.score = nn.Sequential(
            nn.Linear(3 * width + num_signals, width), nn.ReLU(), nn.Linear(width, 1)
        )
        nn.init.zeros_(self.score[-1].weight)
        nn.init.zeros_(self.score[-1].bias)

    def forward(self, desc: InstanceDescriptors) -> Tensor:
        e_t = self.embed_teacher(desc.teacher)
        e_s = self.embed_student(desc.student)
        joined = torch.cat([e_t, e_s, (e_t - e_s).abs(), desc.signals], dim=1)
        return self.score(joined).squeeze(1)


def instance_weights(logits: Tensor, lam: float, tau_w: float) -> Tensor:
    """w_i = (1 - lam) + lam * N * softmax(z / tau_w): mean 1, never below 1 - lam."""
    n = logits.numel()
    return (1 - lam) + lam * n * F.softmax(logits / tau_w, dim=0)


def entropy_term(logits: Tensor, tau_w: float) -> Tensor:
    """sum_i p_i log p_i with p = softmax(z / tau_w) (minus the entropy; <= 0)."""
    log_p = F.log_softmax(logits / tau_w, dim=0)
    return (log_p.exp() * log_p).sum()


def alignment_scores(inputs: DistillInputs, masks: list[LevelMasks], temperature: float) -> Tensor:
    """[N] r_i = <dL_det/dF_S, dL_fg_i/dF_S>, summed over levels.

    Imitating instance i moves F_S along -dL_fg_i/dF_S, which changes L_det by
    -eta * r_i to first order: r_i > 0 means imitating i also lowers the detection loss.
    With L_fg_i = sum_{c,x,y} m_i A_sp A_ch (F_T - F_S)^2 / B (teacher attention, so
    constant in F_S), dL_fg_i/dF_S = -2 m_i A_sp A_ch (F_T - F_S) / B, hence
    r_i = -(2 / B) * sum_l sum_xy m_il * A_sp * sum_c A_ch * g * (F_T - F_S)
    with g = inputs.det_grads[l] on the image of i: no per-instance backward pass.
    """
    inputs.require("det_grads")
    total = inputs.teacher_feats[0].new_zeros(masks[0].instance.shape[0], dtype=torch.float32)
    for student, teacher, grad, m in zip(
        inputs.student_feats, inputs.teacher_feats, inputs.det_grads, masks, strict=True
    ):
        a_sp = spatial_attention(teacher, temperature)
        a_ch = channel_attention(teacher, temperature)
        diff = teacher.float() - student.detach().float()
        q = (grad.float() * diff * a_ch[:, :, None, None]).sum(dim=1) * a_sp
        total = total + (m.instance * q[m.image_index]).sum(dim=(1, 2))
    return -2.0 * total / inputs.batch_size


def listwise_alignment_loss(logits: Tensor, scores: Tensor, tau_w: float, tau_r: float) -> Tensor:
    """KL(q || p), q = softmax(standardised r / tau_r), p = softmax(z / tau_w) (ListNet):
    the selector's distribution is pulled toward the ranking of the alignment scores."""
    if logits.numel() < 2:
        return logits.sum() * 0
    r = scores.detach().float()
    r = (r - r.mean()) / r.std().clamp_min(1e-12)
    return kl_to_target(logits, F.softmax(r / tau_r, dim=0), tau_w)


def kl_to_target(logits: Tensor, target: Tensor, tau_w: float) -> Tensor:
    """KL(q || p) of a target distribution q and p = softmax(z / tau_w)."""
    log_p = F.log_softmax(logits / tau_w, dim=0)
    return (target * (target.clamp_min(1e-12).log() - log_p)).sum()
