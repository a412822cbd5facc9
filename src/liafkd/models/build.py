"""Detector factory: one entry per `model.type`, and what each detector gives
distillation (its capabilities, checked against a method's needs before training)."""

from __future__ import annotations

from torch import nn

from liafkd.config import ModelConfig
from liafkd.models.gfl import GFL
from liafkd.models.torchvision_detectors import TorchvisionFCOS, TorchvisionRetinaNet

DETECTORS: dict[str, type[nn.Module]] = {
    "gfl": GFL,
    "retinanet": TorchvisionRetinaNet,
    "fcos": TorchvisionFCOS,
}

# fpn_feats: P3-P7 FPN features (strides 8..128); instance_states: per-GT loss, quality
# and positives (InstanceState); box_distributions: box-edge distribution logits
# (reg_max >= 1); head_branches: a GFL head that can be cut and resumed (CrossKD).
DETECTOR_CAPABILITIES: dict[str, frozenset[str]] = {
    "gfl": frozenset({"fpn_feats", "instance_states", "box_distributions", "head_branches"}),
    "retinanet": frozenset({"fpn_feats", "instance_states"}),
    "fcos": frozenset({"fpn_feats", "instance_states"}),
}


def build_detector(cfg: ModelConfig, num_classes: int) -> nn.Module:
    """The detector `cfg.type` names, for `num_classes` classes."""
    if cfg.type not in DETECTORS:
        raise ValueError(f"model.type: unknown detector {cfg.type!r}")
    return DETECTORS[cfg.type](cfg, num_classes)


def detector_capabilities(cfg: ModelConfig) -> frozenset[str]:
    """What the detector `cfg` describes gives distillation (see DETECTOR_CAPABILITIES)."""
    capabilities = DETECTOR_CAPABILITIES[cfg.type]
    if cfg.type == "gfl" and cfg.reg_max < 1:
        capabilities = capabilities - {"box_distributions"}
    return capabilities
