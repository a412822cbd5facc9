"""The `distill:` block of an experiment config.

    distill:
      method: liaf            # none | mimic | fgd | aid | aid-instance | ld | pkd | crosskd
                              # | crosskd+pkd | fgd+crosskd | liaf | liaf+ld | liaf+crosskd
      teacher: {config: teacher.yaml, checkpoint: teacher.pth}
      inherit: false          # true: student neck + head start from the teacher's weights
      feature_norm: teacher_rms   # teacher_rms | none: imitate features / teacher's RMS
      adapter: auto           # auto: 1x1 adapters only where the widths differ | always
      liaf: {alpha_fg: 0.001, selector: {objective: aligned, lam: 0.5}}

Only the block of the chosen method is used (`aid-instance` uses `aid`, `liaf+ld` uses
`liaf` and `ld`, `crosskd+pkd` uses `crosskd` and `pkd`, `fgd+crosskd` uses `fgd` and
`crosskd`); every block has defaults.
Unknown keys fail with their full path, e.g.
`exp.yaml: distill.liaf.selector.lamb: unknown key (did you mean 'distill.liaf.selector.lam'?)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from liafkd.config import ConfigError, StrictModel, validate

MethodName = Literal[
    "none",
    "mimic",
    "fgd",
    "aid",
    "aid-instance",
    "ld",
    "pkd",
    "crosskd",
    "crosskd+pkd",
    "fgd+crosskd",
    "liaf",
    "liaf+ld",
    "liaf+crosskd",
]


class TeacherConfig(StrictModel):
    config: str  # the teacher's experiment YAML (its `model` block builds the detector)
    checkpoint: str  # its trained weights (torch.load with weights_only=True)
    # start even when the checkpoint lacks some of the teacher's weights (they stay random)
    allow_missing: bool = False


class ChecksConfig(StrictModel):
    """Guardrails run before training (liafkd.engine.guardrails). The teacher's classes
    and weights are always checked; these switch the costlier checks."""

    enabled: bool = True  # False skips teacher_sanity and step_health
    teacher_sanity: bool = True  # evaluate the teacher on a few validation batches
    teacher_batches: int = Field(default=4, ge=1)
    # a loaded teacher on its own classes scores far above this even on a few images;
    # a wrong checkpoint, class order or normalisation scores about 0
    min_teacher_ap50: float = Field(default=0.01, ge=0, le=1)
    step_health: bool = True  # one real batch: every term finite, non-zero, with gradient
    allow_zero: list[str] = Field(default_factory=list)  # terms allowed to be exactly 0


class MimicConfig(StrictModel):
    weight: float = Field(default=1.0, ge=0)


class FGDConfig(StrictModel):
    """FGD's RetinaNet/GFL defaults."""

    alpha_fg: float = Field(default=1e-3, ge=0)
    beta_bg: float = Field(default=5e-4, ge=0)
    gamma_att: float = Field(default=5e-4, ge=0)
    lambda_global: float = Field(default=5e-6, ge=0)
    temperature: float = Field(default=0.5, gt=0)
    gaussian_masks: bool = False
    # fgd: FGD's official rule (floor/ceil, inclusive, 1/(h*w) from the integer bounds);
    # center: cells whose centre lies in the box, each mask summing to 1 (masks.py)
    mask_rule: Literal["fgd", "center"] = "fgd"


class AIDConfig(FGDConfig):
    """`aid` and `aid-instance` (aid.py)."""

    loss_scale: float = Field(default=0.1, ge=0)  # aid: w_l = exp(-loss_scale * L_T,l)
    weight_temperature: float = Field(default=1.0, gt=0)  # aid-instance: N softmax(-L_T / T)


class LDConfig(StrictModel):
    """MMDetection LD defaults."""

    weight: float = Field(default=0.25, ge=0)
    temperature: float = Field(default=10.0, gt=0)
    score_weighting: bool = True  # weight each location by the student's max class score


class PKDConfig(StrictModel):
    """PKD's (and CrossKD+PKD's) loss weight."""

    weight: float = Field(default=6.0, ge=0)


class CrossKDConfig(StrictModel):
    """CrossKD's GFL R101 -> R50 defaults (see crosskd.py)."""

    # head blocks the student's features pass before the teacher's head takes over;
    # negative counts from the end of the teacher's head (-1: all but its last block)
    cut: int = -1
    weight_qfl: float = Field(default=1.0, ge=0)  # KD quality focal loss on cls scores
    beta: float = Field(default=1.0, ge=0)  # its focusing exponent
    weight_kl: float = Field(default=4.0, ge=0)  # KL on the box-edge distributions
    temperature: float = Field(default=1.0, gt=0)  # of that KL
    align_stats: bool = True  # give the bridged features the teacher's channel mean/std


