"""Scale-free imitation (issue 15, item 1): pairs of GFL detectors with FPN widths 16, 64
and 256, whose FPN outputs are rescaled to RMS 0.1, 1 and 10, distilled with every
feature method at the published weights. The detection loss is blind to the scale (the
head's GroupNorm); with `feature_norm: teacher_rms` every imitation term is too, and
FGD's teacher attention keeps most cells and channels. With raw features the terms grow
with RMS^2 (10^4 between 0.1 and 10) and the attention collapses onto a few cells."""

from __future__ import annotations

import pytest
import torch

from liafkd.config import ModelConfig
from liafkd.distill.config import load_distill_config
from liafkd.distill.distiller import build_distiller
from liafkd.distill.scale import effective_count
from liafkd.models.gfl import GFL
from liafkd.models.outputs import DetectorOutput

WIDTHS = (16, 64, 256)
RMS_VALUES = (0.1, 1.0, 10.0)
FEATURE_METHODS = ("mimic", "fgd", "aid", "liaf", "pkd")
# FGD sums its fg, bg and global errors over channels: they grow with the FPN width,
# and its published weights are set for 256-channel FPNs
CHANNEL_SUMMED = ("_fg", "_bg", "_global")
REFERENCE_WIDTH = 256
TEACHER = {"config": "teacher.yaml", "checkpoint": "teacher.pt"}
TARGETS = [
    {
        "boxes": torch.tensor([[10.0, 12.0, 60.0, 50.0], [70.0, 20.0, 150.0, 110.0]]),
        "labels": torch.tensor([0, 1]),
    },
    {"boxes": torch.tensor([[30.0, 40.0, 46.0, 60.0]]), "labels": torch.tensor([2])},
]


def _detector(width: int, seed: int) -> GFL:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        depth=18, width=8, fpn_channels=width, head_convs=1, head_channels=16, reg_max=4
    )
    return GFL(cfg, num_classes=3).train()


def _outputs_at_rms(model: GFL, images: torch.Tensor, rms: float) -> DetectorOutput:
    """forward_train with the FPN outputs rescaled to RMS `rms` on every level."""
    feats = [f * (rms / f.detach().pow(2).mean().sqrt()) for f in model.extract_feats(images)]
    head = model.forward_head(feats)
    assign = model.compute_assign(head, images.shape[-2:], TARGETS)
    losses, instances = model.loss(head, assign, TARGETS)
    return DetectorOutput(losses, feats, head, assign, instances)


def _is_imitation_term(name: str) -> bool:
    return not name.endswith(("_entropy", "_align"))


def _setting(width: int, rms: float) -> dict:
    """{"ratios": {term: term / detection loss}, "cells", "channels": the teacher
    attention's effective share of P3's cells and channels, as the methods see it}."""
    images = torch.randn(2, 3, 128, 160, generator=torch.Generator().manual_seed(0))
    student, teacher = _detector(width, seed=1), _detector(width, seed=2)
    with torch.no_grad():
        teacher_out = _outputs_at_rms(teacher, images, rms)
    student_out = _outputs_at_rms(student, images, rms)
    det_loss = sum(student_out.losses.values())
    call = (student_out, teacher_out, TARGETS, tuple(images.shape[-2:]), list(teacher.strides))
    ratios = {}
    for method in FEATURE_METHODS:
        cfg = load_distill_config({"method": method, "teacher": TEACHER}, "test")
        distiller = build_distiller(cfg, width, width, len(teacher.strides))
        terms = distiller(*call, det_loss)
        ratios.update({k: (v / det_loss).item() for k, v in terms.items() if _is_imitation_term(k)})
    seen = distiller.build_inputs(*call).teacher_feats[0]
    energy_cells = seen.abs().mean(dim=1).flatten(1) / cfg.liaf.temperature
    energy_channels = seen.abs().mean(dim=(2, 3)) / cfg.liaf.temperature
    return {
        "ratios": ratios,
        "cells": (effective_count(energy_cells) / energy_cells.shape[1]).min().item(),
        "channels": (effective_count(energy_channels) / width).min().item(),
    }


@pytest.fixture(scope="module")
def settings() -> dict[tuple[int, float], dict]:
    torch.set_num_threads(1)
    return {(w, r): _setting(w, r) for w in WIDTHS for r in RMS_VALUES}


def test_every_imitation_term_ignores_the_feature_scale(settings):
    for width in WIDTHS:
        rows = [settings[(width, rms)]["ratios"] for rms in RMS_VALUES]
        for term in rows[0]:
            values = [row[term] for row in rows]
            assert max(values) / min(values) < 1.01, (width, term, values)


def test_every_imitation_term_within_an_order_of_magnitude_across_widths_and_scales(settings):
    terms = settings[(WIDTHS[0], RMS_VALUES[0])]["ratios"]
    for term in terms:
        values = []
        for (width, _), setting in settings.items():
            per_width = REFERENCE_WIDTH / width if term.endswith(CHANNEL_SUMMED) else 1.0
            values.append(setting["ratios"][term] * per_width)
        assert max(values) / min(values) < 10, (term, values)


def test_teacher_attention_keeps_its_cells_and_channels(settings):
    for key, setting in settings.items():
        assert setting["cells"] > 0.5, (key, setting["cells"])
        assert setting["channels"] > 0.5, (key, setting["channels"])
