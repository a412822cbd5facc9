"""Method name -> constructor, from a validated DistillConfig."""

from __future__ import annotations

from collections.abc import Callable

from liafkd.distill.aid import AID
from liafkd.distill.base import DistillMethod, NoDistill
from liafkd.distill.config import DistillConfig, LDConfig, LIAFConfig
from liafkd.distill.fgd import FGD
from liafkd.distill.ld import LocalizationDistillation
from liafkd.distill.liaf import LIAF
from liafkd.distill.mimic import FeatureMimic

Builder = Callable[[DistillConfig, int, int], DistillMethod]


def _ld(cfg: LDConfig) -> LocalizationDistillation:
    return LocalizationDistillation(cfg.weight, cfg.temperature, cfg.score_weighting)


def _liaf(
    cfg: LIAFConfig, channels: int, num_levels: int, ld: LocalizationDistillation | None
) -> LIAF:
    sel = cfg.selector
    return LIAF(
        channels,
        num_levels,
        alpha_fg=cfg.alpha_fg,
        beta_bg=cfg.beta_bg,
        gamma_att=cfg.gamma_att,
        delta_global=cfg.delta_global,
        temperature=cfg.temperature,
        gaussian_masks=cfg.gaussian_masks,
        lam=sel.lam,
        tau_w=sel.tau_w,
        width=sel.width,
        objective=sel.objective,
        entropy_beta=sel.entropy_beta,
        grl_scale=sel.grl_scale,
        align_weight=sel.align_weight,
        align_tau=sel.align_tau,
        canonical_size=sel.canonical_size,
        roi_size=sel.roi_size,
        ld=ld,
    )


METHODS: dict[str, Builder] = {
    "none": lambda cfg, channels, levels: NoDistill(),
    "mimic": lambda cfg, channels, levels: FeatureMimic(cfg.mimic.weight),
    "fgd": lambda cfg, channels, levels: FGD(channels, levels, **cfg.fgd.model_dump()),
    "aid": lambda cfg, channels, levels: AID(channels, levels, **cfg.aid.model_dump()),
    "ld": lambda cfg, channels, levels: _ld(cfg.ld),
    "liaf": lambda cfg, channels, levels: _liaf(cfg.liaf, channels, levels, None),
    "liaf+ld": lambda cfg, channels, levels: _liaf(cfg.liaf, channels, levels, _ld(cfg.ld)),
}


def build_method(cfg: DistillConfig, teacher_channels: int, num_levels: int) -> DistillMethod:
    """The method named by cfg.method; feature methods work in teacher channels."""
    return METHODS[cfg.method](cfg, teacher_channels, num_levels)