class CoopConfig(StrictModel):
    """The cooperative instance filter (selector objective `coop`, coop_selector.py)."""

    units: int = Field(default=4, ge=2)  # M selection units
    # trust = sigmoid(teacher's lead over the student / target_tau), for the instance
    # weights (lead in quality) and for the filter inside the box (lead in class score)
    target_tau: float = Field(default=0.1, gt=0)
    filter_mix: float = Field(default=0.5, ge=0, le=1)  # filter = 1 - mix + mix * k^2 * pi
    weight: float = Field(default=1.0, ge=0)  # of the KL of the weights to their target
    filter_weight: float = Field(default=1.0, ge=0)  # of the KL of the filters to theirs
    diversity: float = Field(default=0.1, ge=0)  # of the Dice overlap between units' maps


class SelectorConfig(StrictModel):
    # joint and adversarial: ablations; aligned: first-order gradient alignment on the
    # batch; meta: learning to reweight on held-out images (meta.py; opt-in, costly);
    # coop: the cooperative instance filter, trained on the teacher's lead over the
    # student (coop_selector.py); oracle: weight 0 on exactly the instances that
    # distill.teacher_corruption altered (corruption.py; mechanism benches only)
    objective: Literal["joint", "adversarial", "aligned", "meta", "coop", "oracle"] = "joint"
    # weights stay >= 1 - lam. Frozen at 0 (uniform weights: every instance weighs 1) by
    # cpu-synthetic-v2-tune's declared rule, where no learnt weighting beat uniform
    # weights (benchmarks/cpu-synthetic-v2-tune/choice.json); at 0 no selector is built
    # (liaf.py). lam > 0 turns the selector's weighting on
    lam: float = Field(default=0.0, ge=0, le=1)
    tau_w: float = Field(default=1.0, gt=0)  # softmax temperature of the weights
    width: int = Field(default=64, ge=1)  # embedding / hidden width of g
    entropy_beta: float = Field(default=0.01, ge=0)  # beta * sum p log p
    grl_scale: float = Field(default=1.0, ge=0)  # adversarial: reversed-gradient scale
    align_weight: float = Field(default=1.0, ge=0)  # aligned: weight of the ranking loss
    align_tau: float = Field(default=1.0, gt=0)  # aligned: temperature on standardised r
    meta_weight: float = Field(default=1.0, ge=0)  # meta: weight of the KL to L2RW's weights
    meta_every: int = Field(default=1, ge=1)  # meta: a meta step every this many steps
    # FPN level mapper: the box side that maps to P4 at an 800x1333 input; scaled by
    # sqrt(input area / (800 * 1333)) for other input sizes (selector.py)
    canonical_size: float = Field(default=224.0, gt=0)
    roi_size: int = Field(default=7, ge=1)
    coop: CoopConfig = Field(default_factory=CoopConfig)  # objective coop only
    # oracle only, a control: skip the same share of instances drawn by this hash seed
    # instead of the altered ones (as much imitation removed, none of it chosen)
    oracle_skip_seed: int | None = None

    @model_validator(mode="after")
    def _coop_knobs_need_coop(self) -> SelectorConfig:
        if "coop" in self.model_fields_set and self.objective != "coop":
            raise ValueError(f"coop: set with objective {self.objective!r}, used by 'coop' only")
        if self.objective == "coop" and self.lam == 0:
            raise ValueError(
                "objective 'coop' with lam 0: every instance would weigh 1. Set "
                "distill.liaf.selector.lam above 0 (e.g. 1.0)"
            )
        return self

    @model_validator(mode="after")
    def _skip_seed_needs_oracle(self) -> SelectorConfig:
        if self.oracle_skip_seed is not None and self.objective != "oracle":
            raise ValueError(
                f"oracle_skip_seed: set with objective {self.objective!r}, used by 'oracle' only"
            )
        return self

    @model_validator(mode="after")
    def _meta_knobs_need_meta(self) -> SelectorConfig:
        knobs = sorted(k for k in self.model_fields_set if k.startswith("meta_"))
        if knobs and self.objective != "meta":
            raise ValueError(
                f"{', '.join(knobs)}: set with objective {self.objective!r}, used by 'meta' only"
            )
        return self

    @model_validator(mode="after")
    def _learnt_objectives_need_lam(self) -> SelectorConfig:
        if self.lam == 0 and self.objective in ("aligned", "meta"):
            raise ValueError(
                f"objective {self.objective!r} with lam 0: at lam 0 every instance weighs 1 "
                f"and no selector is built, so {self.objective!r} would pay its extra passes "
                "for nothing. Set distill.liaf.selector.lam above 0 (e.g. 0.5) to learn the "
                "weights, or drop distill.liaf.selector.objective for uniform weights"
            )
        return self


