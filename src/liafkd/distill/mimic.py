"""Plain FitNet-style feature mimic on every FPN level: every cell counts the same."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from liafkd.distill.base import DistillInputs, DistillMethod


class FeatureMimic(DistillMethod):
    """weight * sum_l mean_{b,c,x,y} (F_T[l] - adapter(F_S[l]))^2."""

    needs = frozenset({"feats"})

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, inputs: DistillInputs) -> dict[str, Tensor]:
        total = sum(
            F.mse_loss(s.float(), t.float())
            for s, t in zip(inputs.student_feats, inputs.teacher_feats, strict=True)
        )
        return {"loss_mimic": self.weight * total}
