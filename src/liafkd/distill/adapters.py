"""Per-level 1x1 conv adapters from student to teacher channels (training only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Adapters(nn.Module):
    """One 1x1 conv per FPN level, identity-initialised when the channels match."""

    def __init__(self, student_channels: int, teacher_channels: int, num_levels: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(student_channels, teacher_channels, kernel_size=1) for _ in range(num_levels)
        )
        if student_channels == teacher_channels:
            eye = torch.eye(teacher_channels)[:, :, None, None]
            for conv in self.convs:
                with torch.no_grad():
                    conv.weight.copy_(eye)
                    conv.bias.zero_()

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        if len(feats) != len(self.convs):
            raise ValueError(f"Adapters: {len(feats)} feature levels, built for {len(self.convs)}")
        return [conv(f) for conv, f in zip(self.convs, feats, strict=True)]

    def map_gradients(self, grads: list[Tensor]) -> list[Tensor]:
        """W_l g_l per level: for any G taken w.r.t. the adapted features,
        <W_l g_l, G> equals <g_l, W_l^T G>, the inner product with G pulled back to the
        raw student features by the chain rule."""
        return [
            F.conv2d(g, conv.weight.detach().to(g.dtype))
            for conv, g in zip(self.convs, grads, strict=True)
        ]
