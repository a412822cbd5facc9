"""What each distillation method needs from the detectors, checked before training.

A method names the detector capabilities (liafkd.models.build.DETECTOR_CAPABILITIES)
that both the student and the teacher must have; `check_detector_support` refuses a
pair that lacks one with a ConfigError naming the method, the detector and what is
missing, so that e.g. `ld` with a RetinaNet student stops before any training step.
"""

from __future__ import annotations

from liafkd.config import ConfigError, ModelConfig
from liafkd.models.build import detector_capabilities

FEATURES = frozenset({"fpn_feats"})
INSTANCE_FEATURES = frozenset({"fpn_feats", "instance_states"})
LD = frozenset({"box_distributions"})
CROSSKD = frozenset({"head_branches", "box_distributions"})

METHOD_REQUIREMENTS: dict[str, frozenset[str]] = {
    "none": frozenset(),
    "mimic": FEATURES,
    "fgd": FEATURES,
    "pkd": FEATURES,
    "aid": INSTANCE_FEATURES,
    "aid-instance": INSTANCE_FEATURES,
    "liaf": INSTANCE_FEATURES,
    "ld": LD,
    "liaf+ld": INSTANCE_FEATURES | LD,
    "crosskd": CROSSKD,
    "crosskd+pkd": CROSSKD | FEATURES,
    "fgd+crosskd": CROSSKD | FEATURES,
    "liaf+crosskd": INSTANCE_FEATURES | CROSSKD,
}

CAPABILITY_HELP = {
    "fpn_feats": "P3-P7 FPN features",
    "instance_states": "per-instance learning states",
    "box_distributions": "box-edge distributions (GFL with reg_max >= 1)",
    "head_branches": "a GFL head that can be cut and resumed",
}


def method_requirements(method: str) -> frozenset[str]:
    if method not in METHOD_REQUIREMENTS:
        raise ValueError(
            f"distill method {method!r} has no entry in "
            "liafkd.distill.capabilities.METHOD_REQUIREMENTS"
        )
    return METHOD_REQUIREMENTS[method]


def supported_methods(student: ModelConfig, teacher: ModelConfig) -> list[str]:
    """Every method this student and teacher can run."""
    both = detector_capabilities(student) & detector_capabilities(teacher)
    return [name for name, needs in METHOD_REQUIREMENTS.items() if needs <= both]


def check_detector_support(
    method: str, student: ModelConfig, teacher: ModelConfig | None, source: str
) -> None:
    """ConfigError when `method` needs something the student or the teacher lacks."""
    needs = method_requirements(method)
    if teacher is None:
        return
    for role, cfg in (("student", student), ("teacher", teacher)):
        missing = sorted(needs - detector_capabilities(cfg))
        if missing:
            what = ", ".join(f"{name} ({CAPABILITY_HELP[name]})" for name in missing)
            raise ConfigError(
                f"{source}: distill.method '{method}' needs {what}, which the {role} "
                f"(model.type {cfg.type}) does not provide. Methods this pair supports: "
                f"{', '.join(supported_methods(student, teacher))}"
            )
    if "box_distributions" in needs and student.reg_max != teacher.reg_max:
        raise ConfigError(
            f"{source}: distill.method '{method}' compares box-edge distributions, so "
            f"student and teacher need the same model.reg_max (student {student.reg_max}, "
            f"teacher {teacher.reg_max})"
        )
