"""ResNet backbone built from torchvision's residual blocks, returning C3, C4, C5.

`width` scales every stage (stem and stage planes = width * (1, 1, 2, 4, 8)); width 64
is torchvision's ResNet and then the module names and shapes match torchvision's state
dict (without `fc.*`), so torchvision-format weights load directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

from liafkd.safe_load import load_checkpoint

logger = logging.getLogger(__name__)

RESNET_SPECS: dict[int, tuple[type[BasicBlock | Bottleneck], list[int]]] = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
}


@dataclass
class PretrainedReport:
    """Keys of a loaded state dict that the backbone lacked or did not find."""

    path: str
    missing: list[str]
    unexpected: list[str]


class ResNetBackbone(nn.Module):
    """ResNet-18/34/50/101 with a configurable base width; outputs [C3, C4, C5].

    frozen_stages: -1 freezes nothing, 0 the stem, N the stem and stages 1..N
      (as mmdetection). Frozen parts get no gradient and their BatchNorm stays in
      eval mode.
    norm_eval: keep every BatchNorm of the backbone in eval mode (use running
      statistics) while training, as is usual with a pretrained backbone and small
      batches.
    """

    def __init__(
        self, depth: int, width: int = 64, frozen_stages: int = -1, norm_eval: bool = False
    ) -> None:
        super().__init__()
        if depth not in RESNET_SPECS:
            raise ValueError(f"ResNet depth {depth} is not one of {sorted(RESNET_SPECS)}")
        if width < 1:
            raise ValueError(f"ResNet width must be positive, got {width}")
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages must be in [-1, 4], got {frozen_stages}")
        block, layers = RESNET_SPECS[depth]
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_stage(block, width, layers[0], stride=1)
        self.layer2 = self._make_stage(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_stage(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_stage(block, width * 8, layers[3], stride=2)
        self.out_channels = [width * m * block.expansion for m in (2, 4, 8)]
        self._init_weights()
        self._freeze()

    def _make_stage(
        self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int
    ) -> nn.Sequential:
        out_planes = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_planes:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, out_planes, stride), nn.BatchNorm2d(out_planes)
            )
        stage = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = out_planes
        stage += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def _init_weights(self) -> None:
        # torchvision's ResNet initialisation
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)

    def frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        stages = [self.layer1, self.layer2, self.layer3, self.layer4]
        return [self.conv1, self.bn1, *stages[: self.frozen_stages]]

    def _freeze(self) -> None:
        for module in self.frozen_modules():
            for param in module.parameters():
                param.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNetBackbone:
        super().train(mode)
        eval_parts = [self] if self.norm_eval else self.frozen_modules()
        for part in eval_parts:
            for module in part.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    def forward(self, images: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c3, c4, c5]

    def load_pretrained(self, path: str | Path) -> PretrainedReport:
        """Load a torchvision-format ResNet state dict (classifier `fc.*` ignored)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained backbone weights not found: {path}")
        state = load_checkpoint(path)  # weights_only: a file that runs code is refused
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise ValueError(f"{path}: expected a torchvision ResNet state dict of tensors")
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        own_shapes = {k: v.shape for k, v in self.state_dict().items()}
        mismatched = [
            f"{k}: file {tuple(v.shape)} vs model {tuple(own_shapes[k])}"
            for k, v in state.items()
            if k in own_shapes and v.shape != own_shapes[k]
        ]
        if mismatched:
            raise ValueError(
                f"{path}: {len(mismatched)} tensors do not fit this backbone (pretrained "
                f"weights need width 64 and the same depth), e.g. {mismatched[0]}"
            )
        result = self.load_state_dict(state, strict=False)
        report = PretrainedReport(
            str(path), list(result.missing_keys), list(result.unexpected_keys)
        )
        if report.missing or report.unexpected:
            logger.warning(
                "%s: %d missing keys (e.g. %s), %d unexpected keys (e.g. %s)",
                path,
                len(report.missing),
                report.missing[:3],
                len(report.unexpected),
                report.unexpected[:3],
            )
        return report
