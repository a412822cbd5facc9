"""FGD's attention maps, attention-transfer loss and global relation (GcBlock) module.

Reductions follow FGD: sums over channels and cells, divided by the batch size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def spatial_attention(feat: Tensor, tau: float = 0.5) -> Tensor:
    """[B, H, W] = H*W * softmax over cells of mean_c |F| / tau; sums to H*W per image."""
    b, _, h, w = feat.shape
    energy = feat.float().abs().mean(dim=1).reshape(b, h * w)
    return (h * w * F.softmax(energy / tau, dim=1)).reshape(b, h, w)


def channel_attention(feat: Tensor, tau: float = 0.5) -> Tensor:
    """[B, C] = C * softmax over channels of mean_xy |F| / tau; sums to C per image."""
    c = feat.shape[1]
    energy = feat.float().abs().mean(dim=(2, 3))
    return c * F.softmax(energy / tau, dim=1)


def attention_loss(student: Tensor, teacher: Tensor, tau: float = 0.5) -> Tensor:
    """L1 between student and teacher spatial and channel attention, summed, / B."""
    b = student.shape[0]
    spatial = (spatial_attention(student, tau) - spatial_attention(teacher, tau)).abs().sum()
    channel = (channel_attention(student, tau) - channel_attention(teacher, tau)).abs().sum()
    return (spatial + channel) / b


class GlobalRelation(nn.Module):
    """GcBlock: softmax-pooled global context, transformed and added to every cell.

    out = F + T(context), context = sum_xy softmax(conv_mask(F))_xy * F_xy,
    T = 1x1 conv (C -> C/2) -> LayerNorm -> ReLU -> 1x1 conv (C/2 -> C). The last conv
    starts at zero so the block starts as the identity (as in FGD).
    """

    def __init__(self, channels: int, ratio: float = 0.5) -> None:
        super().__init__()
        planes = max(1, int(channels * ratio))
        self.conv_mask = nn.Conv2d(channels, 1, kernel_size=1)
        self.channel_add = nn.Sequential(
            nn.Conv2d(channels, planes, kernel_size=1),
            nn.LayerNorm([planes, 1, 1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, channels, kernel_size=1),
        )
        nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.conv_mask.bias)
        nn.init.zeros_(self.channel_add[-1].weight)
        nn.init.zeros_(self.channel_add[-1].bias)

    def context(self, feat: Tensor) -> Tensor:
        """[B, C, 1, 1] attention-pooled global context."""
        b, c, h, w = feat.shape
        weights = F.softmax(self.conv_mask(feat).reshape(b, 1, h * w), dim=2)
        pooled = torch.bmm(feat.reshape(b, c, h * w), weights.transpose(1, 2))
        return pooled.reshape(b, c, 1, 1)

    def forward(self, feat: Tensor) -> Tensor:
        return feat + self.channel_add(self.context(feat))


def global_loss(
    student: Tensor, teacher: Tensor, student_block: GlobalRelation, teacher_block: GlobalRelation
) -> Tensor:
    """Squared error between the GcBlock outputs of student and teacher, summed, / B."""
    diff = student_block(student.float()) - teacher_block(teacher.float())
    return diff.pow(2).sum() / student.shape[0]
