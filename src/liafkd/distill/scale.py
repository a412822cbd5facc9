"""Scale-free imitation: feature terms compare F_T / s_l and F_S / s_l.

Nothing anchors an FPN's output magnitude (the head's GroupNorm hides it from the
detection loss), so a trained teacher's features may have any RMS per level (3-11 on
the CPU bench teachers). Squared errors grow with its square, FGD's teacher attention
(softmax of mean |F| / 0.5) saturates onto a few cells and one channel, and the
published loss weights, set for O(1) features, no longer mean what they were set for.

Dividing both sides by s_l = sqrt(mean(F_T[l]^2)) (the teacher's RMS over the batch on
level l, detached: a constant, not a path for gradients) makes every feature term the
same for features of any scale, so the published weights apply unchanged. The student
is pulled toward F_T exactly as before, up to the factor 1 / s_l^2 on its gradient.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

FeatureNorm = Literal["teacher_rms", "none"]

RMS_FLOOR = 1e-6  # an all-zero teacher level stays finite


def teacher_rms(teacher_feats: list[Tensor]) -> list[Tensor]:
    """Per level, the teacher's detached RMS over (B, C, H, W), a 0-dim tensor."""
    return [f.detach().float().pow(2).mean().sqrt().clamp_min(RMS_FLOOR) for f in teacher_feats]


def level_scales(teacher_feats: list[Tensor], mode: FeatureNorm) -> list[Tensor] | None:
    """The divisor of each level under `mode`; None for raw features."""
    if mode == "none":
        return None
    if mode == "teacher_rms":
        return teacher_rms(teacher_feats)
    raise ValueError(f"unknown feature_norm {mode!r} (teacher_rms | none)")


def divide_levels(feats: list[Tensor], scales: list[Tensor]) -> list[Tensor]:
    return [f / s.to(f.dtype) for f, s in zip(feats, scales, strict=True)]


def effective_count(logits: Tensor) -> Tensor:
    """exp(entropy) of softmax over the last dim: how many entries a softmax really
    uses (N when uniform, 1 when all its mass is on one entry)."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    return torch.exp(-(log_p.exp() * log_p).sum(dim=-1))
