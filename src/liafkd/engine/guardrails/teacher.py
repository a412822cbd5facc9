"""Checks of the teacher: its classes and weights as loaded, and its AP on a few
validation batches (teacher sanity). `load_teacher` is the one place that reads the
teacher's config; the rest take it from there."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from liafkd.config import AugmentConfig, ExperimentConfig, load_config
from liafkd.data.records import DatasetIndex
from liafkd.distill.config import ChecksConfig, TeacherConfig
from liafkd.engine.guardrails.report import CheckResult, GuardrailError, some_keys


@dataclass
class TeacherLoad:
    """What loading a teacher checkpoint found."""

    checkpoint: str
    trained_on: list[str] | None  # the teacher's class names, when known
    names_from: str  # where `trained_on` came from
    total: int  # tensors in the teacher's state dict
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)


def read_teacher(
    teacher: TeacherConfig, class_names: list[str], teacher_cfg: ExperimentConfig
) -> tuple[nn.Module, TeacherLoad]:
    """Build the teacher from its config (`teacher_cfg`, read by the caller) and load
    what fits of its checkpoint."""
    from liafkd.engine.build import build_student
    from liafkd.engine.checkpoint import CheckpointError, load_checkpoint, load_state_dict_reporting

    ckpt = load_checkpoint(teacher.checkpoint)
    state = ckpt.get("model")
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{teacher.checkpoint}: no 'model' state dict (found keys {sorted(ckpt)[:10]}); "
            "a liafkd checkpoint is {'model': state_dict, 'meta': {...}}"
        )
    trained_on, names_from = ckpt.get("meta", {}).get("class_names"), "checkpoint meta"
    if trained_on is None and teacher_cfg.data.train.classes:
        trained_on, names_from = teacher_cfg.data.train.classes, f"{teacher.config} data.train"
    # the checkpoint replaces every weight: the teacher's ImageNet file is not needed here
    model_cfg = teacher_cfg.model.model_copy(update={"pretrained": None})
    detector = build_student(model_cfg, len(class_names))
    own = detector.state_dict()
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    )
    missing, unexpected = load_state_dict_reporting(
        detector, state, teacher.checkpoint, strict=False
    )
    # BatchNorm's batch counter is no weight (older checkpoints lack it)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    load = TeacherLoad(
        checkpoint=teacher.checkpoint,
        trained_on=list(trained_on) if trained_on is not None else None,
        names_from=names_from,
        total=len(own),
        missing=missing,
        unexpected=unexpected,
        mismatched=mismatched,
    )
    return detector, load


def class_result(load: TeacherLoad, class_names: list[str]) -> CheckResult:
    if load.trained_on is None:
        return CheckResult(
            "teacher classes",
            "WARN",
            f"{load.checkpoint} names no classes (no meta.class_names) and the teacher config "
            f"lists none; cannot compare with the dataset's {class_names}",
        )
    if load.trained_on != list(class_names):
        return CheckResult(
            "teacher classes",
            "FAIL",
            f"the teacher ({load.names_from}) was trained on {load.trained_on}, but the "
            f"dataset has {list(class_names)}; they must match by name and order",
            fix="rename the dataset's classes with data.train/val.class_map and order them "
            "with data.*.classes, or point distill.teacher at a teacher of these classes",
        )
    return CheckResult("teacher classes", "PASS", f"{len(class_names)} classes match")


def weights_result(load: TeacherLoad, allow_missing: bool) -> CheckResult:
    parts = []
    for title, keys in (
        ("missing keys", load.missing),
        ("shape mismatches", load.mismatched),
        ("unexpected keys", load.unexpected),
    ):
        if keys:
            parts.append(f"{len(keys)} {title}: {some_keys(keys)}")
    report = "; ".join(parts)
    if not load.missing and not load.mismatched:
        loaded = f"all {load.total} tensors loaded from {load.checkpoint}"
        if load.unexpected:
            return CheckResult("teacher weights", "WARN", f"{loaded}; ignored {report}")
        return CheckResult("teacher weights", "PASS", loaded)
    if allow_missing:
        return CheckResult(
            "teacher weights",
            "WARN",
            f"{load.checkpoint}: {report} (allowed by distill.teacher.allow_missing: "
            "those weights stay randomly initialised)",
        )
    return CheckResult(
        "teacher weights",
        "FAIL",
        f"{load.checkpoint}: {report}. The teacher would run with random weights there",
        fix="point distill.teacher.checkpoint at the teacher's final.pt or best.pt (and "
        "distill.teacher.config at its config), or set distill.teacher.allow_missing: true",
    )


def teacher_load_results(
    load: TeacherLoad, class_names: list[str], allow_missing: bool
) -> list[CheckResult]:
    return [class_result(load, class_names), weights_result(load, allow_missing)]


def load_teacher(
    teacher: TeacherConfig, class_names: list[str], teacher_cfg: ExperimentConfig | None = None
) -> nn.Module:
    """The frozen teacher; GuardrailError for other classes or missing weights. The
    load report stays on the teacher as `load_report` for the run's check table, its
    config as `run_config` for the sanity check. The one place that reads the teacher's
    config, when the caller has not (`teacher_cfg`)."""
    teacher_cfg = teacher_cfg or load_config(teacher.config)
    detector, load = read_teacher(teacher, class_names, teacher_cfg)
    results = teacher_load_results(load, class_names, teacher.allow_missing)
    if any(r.failed for r in results):
        raise GuardrailError(results)
    detector.load_report = load
    detector.run_config = teacher_cfg
    return detector.eval().requires_grad_(False)


def sanity_result(
    ap50: float | None, images: int, objects: int, detections: int, threshold: float, hint: str
) -> CheckResult:
    """Judge the teacher's AP50 on the first validation images. With objects present,
    an undefined AP50 (no detections at all) counts as 0."""
    if objects == 0:
        return CheckResult(
            "teacher sanity", "SKIP", f"the first {images} validation images hold no objects"
        )
    ap50 = ap50 or 0.0
    measured = (
        f"teacher AP50 {100 * ap50:.2f} (percent) on {images} val images ({detections} detections)"
    )
    if ap50 >= threshold:
        return CheckResult(
            "teacher sanity",
            "PASS",
            f"{measured} >= {100 * threshold:.2f} (distill.checks.min_teacher_ap50 {threshold})",
        )
    return CheckResult(
        "teacher sanity",
        "FAIL",
        f"{measured} is below distill.checks.min_teacher_ap50 = {threshold} "
        f"({100 * threshold:.2f} percent): the teacher "
        "does not detect this dataset's objects. Likely causes: a wrong checkpoint (not the "
        "trained teacher), classes in another order or meaning, or other image "
        f"normalisation{hint}",
        fix="point distill.teacher.checkpoint at the trained teacher, match the class "
        "order (data.*.classes) and data.augment.mean/std to the teacher's config. More "
        "batches (distill.checks.teacher_batches) give a steadier estimate; "
        "distill.checks.teacher_sanity: false skips this check",
    )


def normalisation_hint(teacher_aug: AugmentConfig, aug: AugmentConfig) -> str:
    if (teacher_aug.mean, teacher_aug.std) == (aug.mean, aug.std):
        return ""
    return (
        f" (the teacher's config normalises with mean {list(teacher_aug.mean)}, std "
        f"{list(teacher_aug.std)}; this run with mean {list(aug.mean)}, std {list(aug.std)})"
    )


def teacher_sanity(
    teacher: nn.Module,
    cfg: ExperimentConfig,
    checks: ChecksConfig,
    val_index: DatasetIndex,
    device: torch.device,
) -> tuple[CheckResult, dict[str, Any]]:
    """Evaluate the teacher on the first `teacher_batches` validation batches, with this
    run's preprocessing (what the teacher sees while distilling). The teacher's own
    preprocessing, for the hint, comes from the config load_teacher kept on it."""
    from liafkd.engine.evaluate import evaluate_detector

    count = checks.teacher_batches * cfg.data.batch_size
    subset = dataclasses.replace(val_index, records=val_index.records[:count], problems=[])
    metrics, dets = evaluate_detector(
        teacher, subset, cfg.data.augment, device, cfg.data.batch_size
    )
    objects = sum(r.num_instances for r in subset.records)
    teacher_cfg: ExperimentConfig | None = getattr(teacher, "run_config", None)
    hint = normalisation_hint(teacher_cfg.data.augment, cfg.data.augment) if teacher_cfg else ""
    result = sanity_result(
        metrics["AP50"], len(subset.records), objects, len(dets), checks.min_teacher_ap50, hint
    )
    sanity = {
        "images": len(subset.records),
        "detections": len(dets),
        **{k: metrics[k] for k in ("AP", "AP50", "AP75")},
    }
    return result, sanity


def teacher_run_metrics(checkpoint: str) -> dict[str, Any] | None:
    """The final metrics of the teacher's own training run, when its checkpoint sits in
    the run folder beside summary.json."""
    path = Path(checkpoint).parent / "summary.json"
    try:
        final = json.loads(path.read_text()).get("final")
    except (OSError, ValueError, AttributeError):
        return None
    return {"summary": str(path), "final": final} if final else None
