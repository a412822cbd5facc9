"""LIAF-KD's cooperative instance filter: selector objective `coop`.

Per GT instance i, the teacher's RoI feature attends over the student's; M selection
units turn the fused feature into the instance's weight w_i AND a spatial filter f_i
inside its box, and the imitation term of i becomes

    L~_fg_i = sum_l sum_xy m_il(x, y) * f_i(x, y) * E_l(image of i, x, y) / B
    f_i     = (1 - filter_mix) + filter_mix * k^2 * pi_i(u(x, y))

with pi_i a distribution over the instance's k x k RoI grid, sampled (bilinear) at each
cell's position u(x, y) inside the box, so f_i averages about 1 over the box. The
total foreground term is alpha_fg * sum_i w_i L~_fg_i.

Network (training only), on RoIAlign k x k grids of the teacher's and the adapted
student's features at the instance's level (detached): tokens T, S in R^{k^2 x C};
Q = W_q LN(T) + P, K = W_k LN(S) + P, V = W_v LN(S) (P a learnt position embedding);
fused U = W_t LN(T) + softmax(Q K^T / sqrt(d)) V. Unit m has a vector u_m: its map
a_m = softmax over the grid of <u_m, U(u)>; gates beta = softmax_m(W_g mean U);
pi_i = sum_m beta_m a_m; the instance's logit z_i = MLP([sum_m beta_m a_m U, signals_i])
(signals as selector.py's, last layer zero-initialised: training starts from uniform
weights). p = softmax(z / tau_w), w_i = (1 - lam) + lam * N * p_i.

What it is trained on: not the loss it weights. Weights and filters enter the
imitation loss detached; the selector is trained only by

  loss_liaf_coop         weight * KL(q || p),  q_i  proportional to sigmoid(g_i / tau)
  loss_liaf_coop_filter  filter_weight * mean_i KL(r_i || pi_i),
                         r_i(u) proportional to sigmoid(g_i(u) / tau)
  loss_liaf_coop_diversity  diversity * mean_i mean_{m<m'} Dice(a_m, a_m')
  loss_liaf_entropy      entropy_beta * sum_i p_i log p_i (as every objective)

with the teacher's lead over the student, from their own predictions (detached):
  g_i    = c^T_i - c^S_i, c the model's quality for the instance (max predicted score
           for its class over the locations assigned to it: InstanceState.quality);
  g_i(u) = s^T_i(u) - s^S_i(u), s the model's predicted score for the instance's class,
           RoIAligned on the instance's level at grid point u.
"Imitate the teacher where it recognises the object better than the student": an
instance the teacher gets wrong (g_i < 0) is trusted little, one the teacher knows and
the student does not yet (g_i > 0) much. The target is bounded, sigmoid(.) in (0, 1),
so p cannot collapse onto one instance: p_i / p_j <= 1 / sigmoid(g_j / tau) for any
instance j with g_j >= 0, and q is uniform when every g_i is equal. The fixed point of
each KL is p = q, pi_i = r_i, whatever the imitation losses are (docs/liaf-kd.md, 9).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from liafkd.distill.base import DistillInputs
from liafkd.distill.fgd import fg_bg_losses
from liafkd.distill.liaf import LIAF
from liafkd.distill.masks import LevelMasks
from liafkd.distill.selector import (
    NUM_SIGNALS,
    assign_fpn_levels,
    entropy_term,
    instance_signals,
    instance_weights,
    kl_to_target,
    roi_grids,
)
from liafkd.models.outputs import HeadOutputs


@dataclass
class CoopView:
    """What the cooperative filter sees of each instance (all detached)."""

    teacher: Tensor  # [N, C, k, k] RoI grid of the teacher's feature
    student: Tensor  # [N, C, k, k] the same of the adapted student's
    signals: Tensor  # [N, NUM_SIGNALS]
    lead: Tensor  # [N] g_i = teacher quality - student quality
    lead_grid: Tensor  # [N, k, k] g_i(u) = teacher score - student score for the class
    levels: Tensor  # [N]


@dataclass
class CoopOutput:
    logits: Tensor  # [N] z_i
    filters: Tensor  # [N, k * k] pi_i, a distribution over the RoI grid
    unit_maps: Tensor  # [N, M, k * k] a_m, each a distribution over the grid


def class_score_grids(
    head: HeadOutputs,
    boxes: Tensor,
    image_index: Tensor,
    labels: Tensor,
    levels: Tensor,
    strides: list[int],
    size: int,
) -> Tensor:
    """[N, k, k] each model's predicted score for the instance's class, RoIAligned on
    the instance's level (detached)."""
    out = boxes.new_zeros((boxes.shape[0], size, size))
    rois = torch.cat([image_index[:, None].to(boxes.dtype), boxes], dim=1)
    for level, (logits, stride) in enumerate(zip(head.cls_logits, strides, strict=True)):
        chosen = (levels == level).nonzero(as_tuple=True)[0]
        if chosen.numel() == 0:
            continue
        pooled = roi_align(
            logits.detach().float().sigmoid(),
            rois[chosen],
            output_size=size,
            spatial_scale=1.0 / stride,
            sampling_ratio=2,
            aligned=True,
        )
        out[chosen] = pooled[torch.arange(chosen.numel()), labels[chosen]]
    return out


