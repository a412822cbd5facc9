"""AID: Adaptive Instance Distillation (Lan & Tian, 2022), two forms.

`aid`, as its authors' code weighs it: FGD per FPN level, the level's foreground term
scaled by exp(-loss_scale * L_T,l) (loss_scale 0.1), not normalised, where L_T,l is the
teacher's detection loss on level l: the head loss of the teacher's positive locations
on that level (InstanceState.level_loss summed over instances), over the batch's
positive count, so the levels add up to the teacher's mean loss per positive (the
negatives' share of the quality focal loss is not split by level and stays out). A level
the teacher handles well keeps nearly its FGD weight; one it gets wrong is damped:
    L = alpha * sum_l exp(-loss_scale * L_T,l) * fg_l + beta * bg + gamma * att + lambda * glb
Each instance's logged weight is its effective factor sum_l w_l L_fg_il / sum_l L_fg_il.

`aid-instance`, the per-instance form used before: instances the teacher predicts well
(low teacher loss) are trusted more,
    w_i = N * softmax_i(-L_T_i / T) = exp(-L_T_i / T) / mean_j exp(-L_T_j / T)
over the N instances of the batch, so the weights average 1 and their order is the
reverse of the teacher losses'. An instance the teacher assigned no location to has
no teacher loss (InstanceState reports 0): it gets the mean loss of the assigned ones,
i.e. a neutral weight, instead of the top weight a literal 0 would give.
    L = alpha * sum_i w_i * L_fg_i + beta * bg + gamma * att + lambda * glb
with L_fg_i = sum_l sum_xy m_il * E_l / B (see fgd.py).

Background, attention and (optional) global terms are FGD's in both.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from liafkd.distill.base import DistillInputs, WeightLog, WeightLogged
from liafkd.distill.fgd import FocalImitation, fg_bg_losses, instance_losses
from liafkd.distill.masks import LevelMasks, MaskRule
from liafkd.models.outputs import InstanceState


def teacher_trust_weights(teacher_loss: Tensor, num_pos: Tensor, temperature: float) -> Tensor:
    """[N] w_i = N * softmax(-L_T_i / T); unassigned instances get the mean loss."""
    if teacher_loss.numel() == 0:
        return teacher_loss.new_zeros(0)
    loss = teacher_loss.detach().float()
    assigned = num_pos > 0
    if assigned.any():
        loss = torch.where(assigned, loss, loss[assigned].mean())
    else:
        loss = torch.zeros_like(loss)
    return loss.numel() * torch.softmax(-loss / temperature, dim=0)


def teacher_level_losses(teacher: InstanceState) -> Tensor:
    """[num_levels] L_T,l: the teacher's positive-location loss per level / positives."""
    positives = teacher.num_pos.sum().clamp_min(1)
    return teacher.level_loss.detach().float().sum(dim=0) / positives


def level_trust_weights(teacher: InstanceState, loss_scale: float) -> Tensor:
    """[num_levels] w_l = exp(-loss_scale * L_T,l), in (0, 1], not normalised."""
    return torch.exp(-loss_scale * teacher_level_losses(teacher))


class _AIDBase(WeightLogged, FocalImitation):
    """FGD's terms with the foreground weighted from the teacher's losses."""

    needs = frozenset({"feats", "instances"})

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
        self.weight_log = WeightLog()

    def weighted_fg(
        self, inputs: DistillInputs, errors: list[Tensor], masks: list[LevelMasks]
    ) -> Tensor:
        raise NotImplementedError

    def forward(self, inputs: DistillInputs) -> dict[str, Tensor]:
        inputs.require("teacher_instances")
        masks = self.masks(inputs)
        errors = self.level_errors(inputs)
        _, bg = fg_bg_losses(errors, masks, inputs.batch_size)
        losses = {
            "loss_aid_fg": self.alpha_fg * self.weighted_fg(inputs, errors, masks),
            "loss_aid_bg": self.beta_bg * bg,
            "loss_aid_att": self.gamma_att * self.attention_term(inputs),
        }
        if self.lambda_global > 0:
            losses["loss_aid_global"] = self.lambda_global * self.global_term(inputs)
        return losses


class AID(_AIDBase):
    """`aid`: per-level weights exp(-loss_scale * L_T,l) on FGD's foreground terms."""

    def __init__(
        self, channels: int, num_levels: int, loss_scale: float = 0.1, **fgd_terms: Any
    ) -> None:
        super().__init__(channels, num_levels, **fgd_terms)
        self.loss_scale = loss_scale

    def weighted_fg(
        self, inputs: DistillInputs, errors: list[Tensor], masks: list[LevelMasks]
    ) -> Tensor:
        teacher = inputs.teacher_instances
        level_weights = level_trust_weights(teacher, self.loss_scale)
        if level_weights.numel() != len(errors):
            raise ValueError(
                f"AID: the teacher's losses cover {level_weights.numel()} levels, "
                f"the features {len(errors)}"
            )
        fg_per_level = [
            (m.fg * e).sum() / inputs.batch_size for e, m in zip(errors, masks, strict=True)
        ]
        self._record(inputs, errors, masks, level_weights)
        return sum(w * fg for w, fg in zip(level_weights, fg_per_level, strict=True))

    def _record(
        self,
        inputs: DistillInputs,
        errors: list[Tensor],
        masks: list[LevelMasks],
        level_weights: Tensor,
    ) -> None:
        """Log each instance's effective weight sum_l w_l L_fg_il / sum_l L_fg_il."""
        per_level = torch.stack(
            [
                (m.instance * e.detach()[m.image_index]).sum(dim=(1, 2))
                for e, m in zip(errors, masks, strict=True)
            ],
            dim=1,
        )
        total = per_level.sum(dim=1)
        weighted = (per_level * level_weights[None, :]).sum(dim=1)
        effective = torch.where(total > 0, weighted / total.clamp_min(1e-12), level_weights.mean())
        teacher = inputs.teacher_instances
        self.weight_log.record(
            inputs, effective, {"teacher_loss": teacher.loss, "fg_loss": total / inputs.batch_size}
        )


class AIDInstance(_AIDBase):
    """`aid-instance`: per-instance weights N * softmax(-L_T_i / T)."""

    def __init__(
        self, channels: int, num_levels: int, weight_temperature: float = 1.0, **fgd_terms: Any
    ) -> None:
        super().__init__(channels, num_levels, **fgd_terms)
        self.weight_temperature = weight_temperature

    def weighted_fg(
        self, inputs: DistillInputs, errors: list[Tensor], masks: list[LevelMasks]
    ) -> Tensor:
        teacher = inputs.teacher_instances
        per_instance = instance_losses(errors, masks, inputs.batch_size)
        weights = teacher_trust_weights(teacher.loss, teacher.num_pos, self.weight_temperature)
        if weights.numel() != per_instance.numel():
            raise ValueError(
                f"AID: teacher_instances has {weights.numel()} instances, "
                f"targets have {per_instance.numel()}"
            )
        self.weight_log.record(
            inputs, weights, {"teacher_loss": teacher.loss, "fg_loss": per_instance}
        )
        return (weights * per_instance).sum()
