"""LIAF-KD: FGD-style focal imitation with learned per-instance weights.

    L = alpha * sum_i w_i * L_fg_i + beta_bg * bg + gamma * att (+ delta * glb)
        + beta_entropy * sum_i p_i log p_i (+ align_weight * L_align, `aligned` only)
        (+ meta_weight * L_meta, `meta` only)
        (+ sum over LD positives of w_{instance of p} * LD_p, `liaf+ld` only)
        (+ CrossKD's qfl and kl with w_{instance of p} at each location p assigned to
           an instance, 1 elsewhere, `liaf+crosskd` only; crosskd.py)
L_fg_i, bg, att, glb as in fgd.py; w_i, p_i from the selector (selector.py).

At lam 0 (the shipped default) every w_i is exactly 1 whatever the selector says, so no
selector is built: no descriptors, RoIAligns, MLP, entropy term or weight log. LIAF-KD
is then FGD's focal imitation with the foreground term summed over instances (FGD
max-pools their masks) and without FGD's global term unless delta_global > 0.
`aligned` and `meta` at lam 0 would pay extra passes for nothing and are refused.

How the selector learns (`objective`):
  joint        w_i carries the selector's graph: it is trained on the same total loss.
               An ablation, degenerate by construction: d(sum_i w_i L_i)/dz_i is
               proportional to p_i (L_i - mean L), so it moves weight to the instances
               with the smallest imitation loss (the entropy term only resists collapse).
  adversarial  a gradient-reversal layer sits between the logits and the weights, so
               the selector maximises the weighted imitation loss while the student
               minimises it; the entropy term is computed before the reversal.
  aligned      the weights are detached; the selector is pulled (ListNet KL) toward the
               ranking of r_i = <dL_det/dF_S, dL_fg_i/dF_S> (needs det_grads): imitating
               i lowers the detection loss to first order when r_i > 0.
  meta         the weights are detached; the selector is pulled (KL) toward L2RW's
               weights q_i proportional to max(0, h_i), h_i = <grad_theta L_det(held-out
               images), grad_theta L_fg_i>, from extra student forwards every
               `meta_every` calls (meta.py; needs student_probe).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from liafkd.distill.base import DistillInputs, WeightLog, WeightLogged
from liafkd.distill.crosskd import CrossKD
from liafkd.distill.fgd import FocalImitation, fg_bg_losses, instance_losses
from liafkd.distill.ld import LocalizationDistillation
from liafkd.distill.masks import LevelMasks, MaskRule
from liafkd.distill.meta import helpfulness, meta_target
from liafkd.distill.selector import (
    InstanceSelector,
    alignment_scores,
    build_descriptors,
    entropy_term,
    grad_reverse,
    instance_weights,
    kl_to_target,
    listwise_alignment_loss,
)

Objective = Literal["joint", "adversarial", "aligned", "meta"]


class LIAF(WeightLogged, FocalImitation):
    def __init__(
        self,
        channels: int,
        num_levels: int,
        alpha_fg: float = 1e-3,
        beta_bg: float = 5e-4,
        gamma_att: float = 5e-4,
        delta_global: float = 0.0,
        temperature: float = 0.5,
        gaussian_masks: bool = False,
        mask_rule: MaskRule = "fgd",
        lam: float = 0.0,
        tau_w: float = 1.0,
        width: int = 64,
        objective: Objective = "joint",
        entropy_beta: float = 0.01,
        grl_scale: float = 1.0,
        align_weight: float = 1.0,
        align_tau: float = 1.0,
        meta_weight: float = 1.0,
        meta_every: int = 1,
        canonical_size: float = 224.0,
        roi_size: int = 7,
        ld: LocalizationDistillation | None = None,
        crosskd: CrossKD | None = None,
    ) -> None:
        super().__init__(
            channels, num_levels, temperature, gaussian_masks, delta_global > 0, mask_rule
        )
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"selector lam must be in [0, 1], got {lam}")
        if meta_every < 1:
            raise ValueError(f"meta_every must be >= 1, got {meta_every}")
        if lam == 0 and objective in ("aligned", "meta"):
            raise ValueError(
                f"selector objective {objective!r} at lam 0: the weights are uniform, so its "
                "extra passes would change nothing; set lam > 0 or objective 'joint'"
            )
        self.alpha_fg = alpha_fg
        self.beta_bg = beta_bg
        self.gamma_att = gamma_att
        self.delta_global = delta_global
        self.lam = lam
        self.tau_w = tau_w
        self.objective = objective
        self.entropy_beta = entropy_beta
        self.grl_scale = grl_scale
        self.align_weight = align_weight
        self.align_tau = align_tau
        self.meta_weight = meta_weight
        self.meta_every = meta_every
        self._meta_calls = 0
        self.canonical_size = canonical_size
        self.roi_size = roi_size
        # lam 0: w_i = 1 whatever the logits, so the selector is not built (no parameters)
        self.selector = InstanceSelector(channels, width) if lam > 0 else None
        self.ld = ld
        needs = {"feats", "instances"} if self.selector is not None else {"feats"}
        if objective == "aligned":
            needs.add("det_grads")
        if objective == "meta":
            needs.add("student_probe")
        if ld is not None:
            needs |= {"head", "assign"}
        self.crosskd = crosskd
        if crosskd is not None:
            needs |= crosskd.needs
            self.branch_cut = crosskd.branch_cut
        self.needs = frozenset(needs)
        self.weight_log = WeightLog()

    def forward(self, inputs: DistillInputs) -> dict[str, Tensor]:
        masks = self.masks(inputs)
        errors = self.level_errors(inputs)
        _, bg = fg_bg_losses(errors, masks, inputs.batch_size)
        per_instance = instance_losses(errors, masks, inputs.batch_size)
        weights, selector_terms = self._select(inputs, masks, per_instance)
        losses = self.imitation_losses(inputs, weights * per_instance, bg) | selector_terms
        # lam 0: every weight is 1, so LD and CrossKD run as they do alone
        location_weights = None
        if self.selector is not None and (self.ld is not None or self.crosskd is not None):
            location_weights = self._location_weights(inputs, weights)
        if self.ld is not None:
            losses["loss_liaf_ld"] = self.ld.loss(inputs, location_weights)
        if self.crosskd is not None:
            losses.update(self.crosskd.prediction_losses(inputs, location_weights))
        return losses

    def imitation_losses(
        self, inputs: DistillInputs, weighted_fg: Tensor, bg: Tensor
    ) -> dict[str, Tensor]:
        """The fg (per-instance terms already weighted), bg, attention and global terms."""
        losses = {
            "loss_liaf_fg": self.alpha_fg * weighted_fg.sum(),
            "loss_liaf_bg": self.beta_bg * bg,
            "loss_liaf_att": self.gamma_att * self.attention_term(inputs),
        }
        if self.delta_global > 0:
            losses["loss_liaf_global"] = self.delta_global * self.global_term(inputs)
        return losses

    def _select(
        self, inputs: DistillInputs, masks: list[LevelMasks], per_instance: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Weights for the imitation terms and the selector's own loss terms."""
        if self.selector is None:  # lam 0: uniform weights, no selector terms, no log
            return torch.ones_like(per_instance), {}
        zero = per_instance.new_zeros(())
        terms = {"loss_liaf_entropy": zero}
        if self.objective == "aligned":
            terms["loss_liaf_align"] = zero
        if self.objective == "meta":
            terms["loss_liaf_meta"] = zero
        if per_instance.numel() == 0:
            weights = per_instance.new_zeros(0)
            self.weight_log.record(inputs, weights, {})
            return weights, terms
        desc = build_descriptors(inputs, self.canonical_size, self.roi_size)
        if desc.teacher.shape[0] != per_instance.numel():
            raise ValueError(
                f"LIAF: {desc.teacher.shape[0]} instance states for {per_instance.numel()} boxes"
            )
        logits = self.selector(desc)
        terms["loss_liaf_entropy"] = self.entropy_beta * entropy_term(logits, self.tau_w)
        extra = {
            "logit": logits,
            "level": desc.levels,
            "fg_loss": per_instance,
            "teacher_loss": inputs.teacher_instances.loss,
            "student_loss": inputs.student_instances.loss,
        }
        if self.objective == "joint":
            weights = instance_weights(logits, self.lam, self.tau_w)
        elif self.objective == "adversarial":
            weights = instance_weights(grad_reverse(logits, self.grl_scale), self.lam, self.tau_w)
        elif self.objective == "aligned":
            weights = instance_weights(logits.detach(), self.lam, self.tau_w)
            scores = alignment_scores(inputs, masks, self.temperature)
            terms["loss_liaf_align"] = self.align_weight * listwise_alignment_loss(
                logits, scores, self.tau_w, self.align_tau
            )
            extra["alignment"] = scores
        else:
            weights = instance_weights(logits.detach(), self.lam, self.tau_w)
            terms["loss_liaf_meta"], scores = self._meta_term(inputs, logits)
            if scores is not None:
                extra["helpfulness"] = scores
        self.weight_log.record(inputs, weights, extra)
        return weights, terms

    def _meta_term(self, inputs: DistillInputs, logits: Tensor) -> tuple[Tensor, Tensor | None]:
        """meta_weight * KL(q || p) toward L2RW's weights, and the h_i it came from; 0
        (with the selector's graph) on the calls between meta steps, for a one-image
        batch and when no instance helps."""
        due = self._meta_calls % self.meta_every == 0
        self._meta_calls += 1
        scores = helpfulness(inputs, self._instance_losses) if due else None
        target = None if scores is None else meta_target(scores)
        if target is None:
            return logits.sum() * 0, scores
        return self.meta_weight * kl_to_target(logits, target, self.tau_w), scores

    def _instance_losses(self, inputs: DistillInputs) -> Tensor:
        """[N] L_fg_i on `inputs`, as forward computes it."""
        masks = self.masks(inputs)
        return instance_losses(self.level_errors(inputs), masks, inputs.batch_size)

    @staticmethod
    def _location_weights(inputs: DistillInputs, weights: Tensor) -> Tensor:
        """[B, L] the weight of the instance each location is assigned to (1 elsewhere)."""
        inputs.require("student_assign")
        gt_index = inputs.student_assign.gt_index
        padded = torch.cat([weights, weights.new_ones(1)])
        return padded[torch.where(gt_index >= 0, gt_index, weights.numel())]
