"""GFL head: one head shared over the FPN levels, with separate classification and
regression branches of `num_convs` conv-norm-ReLU blocks each.

The head can be cut after its k-th block (`branch_feats`) and resumed from there
(`forward_from`), so a teacher's head can run on a student's intermediate head
features (CrossKD).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from liafkd.models.outputs import HeadOutputs


class Scale(nn.Module):
    """A learnable scalar multiplier (one per FPN level on the box logits)."""

    def __init__(self, value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(value))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


def group_norm_groups(channels: int, max_groups: int = 32, min_group_size: int = 4) -> int:
    """The most groups (up to 32) that divide `channels` with >= 4 channels per group.

    32 groups for 128 channels and more, as the GN paper; fewer on small CPU heads so
    that a group never degenerates to a single channel (a 1x1 P7 map would normalise
    to zero).
    """
    upper = max(1, min(max_groups, channels // min_group_size))
    return next(g for g in range(upper, 0, -1) if channels % g == 0)


def conv_norm_relu(in_channels: int, out_channels: int, norm: str) -> nn.Sequential:
    if norm == "gn":
        norm_layer: nn.Module = nn.GroupNorm(group_norm_groups(out_channels), out_channels)
    elif norm == "bn":
        norm_layer = nn.BatchNorm2d(out_channels)
    else:
        raise ValueError(f"head norm must be 'gn' or 'bn', got {norm!r}")
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
    return nn.Sequential(conv, norm_layer, nn.ReLU(inplace=True))


class GFLHead(nn.Module):
    """Per level: cls branch -> K quality logits; reg branch -> 4 * (reg_max + 1) logits."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        feat_channels: int,
        num_convs: int,
        reg_max: int,
        num_levels: int,
        norm: str = "gn",
        prior_prob: float = 0.01,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_convs = num_convs
        self.reg_max = reg_max
        branch_in = [in_channels] + [feat_channels] * (num_convs - 1)
        self.cls_convs = nn.ModuleList(conv_norm_relu(c, feat_channels, norm) for c in branch_in)
        self.reg_convs = nn.ModuleList(conv_norm_relu(c, feat_channels, norm) for c in branch_in)
        last_channels = feat_channels if num_convs > 0 else in_channels
        self.gfl_cls = nn.Conv2d(last_channels, num_classes, 3, padding=1)
        self.gfl_reg = nn.Conv2d(last_channels, 4 * (reg_max + 1), 3, padding=1)
        self.scales = nn.ModuleList(Scale(1.0) for _ in range(num_levels))
        self._init_weights(prior_prob)

    def _init_weights(self, prior_prob: float) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0.0)
        # every location starts as background with probability 1 - prior_prob
        nn.init.constant_(self.gfl_cls.bias, -math.log((1 - prior_prob) / prior_prob))

    def branch_feats(self, feats: list[Tensor], k: int) -> tuple[list[Tensor], list[Tensor]]:
        """Per-level (cls, reg) branch features after the first k blocks (0 <= k <= num_convs)."""
        self._check_cut(k)
        cls_feats, reg_feats = [], []
        for feat in feats:
            cls_feat, reg_feat = feat, feat
            for cls_conv, reg_conv in zip(self.cls_convs[:k], self.reg_convs[:k], strict=True):
                cls_feat, reg_feat = cls_conv(cls_feat), reg_conv(reg_feat)
            cls_feats.append(cls_feat)
            reg_feats.append(reg_feat)
        return cls_feats, reg_feats

    def forward_from(self, cls_feats: list[Tensor], reg_feats: list[Tensor], k: int) -> HeadOutputs:
        """Run blocks k.. and the output convs on branch features cut after block k."""
        self._check_cut(k)
        if len(cls_feats) != len(self.scales) or len(reg_feats) != len(self.scales):
            raise ValueError(f"head expects {len(self.scales)} levels, got {len(cls_feats)}")
        cls_logits, box_dists = [], []
        for cls_feat, reg_feat, scale in zip(cls_feats, reg_feats, self.scales, strict=True):
            for cls_conv, reg_conv in zip(self.cls_convs[k:], self.reg_convs[k:], strict=True):
                cls_feat, reg_feat = cls_conv(cls_feat), reg_conv(reg_feat)
            cls_logits.append(self.gfl_cls(cls_feat))
            box_dists.append(scale(self.gfl_reg(reg_feat)))
        return HeadOutputs(cls_logits, box_dists)

    def forward(self, feats: list[Tensor]) -> HeadOutputs:
        return self.forward_from(feats, feats, 0)

    def _check_cut(self, k: int) -> None:
        if not 0 <= k <= self.num_convs:
            raise ValueError(f"head cut index must be in [0, {self.num_convs}], got {k}")
