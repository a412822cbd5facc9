"""Distiller: the training-only module that holds the adapters and the method.

Per step the engine runs the student (with graph) and the frozen teacher (eval mode,
under torch.no_grad) through `forward_train` on the same batch, then:

    losses = distiller(student_out, teacher_out, targets, images_shape, strides,
                       det_loss=sum(student_out.losses.values()),  # det_loss: aligned only
                       probe=StudentProbe(student, images, targets))  # probe: meta only
    total = sum(student_out.losses.values()) + sum(losses.values())

`distiller.parameters()` (adapters, GcBlocks, selector) train with the student's
optimizer; none of it is part of the exported student.

Feature methods see normalised features: with `feature_norm` "teacher_rms" (the
default) the teacher's and the (adapted) student's FPN features are both divided by the
teacher's detached per-level RMS (scale.py). Adapters exist only where the student's
FPN width differs from the teacher's (`adapter` "auto", as FGD), or always ("always").

Methods that run the student's head features through the teacher's head (CrossKD)
need two more things: `forward_train(..., branch_cut=distiller.branch_cut)` on both
detectors (so the heads keep their branch features), and the teacher's head module,
given as `teacher_head`; the Distiller holds it as a plain reference, outside
`parameters()` and `state_dict()`, and freezes its weights.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from liafkd.distill.adapters import Adapters
from liafkd.distill.base import KNOWN_NEEDS, DistillInputs, DistillMethod, HeadPair
from liafkd.distill.config import DistillConfig
from liafkd.distill.probe import StudentProbe
from liafkd.distill.registry import build_method
from liafkd.distill.scale import FeatureNorm, divide_levels, level_scales
from liafkd.models.outputs import BranchFeats, DetectorOutput, InstanceState


class Distiller(nn.Module):
    def __init__(
        self,
        method: DistillMethod,
        student_channels: int,
        teacher_channels: int,
        num_levels: int,
        teacher_head: nn.Module | None = None,
        feature_norm: FeatureNorm = "teacher_rms",
        adapter: Literal["auto", "always"] = "auto",
    ) -> None:
        super().__init__()
        unknown = method.needs - KNOWN_NEEDS
        if unknown:
            raise ValueError(f"{type(method).__name__} needs unknown inputs {sorted(unknown)}")
        self.method = method
        self.feature_norm = feature_norm
        self.adapters: Adapters | None = None
        widths_differ = student_channels != teacher_channels
        if "feats" in method.needs and (widths_differ or adapter == "always"):
            self.adapters = Adapters(student_channels, teacher_channels, num_levels)
        if "teacher_head_module" in method.needs:
            if teacher_head is None:
                raise ValueError(f"{type(method).__name__} needs teacher_head (the teacher's head)")
            teacher_head.requires_grad_(False)
        object.__setattr__(self, "teacher_head", teacher_head)  # not a submodule

    @property
    def needs(self) -> frozenset[str]:
        return self.method.needs

    @property
    def branch_cut(self) -> int | None:
        """Pass as forward_train(..., branch_cut=) to student and teacher; None: not needed."""
        return self.method.branch_cut if "head_branches" in self.needs else None

    def build_inputs(
        self,
        student: DetectorOutput,
        teacher: DetectorOutput,
        targets: list[dict[str, Tensor]],
        images_shape: tuple[int, int],
        strides: list[int],
        det_loss: Tensor | None = None,
        probe: StudentProbe | None = None,
    ) -> DistillInputs:
        needs = self.needs
        teacher_feats = [f.detach() for f in teacher.feats]
        student_feats = self.adapters(student.feats) if self.adapters is not None else student.feats
        scales = level_scales(teacher_feats, self.feature_norm) if "feats" in needs else None
        if scales is not None:
            teacher_feats = divide_levels(teacher_feats, scales)
            student_feats = divide_levels(student_feats, scales)
        inputs = DistillInputs(
            images_shape=tuple(images_shape),
            targets=targets,
            teacher_feats=teacher_feats,
            student_feats=student_feats,
            strides=list(strides),
        )
        if "head" in needs:
            inputs.teacher_head = teacher.head.detach()
            inputs.student_head = student.head
        if "assign" in needs:
            inputs.student_assign = student.assign
        if "instances" in needs:
            inputs.teacher_instances = _detached_state(teacher.instances)
            inputs.student_instances = _detached_state(student.instances)
        if "det_grads" in needs:
            inputs.det_grads = self._det_grads(student.feats, det_loss)
            if scales is not None:  # dF_norm = dF_adapted / s: keep the raw inner product
                inputs.det_grads = divide_levels(inputs.det_grads, scales)
        if "head_branches" in needs:
            inputs.student_branches = self._branches(student.branches, "student")
            inputs.teacher_branches = self._branches(teacher.branches, "teacher").detach()
        if "teacher_head_module" in needs:
            inputs.teacher_head_module = self.teacher_head
        if "student_probe" in needs:
            inputs.student_probe = self._probe(probe, scales)
        return inputs

    def _probe(self, probe: StudentProbe | None, scales: list[Tensor] | None) -> StudentProbe:
        """`probe` with the student's features mapped as student_feats are."""
        if probe is None:
            raise ValueError(f"{type(self.method).__name__} needs probe (student and batch)")

        def to_method_space(feats: list[Tensor]) -> list[Tensor]:
            feats = self.adapters(feats) if self.adapters is not None else feats
            return divide_levels(feats, scales) if scales is not None else feats

        return probe.in_method_space(to_method_space)

    def _branches(self, branches: BranchFeats | None, who: str) -> BranchFeats:
        if branches is None or branches.cut != self.branch_cut:
            raise ValueError(
                f"{type(self.method).__name__} needs the {who}'s head branch features: run "
                f"forward_train(..., branch_cut={self.branch_cut})"
            )
        return branches

    def _det_grads(self, feats: list[Tensor], det_loss: Tensor | None) -> list[Tensor]:
        """dL_det / dF_S (raw student features), mapped through the adapters."""
        if det_loss is None:
            raise ValueError("this method needs det_loss (the student's detection loss)")
        grads = torch.autograd.grad(det_loss, feats, retain_graph=True, allow_unused=True)
        grads = [
            torch.zeros_like(f) if g is None else g.detach()
            for f, g in zip(feats, grads, strict=True)
        ]
        return self.adapters.map_gradients(grads) if self.adapters is not None else grads

    def forward(
        self,
        student: DetectorOutput,
        teacher: DetectorOutput,
        targets: list[dict[str, Tensor]],
        images_shape: tuple[int, int],
        strides: list[int],
        det_loss: Tensor | None = None,
        probe: StudentProbe | None = None,
    ) -> dict[str, Tensor]:
        if not self.needs:
            return {}
        inputs = self.build_inputs(
            student, teacher, targets, images_shape, strides, det_loss, probe
        )
        return self.method(inputs)

    def stats(self) -> dict[str, float]:
        return self.method.stats()

    def reset_stats(self) -> None:
        self.method.reset_stats()

    def instance_records(self) -> list[dict]:
        return self.method.instance_records()


def _detached_state(state: InstanceState) -> InstanceState:
    return InstanceState(
        loss=state.loss.detach(),
        quality=state.quality.detach(),
        num_pos=state.num_pos,
        level_loss=state.level_loss.detach(),
    )


def build_distiller(
    cfg: DistillConfig,
    student_channels: int,
    teacher_channels: int,
    num_levels: int,
    heads: HeadPair | None = None,
) -> Distiller:
    """`heads` (student head, teacher head) is required by the cross-head methods."""
    method = build_method(cfg, teacher_channels, num_levels, heads)
    teacher_head = heads.teacher if heads is not None else None
    return Distiller(
        method,
        student_channels,
        teacher_channels,
        num_levels,
        teacher_head,
        feature_norm=cfg.feature_norm,
        adapter=cfg.adapter,
    )
