"""`distill.inherit: true`: the student's neck and head start from the teacher's weights
("inheriting", as FGD does for its GFL and RetinaNet students), wherever the teacher
has a tensor of the same name and shape; the backbone keeps its own initialisation
(ImageNet-pretrained or random).

Tensor by tensor, every neck/head entry of the student's state_dict (buffers such as
BatchNorm running statistics included) lands in exactly one list of the report:
  copied         same name and shape in the teacher: now holds the teacher's values;
  skipped_shape  same name, another shape (e.g. the FPN's lateral convs behind a thinner
                 backbone, or a narrower head): keeps its own;
  missing        no tensor of that name in the teacher (e.g. a deeper head): keeps its own.
So a conv whose weight differs in shape can still inherit its bias.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

INHERITED_PREFIXES = ("neck.", "head.")

Shape = tuple[int, ...]


@dataclass
class InheritReport:
    copied: list[str]
    skipped_shape: list[tuple[str, Shape, Shape]]  # (name, student shape, teacher shape)
    missing: list[str]
    copied_weights: int = 0  # copied tensors with 2+ dims (conv weights), not biases/scales
    copied_values: int = 0  # numbers copied
    total_values: int = 0  # numbers in the student's neck and head

    def summary(self) -> str:
        total = len(self.copied) + len(self.skipped_shape) + len(self.missing)
        lines = [
            f"inherit: copied {len(self.copied)} of {total} neck/head tensors from the teacher "
            f"({self.copied_values:,} of {self.total_values:,} values)"
        ]
        if self.skipped_shape:
            lines.append(f"  kept the student's own, other shape ({len(self.skipped_shape)}):")
            lines += [
                f"    {name} {list(mine)} (teacher {list(theirs)})"
                for name, mine, theirs in self.skipped_shape
            ]
        if self.missing:
            lines.append(f"  kept the student's own, not in the teacher ({len(self.missing)}):")
            lines += [f"    {name}" for name in self.missing]
        return "\n".join(lines)


def inherit_from_teacher(student: nn.Module, teacher: nn.Module) -> InheritReport:
    """Copy the teacher's neck.* and head.* tensors into the student where name and
    shape match; report what was and was not copied."""
    teacher_state = teacher.state_dict()
    matching = {}
    report = InheritReport([], [], [])
    for name, tensor in student.state_dict().items():
        if not name.startswith(INHERITED_PREFIXES):
            continue
        report.total_values += tensor.numel()
        source = teacher_state.get(name)
        if source is None:
            report.missing.append(name)
        elif source.shape != tensor.shape:
            report.skipped_shape.append((name, tuple(tensor.shape), tuple(source.shape)))
        else:
            matching[name] = source
            report.copied.append(name)
            report.copied_values += tensor.numel()
            report.copied_weights += tensor.dim() >= 2
    student.load_state_dict(matching, strict=False)
    return report
