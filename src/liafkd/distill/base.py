"""The one interface every distillation method implements, on plain tensors.

A method never sees the detector: the `Distiller` (distiller.py) gathers what the
method declares in `needs`, adapts the student's FPN features to the teacher's
channels and calls `method(inputs)`, which returns named, already-weighted loss
terms that the engine adds to the student's detection loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from liafkd.distill.probe import StudentProbe
from liafkd.models.outputs import AssignResult, BranchFeats, HeadOutputs, InstanceState

# What a method may ask the distiller for. "det_grads" costs one extra autograd pass
# (the detection loss's gradient w.r.t. the student's FPN features). "head_branches"
# (both heads' branch features at the method's `branch_cut`) and "teacher_head_module"
# (the frozen teacher head itself, to run student features through it) serve CrossKD.
# "student_probe" (the student and the batch, for extra forwards: LIAF-KD's `meta`).
KNOWN_NEEDS = frozenset(
    {
        "feats",
        "head",
        "assign",
        "instances",
        "det_grads",
        "head_branches",
        "teacher_head_module",
        "student_probe",
    }
)


@dataclass(frozen=True)
class HeadPair:
    """The student's head and the frozen teacher's head, for methods whose shapes depend
    on both (CrossKD's adapters) and that run the teacher's head on student features."""

    student: nn.Module
    teacher: nn.Module


@dataclass
class DistillInputs:
    """Everything a method may use for one batch.

    images_shape: (H, W) of the padded batch, input pixels.
    targets: per image {"boxes": float [N_i, 4] xyxy input pixels, "labels": int64 [N_i]}.
      The batch-wide instance order (image 0's boxes, then image 1's, ...) is the order
      of AssignResult.gt_index and of InstanceState.
    teacher_feats: P3.. teacher FPN features [B, C_t, H_l, W_l], detached.
    student_feats: student FPN features adapted to C_t channels, with graph.
      With distill.feature_norm "teacher_rms" (default) both are divided by the
      teacher's detached RMS on each level (scale.py).
    strides: stride of each level, input pixels.
    teacher_head / student_head: raw head outputs (teacher detached).
    student_assign: the student's location -> instance assignment.
    teacher_instances / student_instances: per-instance learning state (detached).
    det_grads: dL_det/dF_S of the student's detection loss w.r.t. its raw FPN features,
      mapped through the adapters' linear part (see Adapters.map_gradients), so that
      its inner product with a gradient taken w.r.t. the adapted features equals the
      chain-rule inner product on the raw features (divided by the level's teacher RMS
      when the features are, for the same reason). Only when a method needs it.
    student_branches / teacher_branches: each head's branch features after its first
      `branch_cut` blocks (student with graph, teacher detached).
    teacher_head_module: the frozen teacher head (eval mode, requires_grad False): a
      module, not a tensor, so that student features can run through it with graph.
    student_probe: the student and this batch's images (probe.py), its features mapped
      to the method's space as student_feats are; for methods that run the student
      again (LIAF-KD's `meta` objective).
    """

    images_shape: tuple[int, int]
    targets: list[dict[str, Tensor]]
    teacher_feats: list[Tensor]
    student_feats: list[Tensor]
    strides: list[int]
    teacher_head: HeadOutputs | None = None
    student_head: HeadOutputs | None = None
    student_assign: AssignResult | None = None
    teacher_instances: InstanceState | None = None
    student_instances: InstanceState | None = None
    det_grads: list[Tensor] | None = None
    student_branches: BranchFeats | None = None
    teacher_branches: BranchFeats | None = None
    teacher_head_module: nn.Module | None = None
    student_probe: StudentProbe | None = None

    @property
    def batch_size(self) -> int:
        return len(self.targets)

    def all_boxes(self) -> Tensor:
        """[N, 4] every GT box of the batch, batch-wide instance order."""
        ref = self.teacher_feats[0]
        boxes = [t["boxes"].to(device=ref.device, dtype=torch.float32) for t in self.targets]
        return torch.cat(boxes) if boxes else ref.new_zeros((0, 4))

    def all_labels(self) -> Tensor:
        ref = self.teacher_feats[0]
        labels = [t["labels"].to(device=ref.device, dtype=torch.int64) for t in self.targets]
        return torch.cat(labels) if labels else ref.new_zeros((0,), dtype=torch.int64)

    def image_index(self) -> Tensor:
        """[N] the image (within the batch) each instance belongs to."""
        counts = torch.tensor([len(t["boxes"]) for t in self.targets], dtype=torch.int64)
        index = torch.repeat_interleave(torch.arange(len(self.targets)), counts)
        return index.to(self.teacher_feats[0].device)

    def require(self, *names: str) -> None:
        """Clear error when a method is called without an input it declared."""
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise ValueError(f"DistillInputs is missing {', '.join(missing)}")


class DistillMethod(nn.Module):
    """Base class: subclasses set `needs` and implement `forward`.

    forward(inputs) -> {"loss_<method>_<term>": scalar tensor, already weighted}.
    stats() -> instance-weight statistics accumulated since reset_stats().
    instance_records() -> per-instance rows of the latest forward (for dumps).
    branch_cut: with need "head_branches", the number of head blocks after which the
      engine keeps both heads' branch features (forward_train(..., branch_cut=)).
    """

    needs: frozenset[str] = frozenset()
    branch_cut: int | None = None

    def forward(self, inputs: DistillInputs) -> dict[str, Tensor]:
        raise NotImplementedError

    def stats(self) -> dict[str, float]:
        return {}

    def reset_stats(self) -> None:
        return None

    def instance_records(self) -> list[dict]:
        return []


class NoDistill(DistillMethod):
    """`none`: the student trains on its detection loss alone."""

    def forward(self, inputs: DistillInputs) -> dict[str, Tensor]:
        return {}


@dataclass
class WeightLog:
    """Instance weights seen since the last reset, and the latest batch's instances."""

    weights: list[Tensor] = field(default_factory=list)
    entropies: list[float] = field(default_factory=list)
    entropy_ratios: list[float] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)

    def record(self, inputs: DistillInputs, weights: Tensor, extra: dict[str, Tensor]) -> None:
        """Store the batch's weights; `extra` holds further [N] columns for the dump."""
        weights = weights.detach().float().cpu()
        if weights.numel() == 0:
            self.records = []
            return
        self.weights.append(weights)
        probs = weights / weights.sum()
        entropy = float(-(probs * probs.clamp_min(1e-12).log()).sum())
        self.entropies.append(entropy)
        if weights.numel() > 1:
            self.entropy_ratios.append(entropy / math.log(weights.numel()))
        self.records = _instance_rows(inputs, weights, extra)

    def summary(self) -> dict[str, float]:
        """weight_mean/std/min/max over every instance seen; weight_entropy: mean over
        batches of the entropy (nats) of w / sum(w); weight_entropy_ratio: the same
        divided by log N (1 = uniform weights)."""
        if not self.weights:
            return {}
        all_w = torch.cat(self.weights)
        out = {
            "weight_mean": float(all_w.mean()),
            "weight_std": float(all_w.std(unbiased=False)),
            "weight_min": float(all_w.min()),
            "weight_max": float(all_w.max()),
            "weight_entropy": sum(self.entropies) / len(self.entropies),
            "num_instances": float(all_w.numel()),
        }
        if self.entropy_ratios:
            out["weight_entropy_ratio"] = sum(self.entropy_ratios) / len(self.entropy_ratios)
        return out

    def reset(self) -> None:
        self.weights.clear()
        self.entropies.clear()
        self.entropy_ratios.clear()


class WeightLogged:
    """Mixin for methods that weight instances: statistics and dumps from the
    `self.weight_log` (a WeightLog) that the method fills in its forward."""

    weight_log: WeightLog

    def stats(self) -> dict[str, float]:
        return self.weight_log.summary()

    def reset_stats(self) -> None:
        self.weight_log.reset()

    def instance_records(self) -> list[dict]:
        return self.weight_log.records


def _instance_rows(inputs: DistillInputs, weights: Tensor, extra: dict[str, Tensor]) -> list[dict]:
    # one .tolist() per column: per-element float() costs a tensor op per value, per step
    boxes = inputs.all_boxes().detach().cpu()
    sizes = (
        (boxes[:, 2] - boxes[:, 0]).clamp_min(0) * (boxes[:, 3] - boxes[:, 1]).clamp_min(0)
    ).sqrt()
    columns = {
        "image": inputs.image_index().cpu().tolist(),
        "box": [[round(v, 2) for v in box] for box in boxes.tolist()],
        "label": inputs.all_labels().cpu().tolist(),
        "size": sizes.tolist(),
        "weight": weights.tolist(),
    }
    columns.update({k: v.detach().float().cpu().tolist() for k, v in extra.items()})
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]
