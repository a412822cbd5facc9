"""AID: Adaptive Instance Distillation (Lan & Tian, 2022).

Instances the teacher predicts well (low teacher loss) are trusted more:
    w_i = N * softmax_i(-L_T_i / T) = exp(-L_T_i / T) / mean_j exp(-L_T_j / T)
over the N instances of the batch, so the weights average 1 and their order is the
reverse of the teacher losses'. An instance the teacher assigned no location to has
no teacher loss (InstanceState reports 0): it gets the mean loss of the assigned ones,
i.e. a neutral weight, instead of the top weight a literal 0 would give.

The weights scale FGD-style per-instance foreground terms; background, attention and
(optional) global terms are FGD's:
    L = alpha * sum_i w_i * L_fg_i + beta * bg + gamma * att + lambda * glb
with L_fg_i = sum_l sum_xy m_il * E_l / B (see fgd.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from liafkd.distill.base import DistillInputs, WeightLog, WeightLogged
from liafkd.distill.fgd import FocalImitation, build_level_masks, fg_bg_losses, instance_losses


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


class AID(WeightLogged, FocalImitation):
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
        weight_temperature: float = 1.0,
    ) -> None:
        super().__init__(channels, num_levels, temperature, gaussian_masks, lambda_global > 0)
        self.alpha_fg = alpha_fg
        self.beta_bg = beta_bg
        self.gamma_att = gamma_att
        self.lambda_global = lambda_global
        self.weight_temperature = weight_temperature
        self.weight_log = WeightLog()

    def forward(self, inputs: DistillInputs) -> dict[str, Tensor]:
        inputs.require("teacher_instances")
        teacher = inputs.teacher_instances
        masks = build_level_masks(inputs, self.gaussian_masks)
        errors = self.level_errors(inputs)
        _, bg = fg_bg_losses(errors, masks, inputs.batch_size)
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
        losses = {
            "loss_aid_fg": self.alpha_fg * (weights * per_instance).sum(),
            "loss_aid_bg": self.beta_bg * bg,
            "loss_aid_att": self.gamma_att * self.attention_term(inputs),
        }
        if self.lambda_global > 0:
            losses["loss_aid_global"] = self.lambda_global * self.global_term(inputs)
        return losses
