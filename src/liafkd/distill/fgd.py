"""FGD: Focal and Global Distillation (Yang et al., CVPR 2022), and the focal
machinery that AID and LIAF-KD reuse.

Per level l, with teacher attention A_sp (cells) and A_ch (channels) and
E_l(b, x, y) = A_sp(b, x, y) * sum_c A_ch(b, c) * (F_T - F_S)^2(b, c, x, y):
  fg  = sum_l sum_{b,x,y} M_fg * E_l / B     (M_fg: max over instances of 1/(h*w) masks)
  bg  = sum_l sum_{b,x,y} M_bg * E_l / B     (M_bg: uncovered cells / their count)
  att = sum_l (|A_sp^S - A_sp^T|_1 + |A_ch^S - A_ch^T|_1) / B
  glb = sum_l |GcBlock_S(F_S) - GcBlock_T(F_T)|^2 / B
  L = alpha * fg + beta * bg + gamma * att + lambda * glb
Defaults are FGD's RetinaNet/GFL settings (alpha 1e-3, beta 5e-4, gamma 5e-4,
lambda 5e-6, tau 0.5) and FGD's mask rule (`mask_rule` "fgd", masks.py; "center" is the
cell-centre rule used before). One GcBlock pair per level, trained with the student.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from liafkd.distill.attention import (
    GlobalRelation,
    attention_loss,
    channel_attention,
    global_loss,
    spatial_attention,
)
from liafkd.distill.base import DistillInputs, DistillMethod
from liafkd.distill.masks import LevelMasks, MaskRule, level_masks


def imitation_errors(student: Tensor, teacher: Tensor, tau: float) -> Tensor:
    """[B, H, W] E = A_sp^T * sum_c A_ch^T * (F_T - F_S)^2."""
    a_sp = spatial_attention(teacher, tau)
    a_ch = channel_attention(teacher, tau)
    sq = (teacher.float() - student.float()).pow(2)
    return (sq * a_ch[:, :, None, None]).sum(dim=1) * a_sp


def build_level_masks(
    inputs: DistillInputs, gaussian: bool, rule: MaskRule = "fgd"
) -> list[LevelMasks]:
    boxes = inputs.all_boxes()
    image_index = inputs.image_index()
    return [
        level_masks(
            boxes,
            image_index,
            inputs.batch_size,
            stride,
            f.shape[2],
            f.shape[3],
            gaussian,
            rule,
            inputs.images_shape,
        )
        for f, stride in zip(inputs.teacher_feats, inputs.strides, strict=True)
    ]


def fg_bg_losses(
    errors: list[Tensor], masks: list[LevelMasks], batch_size: int
) -> tuple[Tensor, Tensor]:
    fg = sum((m.fg * e).sum() for e, m in zip(errors, masks, strict=True)) / batch_size
    bg = sum((m.bg * e).sum() for e, m in zip(errors, masks, strict=True)) / batch_size
    return fg, bg


def instance_losses(errors: list[Tensor], masks: list[LevelMasks], batch_size: int) -> Tensor:
    """[N] L_fg_i = sum_l sum_xy m_il * E_l(image of i) / B."""
    per_level = [
        (m.instance * e[m.image_index]).sum(dim=(1, 2)) for e, m in zip(errors, masks, strict=True)
    ]
    return torch.stack(per_level).sum(dim=0) / batch_size


class FocalImitation(DistillMethod):
    """Shared parts of FGD, AID and LIAF: masks, attention-weighted errors,
    attention loss and the optional global relation loss."""

    needs = frozenset({"feats"})

    def __init__(
        self,
        channels: int,
        num_levels: int,
        temperature: float = 0.5,
        gaussian_masks: bool = False,
        use_global: bool = True,
        mask_rule: MaskRule = "fgd",
    ) -> None:
        super().__init__()
        self.temperature = temperature
        self.gaussian_masks = gaussian_masks
        self.mask_rule = mask_rule
        self.relations_student: nn.ModuleList | None = None
        self.relations_teacher: nn.ModuleList | None = None
        if use_global:
            self.relations_student = nn.ModuleList(
                GlobalRelation(channels) for _ in range(num_levels)
            )
            self.relations_teacher = nn.ModuleList(
                GlobalRelation(channels) for _ in range(num_levels)
            )

    def masks(self, inputs: DistillInputs) -> list[LevelMasks]:
        return build_level_masks(inputs, self.gaussian_masks, self.mask_rule)

    def level_errors(self, inputs: DistillInputs) -> list[Tensor]:
        return [
            imitation_errors(s, t, self.temperature)
            for s, t in zip(inputs.student_feats, inputs.teacher_feats, strict=True)
        ]

    def attention_term(self, inputs: DistillInputs) -> Tensor:
        return sum(
            attention_loss(s, t, self.temperature)
            for s, t in zip(inputs.student_feats, inputs.teacher_feats, strict=True)
        )

    def global_term(self, inputs: DistillInputs) -> Tensor:
        if self.relations_student is None or self.relations_teacher is None:
            raise RuntimeError("global term requested but the method was built without it")
        return sum(
            global_loss(s, t, rs, rt)
            for s, t, rs, rt in zip(
                inputs.student_feats,
                inputs.teacher_feats,
                self.relations_student,
                self.relations_teacher,
                strict=True,
            )
        )


class FGD(FocalImitation):
    def __init__(
        self,
        channels: int,
        num_levels: int,
        alpha_fg: float = 1e-3,
        beta_bg: float = 5e-4,
        gamma_att: float = 5e-4,
        lambda_global: float = 5e-6,
        temperature: float = 0.5,
        gaussian_masks: bool = False,
        mask_rule: MaskRule = "fgd",
    ) -> None:
        super().__init__(
            channels, num_levels, temperature, gaussian_masks, lambda_global > 0, mask_rule
        )
        self.alpha_fg = alpha_fg
        self.beta_bg = beta_bg
        self.gamma_att = gamma_att
        self.lambda_global = lambda_global

    def forward(self, inputs: DistillInputs) -> dict[str, Tensor]:
        masks = self.masks(inputs)
        fg, bg = fg_bg_losses(self.level_errors(inputs), masks, inputs.batch_size)
        losses = {
            "loss_fgd_fg": self.alpha_fg * fg,
            "loss_fgd_bg": self.beta_bg * bg,
            "loss_fgd_att": self.gamma_att * self.attention_term(inputs),
        }
        if self.lambda_global > 0:
            losses["loss_fgd_global"] = self.lambda_global * self.global_term(inputs)
        return losses
