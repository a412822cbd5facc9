"""FPN neck: P3-P5 from C3-C5 (torchvision FeaturePyramidNetwork), P6-P7 by stride-2
3x3 convs on P5's output (GFL/ATSS `add_extra_convs="on_output"`).

torchvision's LastLevelP6P7 applies a ReLU between P6 and P7 (RetinaNet style);
we keep it.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7


class FPN(nn.Module):
    """[C3, C4, C5] -> [P3, P4, P5, P6, P7], each with `out_channels` channels."""

    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__()
        if len(in_channels) != 3:
            raise ValueError(f"FPN expects 3 input levels (C3-C5), got {len(in_channels)}")
        # in == out makes LastLevelP6P7 take P5 (not C5) as its input
        self.fpn = FeaturePyramidNetwork(
            in_channels, out_channels, extra_blocks=LastLevelP6P7(out_channels, out_channels)
        )
        self.out_channels = out_channels

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        named = OrderedDict((f"c{i + 3}", feat) for i, feat in enumerate(feats))
        return list(self.fpn(named).values())