def coop_view(inputs: DistillInputs, canonical_size: float, size: int) -> CoopView:
    inputs.require("teacher_instances", "student_instances", "teacher_head", "student_head")
    boxes = inputs.all_boxes()
    image_index = inputs.image_index()
    labels = inputs.all_labels()
    levels = assign_fpn_levels(boxes, inputs.strides, inputs.images_shape, canonical_size)
    teacher = roi_grids(inputs.teacher_feats, boxes, image_index, levels, inputs.strides, size)
    student = roi_grids(inputs.student_feats, boxes, image_index, levels, inputs.strides, size)
    signals = instance_signals(
        inputs, teacher.mean(dim=(2, 3)), student.mean(dim=(2, 3)), boxes, levels
    )
    lead = inputs.teacher_instances.quality.float() - inputs.student_instances.quality.float()
    scores = [
        class_score_grids(head, boxes, image_index, labels, levels, inputs.strides, size)
        for head in (inputs.teacher_head, inputs.student_head)
    ]
    return CoopView(teacher, student, signals, lead.detach(), scores[0] - scores[1], levels)


class CoopSelector(nn.Module):
    """Teacher-over-student cross-attention and M selection units (module docstring)."""

    def __init__(
        self,
        channels: int,
        width: int = 64,
        units: int = 4,
        grid: int = 7,
        num_signals: int = NUM_SIGNALS,
    ) -> None:
        super().__init__()
        self.norm_teacher = nn.LayerNorm(channels)
        self.norm_student = nn.LayerNorm(channels)
        self.query = nn.Linear(channels, width)
        self.key = nn.Linear(channels, width)
        self.value = nn.Linear(channels, width)
        self.teacher_in = nn.Linear(channels, width)
        self.position = nn.Parameter(0.02 * torch.randn(grid * grid, width))
        # small and distinct: the units' maps start near uniform but not equal
        self.units = nn.Parameter(0.1 * torch.randn(units, width))
        self.gate = nn.Linear(width, units)
        self.score = nn.Sequential(
            nn.Linear(width + num_signals, width), nn.ReLU(), nn.Linear(width, 1)
        )
        nn.init.zeros_(self.score[-1].weight)
        nn.init.zeros_(self.score[-1].bias)
        self.width = width

    def forward(self, teacher: Tensor, student: Tensor, signals: Tensor) -> CoopOutput:
        t = self.norm_teacher(teacher.flatten(2).transpose(1, 2))  # [N, k^2, C]
        s = self.norm_student(student.flatten(2).transpose(1, 2))
        scale = 1.0 / math.sqrt(self.width)
        q = self.query(t) + self.position
        k = self.key(s) + self.position
        attention = torch.softmax(q @ k.transpose(1, 2) * scale, dim=-1)
        fused = self.teacher_in(t) + attention @ self.value(s)  # [N, k^2, d]
        unit_maps = torch.softmax(fused @ self.units.T, dim=1).transpose(1, 2)
        gates = torch.softmax(self.gate(fused.mean(dim=1)), dim=-1)  # [N, M]
        filters = (gates[:, :, None] * unit_maps).sum(dim=1)  # [N, k^2]
        pooled = (gates[:, :, None] * (unit_maps @ fused)).sum(dim=1)  # [N, d]
        logits = self.score(torch.cat([pooled, signals], dim=1)).squeeze(1)
        return CoopOutput(logits, filters, unit_maps)


def trust_target(lead: Tensor, tau: float) -> Tensor:
    """sigmoid(lead / tau) normalised over the last dimension."""
    trust = torch.sigmoid(lead.detach().float() / tau)
    return trust / trust.sum(dim=-1, keepdim=True).clamp_min(1e-12)


def filter_kl(filters: Tensor, target: Tensor) -> Tensor:
    """mean over instances of KL(r_i || pi_i), both [N, K] distributions."""
    log_pi = filters.clamp_min(1e-12).log()
    return (target * (target.clamp_min(1e-12).log() - log_pi)).sum(dim=1).mean()


def dice_overlap(unit_maps: Tensor) -> Tensor:
    """mean over instances and unit pairs m < m' of 2 <a_m, a_m'> / (|a_m|^2 + |a_m'|^2)."""
    units = unit_maps.shape[1]
    if units < 2:
        return unit_maps.sum() * 0
    inner = unit_maps @ unit_maps.transpose(1, 2)  # [N, M, M]
    norms = torch.diagonal(inner, dim1=1, dim2=2)
    dice = 2 * inner / (norms[:, :, None] + norms[:, None, :]).clamp_min(1e-12)
    pairs = torch.triu_indices(units, units, offset=1)
    return dice[:, pairs[0], pairs[1]].mean()