class LIAFConfig(StrictModel):
    alpha_fg: float = Field(default=1e-3, ge=0)
    beta_bg: float = Field(default=5e-4, ge=0)
    gamma_att: float = Field(default=5e-4, ge=0)
    delta_global: float = Field(default=0.0, ge=0)
    temperature: float = Field(default=0.5, gt=0)
    gaussian_masks: bool = False
    mask_rule: Literal["fgd", "center"] = "fgd"  # as FGD's (FGDConfig)
    selector: SelectorConfig = Field(default_factory=SelectorConfig)


class TeacherCorruptionConfig(StrictModel):
    """Alter the teacher's FPN features inside a seeded share of the GT boxes, for a
    mechanism bench (corruption.py); only the `oracle` selector objective knows which."""

    fraction: float = Field(default=0.3, gt=0, le=1)  # share of instances altered
    seed: int = 0  # which ones: a hash of (seed, image id, box index)
    strength: float = Field(default=1.0, gt=0, le=1)  # 1: replaced by the mirrored map's


class DistillConfig(StrictModel):
    method: MethodName
    teacher: TeacherConfig | None = None
    mimic: MimicConfig = Field(default_factory=MimicConfig)
    fgd: FGDConfig = Field(default_factory=FGDConfig)
    aid: AIDConfig = Field(default_factory=AIDConfig)
    ld: LDConfig = Field(default_factory=LDConfig)
    pkd: PKDConfig = Field(default_factory=PKDConfig)
    crosskd: CrossKDConfig = Field(default_factory=CrossKDConfig)
    liaf: LIAFConfig = Field(default_factory=LIAFConfig)
    inherit: bool = False  # init the student's neck and head from the teacher (inherit.py)
    # teacher_rms: every feature term compares F_T / s_l and adapter(F_S) / s_l, s_l the
    # teacher's detached RMS on level l (scale.py); none: the raw features
    feature_norm: Literal["teacher_rms", "none"] = "teacher_rms"
    # auto: 1x1 student -> teacher adapters only when the FPN widths differ; always: also
    # when they match (identity-initialised)
    adapter: Literal["auto", "always"] = "auto"
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    # a teacher made wrong on known instances (mechanism benches); None: as trained
    teacher_corruption: TeacherCorruptionConfig | None = None

    @model_validator(mode="after")
    def _own_selector_objectives(self) -> DistillConfig:
        objective = self.liaf.selector.objective
        if self.method not in ("liaf", "liaf+ld", "liaf+crosskd") or objective not in (
            "coop",
            "oracle",
        ):
            return self
        if self.method != "liaf":
            raise ValueError(
                f"liaf.selector.objective {objective!r} is built for method 'liaf' only, "
                f"not {self.method!r}"
            )
        if objective == "oracle" and self.teacher_corruption is None:
            raise ValueError(
                "liaf.selector.objective 'oracle' weighs instances by which ones "
                "distill.teacher_corruption altered: set teacher_corruption"
            )
        return self

    @model_validator(mode="after")
    def _teacher_needed(self) -> DistillConfig:
        if self.method != "none" and self.teacher is None:
            raise ValueError(f"method '{self.method}' needs a `teacher` block (config, checkpoint)")
        if self.inherit and self.teacher is None:
            raise ValueError("inherit: true needs a `teacher` block to inherit from")
        return self


class _DistillSection(StrictModel):
    """Wrapper so that error paths start with `distill.`."""

    distill: DistillConfig


def load_distill_config(
    raw: dict[str, Any] | None, source: str, base_dir: str | Path | None = None
) -> DistillConfig:
    """Validate the `distill:` mapping of `source`; relative teacher paths resolve
    against `base_dir` (the experiment config's folder) when given."""
    if raw is None:
        raise ConfigError(f"{source}: distill: missing (set at least `method`)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: distill: must be a mapping")
    cfg = validate(_DistillSection, {"distill": raw}, source).distill
    if cfg.teacher is not None and base_dir is not None:
        base = Path(base_dir)
        cfg.teacher = cfg.teacher.model_copy(
            update={
                "config": str(_resolve(cfg.teacher.config, base)),
                "checkpoint": str(_resolve(cfg.teacher.checkpoint, base)),
            }
        )
    return cfg


def _resolve(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base / p).resolve()
