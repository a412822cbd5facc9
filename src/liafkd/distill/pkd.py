"""PKD: feature distillation with Pearson correlation (Cao et al., NeurIPS 2022).

Each channel of the teacher's and of the adapted student's FPN features is
standardised over the batch and the level's cells (zero mean, unit std), then
    L = weight * sum_l mean_{b,c,x,y} (z_S - z_T)^2 / 2 = weight * sum_l mean_c (1 - r_lc)
r_lc being the Pearson correlation of channel c of level l between student and teacher
(the identity holds with the population std used here; eps aside). The loss ignores any
per-channel scale (> 0) and shift of either side, so the student matches the teacher's
pattern, not its magnitudes. Weight 6 is the PKD and CrossKD+PKD default.

The std is the population one (the reference uses Bessel's correction, a factor
sqrt(M / (M - 1)) for M cells per channel), so that a channel with a single cell (batch 1,
1x1 P7) standardises to 0 rather than NaN.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from liafkd.distill.base import DistillInputs, DistillMethod

STD_EPS = 1e-6  # added to the std, as the reference


def channel_moments(feat: Tensor) -> tuple[Tensor, Tensor]:
    """[B, C, H, W] -> per-channel mean and population std over (B, H, W), [1, C, 1, 1]."""
    feat = feat.float()
    dims = (0, 2, 3)
    return feat.mean(dim=dims, keepdim=True), feat.std(dim=dims, keepdim=True, correction=0)


def standardize_channels(feat: Tensor) -> Tensor:
    """Each channel shifted and scaled to mean 0, std 1 over (B, H, W)."""
    mean, std = channel_moments(feat)
    return (feat.float() - mean) / (std + STD_EPS)


def pearson_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """mean (z_S - z_T)^2 / 2 over one level; teacher detached."""
    if student.shape != teacher.shape:
        raise ValueError(
            f"PKD: student features {tuple(student.shape)} differ from the teacher's "
            f"{tuple(teacher.shape)}"
        )
    return F.mse_loss(standardize_channels(student), standardize_channels(teacher.detach())) / 2


class PKD(DistillMethod):
    needs = frozenset({"feats"})

    def __init__(self, weight: float = 6.0) -> None:
        super().__init__()
        self.weight = weight

    def loss(self, inputs: DistillInputs) -> Tensor:
        return self.weight * sum(
            pearson_loss(s, t)
            for s, t in zip(inputs.student_feats, inputs.teacher_feats, strict=True)
        )

    def forward(self, inputs: DistillInputs) -> dict[str, Tensor]:
        return {"loss_pkd": self.loss(inputs)}
