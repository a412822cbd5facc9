"""Extra evaluations of the student for LIAF-KD's `meta` objective (meta.py).

A `StudentProbe` holds the student and the step's batch. It answers two questions
without changing anything the training step owns (weights, BatchNorm statistics,
`.grad`): the gradient of the student's detection loss on some of the batch's images
with respect to its feature parameters, and the derivative of a function of the
student's FPN features on some images along a direction in those parameters. The
feature parameters are the trainable parameters of `student.backbone` and
`student.neck`, the only ones `extract_feats` uses (every detector here computes its
FPN features as neck(backbone(images))).

Every call runs the student through `torch.func.functional_call` on copies of its
buffers, so a BatchNorm in training mode updates the copies, not the student.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp

Features = list[Tensor]


def _identity(feats: Features) -> Features:
    return feats


class _Call(nn.Module):
    """Calls one method of the student, so that functional_call can swap its tensors."""

    def __init__(self, student: nn.Module, method: str) -> None:
        super().__init__()
        self.student = student
        self.method = method

    def forward(self, *args: object) -> object:
        return getattr(self.student, self.method)(*args)


class StudentProbe:
    """The student and one batch. `to_method_space` maps raw FPN features to the ones
    the distillation method compares (adapters, feature normalisation)."""

    def __init__(
        self,
        student: nn.Module,
        images: Tensor,
        targets: list[dict[str, Tensor]],
        to_method_space: Callable[[Features], Features] = _identity,
    ) -> None:
        self.student = student
        self.images = images
        self.targets = targets
        self.to_method_space = to_method_space
        self.param_names = [
            f"student.{part}.{name}"
            for part in ("backbone", "neck")
            for name, p in getattr(student, part).named_parameters()
            if p.requires_grad
        ]
        params = dict(_Call(student, "extract_feats").named_parameters())
        self.params = [params[name] for name in self.param_names]

    def in_method_space(self, to_method_space: Callable[[Features], Features]) -> StudentProbe:
        """The same probe with features mapped by `to_method_space`."""
        return StudentProbe(self.student, self.images, self.targets, to_method_space)

    def _buffers(self) -> dict[str, Tensor]:
        return {f"student.{n}": b.clone() for n, b in self.student.named_buffers()}

    def det_gradient(self, images: slice) -> list[Tensor]:
        """d L_det(images) / d theta for the feature parameters theta (in `params` order)."""
        call = _Call(self.student, "forward_train")
        with torch.enable_grad():
            args = (self.images[images], self.targets[images])
            loss = sum(functional_call(call, self._buffers(), args).losses.values())
            grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        return [
            torch.zeros_like(p) if g is None else g.detach()
            for p, g in zip(self.params, grads, strict=True)
        ]

    def directional_derivative(
        self, fn: Callable[[Features], Tensor], direction: list[Tensor], images: slice
    ) -> Tensor:
        """d/dt fn(method-space FPN features of `images` at theta + t * direction) at
        t = 0, exact: forward-mode AD (torch.func.jvp), one forward carrying tangents."""
        call = _Call(self.student, "extract_feats")

        def run(*params: Tensor) -> Tensor:
            # buffers copied inside: jvp forbids mutating a tensor captured from outside
            tensors = {**self._buffers(), **dict(zip(self.param_names, params, strict=True))}
            return fn(self.to_method_space(functional_call(call, tensors, (self.images[images],))))

        primals = tuple(p.detach() for p in self.params)
        with torch.no_grad():
            _, tangent = jvp(run, primals, tuple(direction))
        return tangent
