"""LIAF-KD's `meta` selector objective: learning to reweight, in its first-order form
(Ren et al. 2018, L2RW; Meta-Weight-Net, Shu et al. 2019; HKD, arXiv 2211.17059).

Which instances should the student imitate? Those whose imitation lowers its own
detection loss on other images. One virtual SGD step on the weighted imitation loss,
theta' = theta - eta * sum_i w_i grad L_fg_i, changes the detection loss on a held-out
batch V by
    L_det(V; theta') - L_det(V; theta) = -eta * sum_i w_i h_i + O(eta^2),
    h_i = <grad_theta L_det(V), grad_theta L_fg_i>,
so dL_det(V; theta') / dw_i = -eta * h_i: instance i helps when h_i > 0. L2RW's weights
are w_i proportional to max(0, h_i); the selector is trained toward that target (a KL
on its softmax, as `aligned` is toward its ranking), from the same descriptor as
always, so that it learns which instances help rather than memorising a batch.

Held-out batch: the step's images are split into two halves A and B, and each is the
held-out batch of the other. For an instance of A, h_i is the directional derivative
of L_fg_i (on A's images) along d = grad_theta L_det(B),
    h_i = d/dt L_fg_i(theta + t d) at t = 0,
theta being the feature parameters (backbone and neck; L_fg depends on no others),
computed exactly by forward-mode AD: one forward of A's images carrying tangents
(probe.py). The halves' L_fg_i divide by their own image count; h is rescaled to the
full batch's. A batch of one image has no held-out half: no target that step.

Cost of one meta step: the student's forward and backward on each half (about one
more student step) and one tangent-carrying feature forward per half (about two
backbone + neck forwards in all); `meta_every` spreads it over several steps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from liafkd.distill.base import DistillInputs
from liafkd.distill.probe import StudentProbe

InstanceLosses = Callable[[DistillInputs], Tensor]  # inputs -> [N] L_fg_i


def image_halves(batch_size: int) -> tuple[slice, slice]:
    cut = (batch_size + 1) // 2
    return slice(0, cut), slice(cut, batch_size)


def helpfulness(inputs: DistillInputs, instance_losses: InstanceLosses) -> Tensor | None:
    """[N] h_i of every instance (batch-wide order); None for a one-image batch."""
    inputs.require("student_probe")
    if inputs.batch_size < 2:
        return None
    halves = image_halves(inputs.batch_size)
    parts = [
        _half_helpfulness(inputs, instance_losses, half, other)
        for half, other in zip(halves, reversed(halves), strict=True)
    ]
    return torch.cat(parts)


def _half_helpfulness(
    inputs: DistillInputs, instance_losses: InstanceLosses, half: slice, other: slice
) -> Tensor:
    """h_i for the instances of the images in `half`, held out: the images in `other`."""
    probe: StudentProbe = inputs.student_probe
    targets = inputs.targets[half]
    if sum(len(t["boxes"]) for t in targets) == 0:
        return inputs.teacher_feats[0].new_zeros(0, dtype=torch.float32)
    teacher_feats = [t[half] for t in inputs.teacher_feats]

    def half_losses(student_feats: list[Tensor]) -> Tensor:
        half_inputs = DistillInputs(
            images_shape=inputs.images_shape,
            targets=targets,
            teacher_feats=teacher_feats,
            student_feats=student_feats,
            strides=inputs.strides,
        )
        return instance_losses(half_inputs)

    direction = probe.det_gradient(other)
    scores = probe.directional_derivative(half_losses, direction, half)
    return scores.float() * (len(targets) / inputs.batch_size)


def meta_target(scores: Tensor) -> Tensor | None:
    """L2RW's weights as a distribution, q_i = max(0, h_i) / sum_j max(0, h_j);
    None when no instance helps."""
    positive = scores.detach().float().clamp_min(0)
    total = positive.sum()
    return positive / total if total > 0 else None