def filtered_instance_losses(
    errors: list[Tensor],
    masks: list[LevelMasks],
    boxes: Tensor,
    filters: Tensor,
    strides: list[int],
    mix: float,
    batch_size: int,
) -> Tensor:
    """[N] L~_fg_i: each instance's masks times its filter, sampled at every cell centre
    from its k x k grid (cells outside the box take the nearest grid value)."""
    n, cells = filters.shape
    size = int(round(math.sqrt(cells)))
    grid_maps = filters.reshape(n, 1, size, size)
    width_box = (boxes[:, 2] - boxes[:, 0]).clamp_min(1e-6)
    height_box = (boxes[:, 3] - boxes[:, 1]).clamp_min(1e-6)
    per_level = []
    for error, mask, stride in zip(errors, masks, strides, strict=True):
        height, width = error.shape[-2:]
        xs = (torch.arange(width, device=boxes.device, dtype=boxes.dtype) + 0.5) * stride
        ys = (torch.arange(height, device=boxes.device, dtype=boxes.dtype) + 0.5) * stride
        gx = 2 * (xs[None, :] - boxes[:, 0:1]) / width_box[:, None] - 1  # [N, W]
        gy = 2 * (ys[None, :] - boxes[:, 1:2]) / height_box[:, None] - 1  # [N, H]
        grid = torch.stack(
            [gx[:, None, :].expand(n, height, width), gy[:, :, None].expand(n, height, width)],
            dim=-1,
        )
        sampled = F.grid_sample(
            grid_maps, grid, mode="bilinear", padding_mode="border", align_corners=False
        )[:, 0]
        spatial = (1 - mix) + mix * cells * sampled
        per_level.append((mask.instance * spatial * error[mask.image_index]).sum(dim=(1, 2)))
    return torch.stack(per_level).sum(dim=0) / batch_size


class CoopLIAF(LIAF):
    """LIAF-KD with the cooperative instance filter (selector objective `coop`)."""

    def __init__(
        self,
        channels: int,
        num_levels: int,
        units: int = 4,
        target_tau: float = 0.1,
        filter_mix: float = 0.5,
        weight: float = 1.0,
        filter_weight: float = 1.0,
        diversity: float = 0.1,
        **liaf,
    ) -> None:
        liaf = liaf | {"objective": "joint"}
        if liaf.get("lam", 0.0) == 0:
            raise ValueError(
                "selector objective 'coop' at lam 0: every weight would be 1; set lam > 0"
            )
        super().__init__(channels, num_levels, **liaf)
        if units < 2 or target_tau <= 0 or not 0 <= filter_mix <= 1:
            raise ValueError(
                f"coop: units must be >= 2, target_tau > 0 and filter_mix in [0, 1], got "
                f"{units}, {target_tau}, {filter_mix}"
            )
        self.objective = "coop"
        self.target_tau = target_tau
        self.filter_mix = filter_mix
        self.coop_weight = weight
        self.filter_weight = filter_weight
        self.diversity = diversity
        self.selector = CoopSelector(channels, liaf.get("width", 64), units, self.roi_size)
        self.needs = frozenset({"feats", "instances", "head"})

    def forward(self, inputs: DistillInputs) -> dict[str, Tensor]:
        masks = self.masks(inputs)
        errors = self.level_errors(inputs)
        _, bg = fg_bg_losses(errors, masks, inputs.batch_size)
        weights, per_instance, terms = self._filter(inputs, masks, errors)
        return self.imitation_losses(inputs, weights * per_instance, bg) | terms

    def _filter(
        self, inputs: DistillInputs, masks: list[LevelMasks], errors: list[Tensor]
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """[N] weights, [N] filtered imitation terms, the selector's own loss terms."""
        boxes = inputs.all_boxes()
        if boxes.shape[0] == 0:
            zero = errors[0].new_zeros(())
            self.weight_log.record(inputs, errors[0].new_zeros(0), {})
            names = ("entropy", "coop", "coop_filter", "coop_diversity")
            return (
                errors[0].new_zeros(0),
                errors[0].new_zeros(0),
                {f"loss_liaf_{name}": zero for name in names},
            )
        view = coop_view(inputs, self.canonical_size, self.roi_size)
        out = self.selector(view.teacher, view.student, view.signals)
        weights = instance_weights(out.logits.detach(), self.lam, self.tau_w)
        per_instance = filtered_instance_losses(
            errors,
            masks,
            boxes,
            out.filters.detach(),
            inputs.strides,
            self.filter_mix,
            inputs.batch_size,
        )
        target = trust_target(view.lead, self.target_tau)
        cell_target = trust_target(view.lead_grid.flatten(1), self.target_tau)
        terms = {
            "loss_liaf_entropy": self.entropy_beta * entropy_term(out.logits, self.tau_w),
            "loss_liaf_coop": self.coop_weight * kl_to_target(out.logits, target, self.tau_w),
            "loss_liaf_coop_filter": self.filter_weight * filter_kl(out.filters, cell_target),
            "loss_liaf_coop_diversity": self.diversity * dice_overlap(out.unit_maps),
        }
        extra = {
            "logit": out.logits,
            "level": view.levels,
            "fg_loss": per_instance,
            "lead": view.lead,
            "target": target * target.numel(),
            "teacher_loss": inputs.teacher_instances.loss,
            "student_loss": inputs.student_instances.loss,
        }
        self.weight_log.record(inputs, weights, extra)
        return weights, per_instance, terms
