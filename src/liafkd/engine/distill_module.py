"""The train module of `liafkd distill`: student + distiller, teacher kept aside.

The teacher is stored outside the module tree (not a registered submodule), so it
is in neither `parameters()` nor `state_dict()`: the optimizer never sees it and
checkpoints never hold it. It stays in eval mode and runs under torch.no_grad().
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from liafkd.distill.distiller import Distiller


class DistillTrainModule(nn.Module):
    def __init__(self, student: nn.Module, teacher: nn.Module, distiller: Distiller) -> None:
        super().__init__()
        self.student = student
        self.distiller = distiller
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
        student_out = self.student.forward_train(images, targets)
        if not self.distiller.needs:
            return student_out.losses
        with torch.no_grad():
            teacher_out = self.teacher.forward_train(images, targets)
        det_loss = sum(student_out.losses.values())
        kd_terms = self.distiller(
            student_out,
            teacher_out,
            targets,
            tuple(images.shape[-2:]),
            list(self.student.strides),
            det_loss=det_loss,
        )
        self._collect_instances(targets)
        return {**student_out.losses, **kd_terms}

    def _collect_instances(self, targets: list[dict[str, Any]]) -> None:
        """This step's per-instance weights with image id and the data's attributes
        (occlusion, truncation, ...). `size` is sqrt(area) in original-image pixels."""
        rows = self.distiller.instance_records()
        starts = [0]
        for t in targets:
            starts.append(starts[-1] + len(t["labels"]))
        for k, row in enumerate(rows):
            image = row.pop("image")
            target = targets[image]
            local = k - starts[image]
            sy, sx = target.get("scale", (1.0, 1.0))
            row["image_id"] = int(target["image_id"])
            row["size"] = float(row["size"]) / float((sy * sx) ** 0.5)
            for name, values in target.get("attrs", {}).items():
                row[name] = float(values[local])
            self._instance_rows.append(row)

    def end_epoch(self, epoch: int, out_dir: Path) -> dict[str, float]:
        """Write this epoch's per-instance dump; return the weight statistics."""
        stats = self.distiller.stats()
        if self._instance_rows:
            dump = out_dir / "instances" / f"epoch_{epoch}.jsonl"
            dump.parent.mkdir(parents=True, exist_ok=True)
            with dump.open("w") as f:
                for row in self._instance_rows:
                    f.write(json.dumps(row) + "\n")
        self._instance_rows = []
        self.distiller.reset_stats()
        return stats
