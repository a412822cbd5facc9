"""MMDetection GFL checkpoints -> liafkd GFL state dicts (teachers from mmdet weights).

Key mapping (MMDetection v2/v3 GFL: ResNet `style='pytorch'`, FPN with start_level 1,
add_extra_convs 'on_output', num_outs 5; GFLHead with ConvModule towers):

    backbone.<torchvision ResNet names>        -> backbone.<same>
    neck.lateral_convs.{i}.conv.*              -> neck.fpn.inner_blocks.{i}.0.*
    neck.fpn_convs.{0,1,2}.conv.*              -> neck.fpn.layer_blocks.{i}.0.*
    neck.fpn_convs.3.conv.* / 4.conv.*         -> neck.fpn.extra_blocks.p6.* / p7.*
    bbox_head.{cls,reg}_convs.{i}.conv.weight  -> head.{cls,reg}_convs.{i}.0.weight
    bbox_head.{cls,reg}_convs.{i}.{gn,bn}.*    -> head.{cls,reg}_convs.{i}.1.*
    bbox_head.gfl_cls.* / gfl_reg.*            -> head.gfl_cls.* / gfl_reg.*
    bbox_head.scales.{i}.scale                 -> head.scales.{i}.scale

Every other source key (e.g. bbox_head.integral.project, EMA copies) is reported as
unmapped; every model key without a source tensor is reported as missing (BatchNorm
`num_batches_tracked` counters are filled with the model's own and listed apart). A
shape mismatch or a missing weight refuses the import.

Known differences from MMDetection at inference (not weights): liafkd's FPN applies a
ReLU before the P7 conv (torchvision's LastLevelP6P7; MMDetection's GFL has none) and
GFL's points sit at cell centres ((x + 0.5) * stride; MMDetection's at x * stride).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from liafkd.config import ConfigError, ModelConfig

MMDET_GFL_KEY_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^backbone\.(.+)$"), r"backbone.\1"),
    (
        re.compile(r"^neck\.lateral_convs\.(\d+)\.conv\.(weight|bias)$"),
        r"neck.fpn.inner_blocks.\1.0.\2",
    ),
    (
        re.compile(r"^neck\.fpn_convs\.([0-2])\.conv\.(weight|bias)$"),
        r"neck.fpn.layer_blocks.\1.0.\2",
    ),
    (re.compile(r"^neck\.fpn_convs\.3\.conv\.(weight|bias)$"), r"neck.fpn.extra_blocks.p6.\1"),
    (re.compile(r"^neck\.fpn_convs\.4\.conv\.(weight|bias)$"), r"neck.fpn.extra_blocks.p7.\1"),
    (
        re.compile(r"^bbox_head\.(cls|reg)_convs\.(\d+)\.conv\.weight$"),
        r"head.\1_convs.\2.0.weight",
    ),
    (re.compile(r"^bbox_head\.(cls|reg)_convs\.(\d+)\.(?:gn|bn)\.(.+)$"), r"head.\1_convs.\2.1.\3"),
    (re.compile(r"^bbox_head\.(gfl_cls|gfl_reg)\.(weight|bias)$"), r"head.\1.\2"),
    (re.compile(r"^bbox_head\.scales\.(\d+)\.scale$"), r"head.scales.\1.scale"),
]
CLS_KEY = "bbox_head.gfl_cls.weight"
REG_KEY = "bbox_head.gfl_reg.weight"
FILLED_SUFFIX = ".num_batches_tracked"


@dataclass
class ImportReport:
    """The converted state dict and what did not map, on both sides."""

    state_dict: dict[str, Tensor]
    unmapped_source: list[str] = field(default_factory=list)
    missing_target: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"mapped {len(self.state_dict) - len(self.filled)} tensors"]
        if self.filled:
            lines.append(f"filled {len(self.filled)} BatchNorm num_batches_tracked counters")
        lines.append(f"unmapped source keys ({len(self.unmapped_source)}):")
        lines += [f"  {key}" for key in self.unmapped_source]
        if self.missing_target:
            lines.append(f"model keys without a source tensor ({len(self.missing_target)}):")
            lines += [f"  {key}" for key in self.missing_target]
        return "\n".join(lines)


def mmdet_to_liafkd_key(key: str) -> str | None:
    """Our GFL's name for an MMDetection GFL state-dict key, None when no rule maps it."""
    for pattern, replacement in MMDET_GFL_KEY_RULES:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    return None


