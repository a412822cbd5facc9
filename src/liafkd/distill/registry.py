"""Method name -> constructor, from a validated DistillConfig.

Every builder takes (cfg, teacher FPN channels, number of levels, heads); `heads`
(the student's and the teacher's head modules) is needed by the cross-head methods
only (CROSS_HEAD_METHODS) and may be None for the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from liafkd.distill.aid import AID, AIDInstance
from liafkd.distill.base import DistillMethod, HeadPair, NoDistill
from liafkd.distill.config import AIDConfig, DistillConfig, FGDConfig, LDConfig, LIAFConfig
from liafkd.distill.coop_selector import CoopLIAF
from liafkd.distill.corruption import OracleLIAF, TeacherCorruption
from liafkd.distill.crosskd import CrossKD
from liafkd.distill.fgd import FGD
from liafkd.distill.ld import LocalizationDistillation
from liafkd.distill.liaf import LIAF
from liafkd.distill.mimic import FeatureMimic
from liafkd.distill.pkd import PKD

Builder = Callable[[DistillConfig, int, int, HeadPair | None], DistillMethod]

CROSS_HEAD_METHODS = frozenset({"crosskd", "crosskd+pkd", "fgd+crosskd", "liaf+crosskd"})


def _ld(cfg: LDConfig) -> LocalizationDistillation:
    return LocalizationDistillation(cfg.weight, cfg.temperature, cfg.score_weighting)


def _crosskd(cfg: DistillConfig, heads: HeadPair | None, feature: DistillMethod | None) -> CrossKD:
    if heads is None:
        raise ValueError(
            f"method '{cfg.method}' runs the student's head features through the teacher's "
            f"head: build it with heads=HeadPair(student.head, teacher.head)"
        )
    options = cfg.crosskd.model_dump()
    return CrossKD.from_heads(heads, options.pop("cut"), feature=feature, **options)


def _fgd(cfg: FGDConfig, channels: int, num_levels: int) -> FGD:
    return FGD(channels, num_levels, **cfg.model_dump())


def _aid(cfg: AIDConfig, channels: int, num_levels: int) -> AID:
    return AID(channels, num_levels, **cfg.model_dump(exclude={"weight_temperature"}))


def _aid_instance(cfg: AIDConfig, channels: int, num_levels: int) -> AIDInstance:
    return AIDInstance(channels, num_levels, **cfg.model_dump(exclude={"loss_scale"}))


def _liaf_method(cfg: DistillConfig, channels: int, num_levels: int) -> LIAF:
    """`liaf`: the selector objectives `coop` and `oracle` have classes of their own."""
    objective = cfg.liaf.selector.objective
    if objective == "coop":
        coop = cfg.liaf.selector.coop.model_dump()
        return _liaf(cfg.liaf, channels, num_levels, None, kind=CoopLIAF, **coop)
    if objective == "oracle":
        skipped = cfg.teacher_corruption.model_dump()
        if cfg.liaf.selector.oracle_skip_seed is not None:  # the control: as many, not chosen
            skipped["seed"] = cfg.liaf.selector.oracle_skip_seed
        corruption = TeacherCorruption(**skipped)
        return _liaf(cfg.liaf, channels, num_levels, None, kind=OracleLIAF, corruption=corruption)
    return _liaf(cfg.liaf, channels, num_levels, None)


def _liaf(
    cfg: LIAFConfig,
    channels: int,
    num_levels: int,
    ld: LocalizationDistillation | None,
    crosskd: CrossKD | None = None,
    kind: type[LIAF] = LIAF,
    **extra: Any,
) -> LIAF:
    sel = cfg.selector
    return kind(
        channels,
        num_levels,
        alpha_fg=cfg.alpha_fg,
        beta_bg=cfg.beta_bg,
        gamma_att=cfg.gamma_att,
        delta_global=cfg.delta_global,
        temperature=cfg.temperature,
        gaussian_masks=cfg.gaussian_masks,
        mask_rule=cfg.mask_rule,
        lam=sel.lam,
        tau_w=sel.tau_w,
        width=sel.width,
        objective=sel.objective,
        entropy_beta=sel.entropy_beta,
        grl_scale=sel.grl_scale,
        align_weight=sel.align_weight,
        align_tau=sel.align_tau,
        meta_weight=sel.meta_weight,
        meta_every=sel.meta_every,
        canonical_size=sel.canonical_size,
        roi_size=sel.roi_size,
        ld=ld,
        crosskd=crosskd,
        **extra,
    )


METHODS: dict[str, Builder] = {
    "none": lambda cfg, channels, levels, heads: NoDistill(),
    "mimic": lambda cfg, channels, levels, heads: FeatureMimic(cfg.mimic.weight),
    "fgd": lambda cfg, channels, levels, heads: _fgd(cfg.fgd, channels, levels),
    "aid": lambda cfg, channels, levels, heads: _aid(cfg.aid, channels, levels),
    "aid-instance": lambda cfg, channels, levels, heads: _aid_instance(cfg.aid, channels, levels),
    "ld": lambda cfg, channels, levels, heads: _ld(cfg.ld),
    "pkd": lambda cfg, channels, levels, heads: PKD(cfg.pkd.weight),
    "crosskd": lambda cfg, channels, levels, heads: _crosskd(cfg, heads, None),
    "crosskd+pkd": lambda cfg, channels, levels, heads: _crosskd(cfg, heads, PKD(cfg.pkd.weight)),
    "fgd+crosskd": lambda cfg, channels, levels, heads: _crosskd(
        cfg, heads, _fgd(cfg.fgd, channels, levels)
    ),
    "liaf": lambda cfg, channels, levels, heads: _liaf_method(cfg, channels, levels),
    "liaf+ld": lambda cfg, channels, levels, heads: _liaf(cfg.liaf, channels, levels, _ld(cfg.ld)),
    "liaf+crosskd": lambda cfg, channels, levels, heads: _liaf(
        cfg.liaf, channels, levels, None, _crosskd(cfg, heads, None)
    ),
}


def build_method(
    cfg: DistillConfig, teacher_channels: int, num_levels: int, heads: HeadPair | None = None
) -> DistillMethod:
    """The method named by cfg.method; feature methods work in teacher channels."""
    return METHODS[cfg.method](cfg, teacher_channels, num_levels, heads)
