"""LD: Localization Distillation for GFL (Zheng et al., CVPR 2022).

At every student positive location p (student_assign.gt_index >= 0), for each box
edge e of the 4, with student / teacher edge logits s_pe, t_pe over reg_max + 1 bins:
    kl_pe = T^2 * mean_bins[ softmax(t_pe/T) * (log softmax(t_pe/T) - log softmax(s_pe/T)) ]
    loss  = weight * sum_p v_p * sum_e kl_pe / 4
v_p = the student's max class score at p (detached), as GFL weights its box losses,
times an optional per-location weight (LIAF+LD). This mirrors MMDetection's LDHead
(KL averaged over bins, avg_factor 4, not divided by the number of positives);
weight 0.25 and T = 10 are its defaults.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from liafkd.distill.base import DistillInputs, DistillMethod


def edge_distribution_kl(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """[P] per location: sum over the 4 edges of T^2 * bin-mean KL(teacher || student)."""
    num_locations, dims = student.shape
    bins = dims // 4
    s = student.float().reshape(num_locations * 4, bins)
    t = teacher.detach().float().reshape(num_locations * 4, bins)
    kl = F.kl_div(
        F.log_softmax(s / temperature, dim=1), F.softmax(t / temperature, dim=1), reduction="none"
    )
    return (kl.mean(dim=1) * temperature**2).reshape(num_locations, 4).sum(dim=1)


class LocalizationDistillation(DistillMethod):
    needs = frozenset({"head", "assign"})

    def __init__(
        self, weight: float = 0.25, temperature: float = 10.0, score_weighting: bool = True
    ) -> None:
        super().__init__()
        self.weight = weight
        self.temperature = temperature
        self.score_weighting = score_weighting

    def loss(self, inputs: DistillInputs, location_weights: Tensor | None = None) -> Tensor:
        """`location_weights`: optional [B, L] factor per location (flattened order)."""
        inputs.require("student_head", "teacher_head", "student_assign")
        student_box = inputs.student_head.flat_box()
        teacher_box = inputs.teacher_head.flat_box()
        if student_box.shape[-1] < 8 or student_box.shape[-1] % 4:
            raise ValueError(
                f"LD needs box-edge distributions (4 * (reg_max + 1) channels with reg_max >= 1), "
                f"got {student_box.shape[-1]} channels"
            )
        if teacher_box.shape != student_box.shape:
            raise ValueError(
                f"LD: teacher box outputs {tuple(teacher_box.shape)} differ from the "
                f"student's {tuple(student_box.shape)} (same reg_max and strides needed)"
            )
        positive = inputs.student_assign.gt_index >= 0
        weights = torch.ones_like(positive, dtype=torch.float32)
        if self.score_weighting:
            scores = inputs.student_head.flat_cls().detach().float().sigmoid()
            weights = scores.max(dim=-1).values
        if location_weights is not None:
            weights = weights * location_weights
        kl = edge_distribution_kl(student_box[positive], teacher_box[positive], self.temperature)
        return self.weight * (weights[positive] * kl).sum() / 4

    def forward(self, inputs: DistillInputs) -> dict[str, Tensor]:
        return {"loss_ld": self.loss(inputs)}