def split_mmdet_checkpoint(ckpt: dict[str, Any], source: str) -> tuple[dict[str, Tensor], dict]:
    """(state_dict, meta) of an MMDetection checkpoint or of a bare state dict; a
    DataParallel `module.` prefix is dropped."""
    state = ckpt.get("state_dict", ckpt)
    meta = ckpt.get("meta", {}) if "state_dict" in ckpt else {}
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(f"{source}: expected an MMDetection checkpoint ({{'state_dict': ...}})")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    return state, meta if isinstance(meta, dict) else {}


def checkpoint_class_names(meta: dict) -> list[str] | None:
    """Class names stored by MMDetection v2 (meta.CLASSES) or v3 (meta.dataset_meta.classes)."""
    names = meta.get("CLASSES") or (meta.get("dataset_meta") or {}).get("classes")
    return [str(n) for n in names] if names else None


def infer_head_shape(state: dict[str, Tensor], source: str) -> tuple[int, int]:
    """(num_classes, reg_max) from the GFL head's output convs."""
    if CLS_KEY not in state or REG_KEY not in state:
        raise ConfigError(f"{source}: no {CLS_KEY} / {REG_KEY}: not an MMDetection GFL checkpoint")
    reg_channels = state[REG_KEY].shape[0]
    if reg_channels % 4:
        raise ConfigError(f"{source}: {REG_KEY} has {reg_channels} outputs, not 4 * (reg_max + 1)")
    return state[CLS_KEY].shape[0], reg_channels // 4 - 1


def convert_gfl_state_dict(
    source_state: dict[str, Tensor], target_state: dict[str, Tensor], source: str
) -> ImportReport:
    """Rename `source_state` to the keys of `target_state` (a GFL's state dict), check
    shapes, fill num_batches_tracked, and refuse on a mismatch or a missing weight."""
    converted: dict[str, Tensor] = {}
    report = ImportReport(converted)
    mismatched = []
    for key, value in source_state.items():
        target_key = mmdet_to_liafkd_key(key)
        if target_key is None or target_key not in target_state:
            report.unmapped_source.append(key)
        elif value.shape != target_state[target_key].shape:
            wanted = tuple(target_state[target_key].shape)
            mismatched.append(f"{key} {tuple(value.shape)} -> {target_key} {wanted}")
        else:
            converted[target_key] = value.to(target_state[target_key].dtype)
    if mismatched:
        raise ConfigError(
            f"{source}: {len(mismatched)} tensors do not fit the model of the config "
            f"(check model.depth, fpn_channels, head_convs, head_channels):\n  "
            + "\n  ".join(mismatched)
        )
    for key, value in target_state.items():
        if key in converted:
            continue
        if key.endswith(FILLED_SUFFIX):
            converted[key] = value.clone()
            report.filled.append(key)
        else:
            report.missing_target.append(key)
    if report.missing_target:
        raise ConfigError(f"{source}: the checkpoint lacks model weights.\n{report.summary()}")
    return report


def import_mmdet_gfl(
    ckpt: dict[str, Any], model_cfg: ModelConfig, source: str
) -> tuple[ImportReport, list[str] | None, int]:
    """Convert a loaded MMDetection GFL checkpoint for the GFL `model_cfg` describes.

    Returns the report (with the state dict), the checkpoint's class names if it has
    them, and its number of classes (read from the head).
    """
    from liafkd.models.gfl import GFL

    if model_cfg.type != "gfl":
        raise ConfigError(
            f"{source}: MMDetection import builds a GFL, model.type is {model_cfg.type}"
        )
    state, meta = split_mmdet_checkpoint(ckpt, source)
    num_classes, reg_max = infer_head_shape(state, source)
    if reg_max != model_cfg.reg_max:
        raise ConfigError(
            f"{source}: the checkpoint's GFL head has reg_max {reg_max}, the config "
            f"model.reg_max {model_cfg.reg_max}"
        )
    class_names = checkpoint_class_names(meta)
    if class_names is not None and len(class_names) != num_classes:
        raise ConfigError(
            f"{source}: meta lists {len(class_names)} classes, the head has {num_classes}"
        )
    target = GFL(model_cfg.model_copy(update={"pretrained": None}), num_classes).state_dict()
    report = convert_gfl_state_dict(state, target, source)
    return report, class_names, num_classes
