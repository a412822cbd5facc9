"""Detector factory: one entry per `model.type`."""

from __future__ import annotations

from torch import nn

from liafkd.config import ModelConfig
from liafkd.models.gfl import GFL


def build_detector(cfg: ModelConfig, num_classes: int) -> nn.Module:
    """The detector `cfg.type` names, for `num_classes` classes."""
    if cfg.type == "gfl":
        return GFL(cfg, num_classes)
    raise ValueError(f"model.type: unknown detector {cfg.type!r}")
