"""The train module of `liafkd distill`: student + distiller, teacher kept aside.

The teacher is stored outside the module tree (not a registered submodule), so it
is in neither `parameters()` nor `state_dict()`: the optimizer never sees it and
checkpoints never hold it. It stays in eval mode and runs under torch.no_grad().
Under torchrun, DistributedDataParallel wraps this module (student and distiller
together) and each process runs its own copy of the teacher.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from liafkd.distill.corruption import TeacherCorruption, corrupted_teacher
from liafkd.distill.distiller import Distiller
from liafkd.distill.probe import StudentProbe
from liafkd.engine.distributed import all_gather_objects, context

WEIGHT_MOMENTS = {"num_instances", "weight_mean", "weight_std", "weight_min", "weight_max"}


class DistillTrainModule(nn.Module):
    # adapters and selectors get no gradient in a step whose batch gives them nothing
    # to do (e.g. no instances), so DistributedDataParallel must look for unused ones
    ddp_find_unused_parameters = True

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        distiller: Distiller,
        corruption: TeacherCorruption | None = None,
    ) -> None:
        super().__init__()
        self.student = student
        self.distiller = distiller
        # distill.teacher_corruption (mechanism benches): the teacher's features are
        # altered inside known boxes; only this module and the `oracle` objective hold it
        self.corruption = corruption
        teacher.eval().requires_grad_(False)
        object.__setattr__(self, "teacher", teacher)
        self._instance_rows: list[dict[str, Any]] = []

    def _apply(self, fn: Callable, recurse: bool = True) -> DistillTrainModule:
        super()._apply(fn, recurse)
        self.teacher._apply(fn)
        return self

    def train(self, mode: bool = True) -> DistillTrainModule:
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        cut = self.distiller.branch_cut  # CrossKD: keep both heads' branch features
        student_out = self.student.forward_train(images, targets, branch_cut=cut)
        if not self.distiller.needs:
            return student_out.losses
        with torch.no_grad(), corrupted_teacher(self.teacher, self.corruption, targets):
            teacher_out = self.teacher.forward_train(images, targets, branch_cut=cut)
        det_loss = sum(student_out.losses.values())
        probe = None
        if "student_probe" in self.distiller.needs:  # LIAF-KD `meta`: extra student forwards
            probe = StudentProbe(self.student, images, targets)
        kd_terms = self.distiller(
            student_out,
            teacher_out,
            targets,
            tuple(images.shape[-2:]),
            list(self.student.strides),
            det_loss=det_loss,
            probe=probe,
        )
        self._collect_instances(targets)
        return {**student_out.losses, **kd_terms}

    def _collect_instances(self, targets: list[dict[str, Any]]) -> None:
        """This step's per-instance weights with image id and the data's attributes
        (occlusion, truncation, ...). `size` is sqrt(area) in original-image pixels; `box` is
        in training-input pixels, `box_orig` in original-image pixels."""
        rows = self.distiller.instance_records()
        starts = [0]
        for t in targets:
            starts.append(starts[-1] + len(t["labels"]))
        attrs = [{k: _as_list(v) for k, v in t.get("attrs", {}).items()} for t in targets]
        image_ids = [int(t["image_id"]) for t in targets]
        for k, row in enumerate(rows):
            image = row.pop("image")
            target = targets[image]
            local = k - starts[image]
            sy, sx = target.get("scale", (1.0, 1.0))
            row["image_id"] = image_ids[image]
            row["size"] = float(row["size"]) / float((sy * sx) ** 0.5)
            # original-image pixels, still mirrored when the sample was flipped
            scales = (sx, sy, sx, sy)
            row["box_orig"] = [round(v / s, 2) for v, s in zip(row["box"], scales, strict=True)]
            for name, values in attrs[image].items():
                row[name] = float(values[local])
            self._instance_rows.append(row)

    def end_epoch(self, epoch: int, out_dir: Path) -> dict[str, float]:
        """Write this epoch's per-instance dump; return the weight statistics. Under
        torchrun every process calls this: the rows and statistics of all processes
        are gathered and rank 0 writes the dump."""
        stats = merge_weight_stats(all_gather_objects(self.distiller.stats()))
        rows = [row for part in all_gather_objects(self._instance_rows) for row in part]
        if rows and context().is_main:
            dump = out_dir / "instances" / f"epoch_{epoch}.jsonl"
            dump.parent.mkdir(parents=True, exist_ok=True)
            with dump.open("w") as f:
                for row in rows:
                    f.write(json.dumps(row) + "\n")
        self._instance_rows = []
        self.distiller.reset_stats()
        return stats


def _as_list(values: Any) -> list:
    return values.tolist() if isinstance(values, Tensor) else list(values)


def merge_weight_stats(parts: list[dict[str, float]]) -> dict[str, float]:
    """One set of statistics from several processes' (`WeightLog.summary` of each):
    mean, std, min and max over all their instances exactly; other entries (entropies,
    means over equally many batches per process) averaged over the processes."""
    parts = [p for p in parts if p]
    if len(parts) <= 1:
        return parts[0] if parts else {}
    merged = {
        key: sum(p[key] for p in parts if key in p) / sum(key in p for p in parts)
        for key in dict.fromkeys(k for p in parts for k in p)
    }
    if not all(WEIGHT_MOMENTS <= p.keys() for p in parts):
        return merged
    counts = [p["num_instances"] for p in parts]
    total = sum(counts)
    mean = sum(n * p["weight_mean"] for n, p in zip(counts, parts, strict=True)) / total
    spread = sum(
        n * (p["weight_std"] ** 2 + (p["weight_mean"] - mean) ** 2)
        for n, p in zip(counts, parts, strict=True)
    )
    merged.update(
        weight_mean=mean,
        weight_std=math.sqrt(spread / total),
        weight_min=min(p["weight_min"] for p in parts),
        weight_max=max(p["weight_max"] for p in parts),
        num_instances=total,
    )
    return merged
