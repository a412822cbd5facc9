"""Guardrails: stop a run that would otherwise finish quietly at the baseline or at zero.

Checked before `liafkd distill` (and `liafkd train`, where they apply) trains anything:
  teacher classes  the teacher's class names (checkpoint meta, else its config) equal the
                   dataset's, by name and order
  teacher weights  every tensor of the teacher's architecture is in its checkpoint;
                   missing ones stop the run unless distill.teacher.allow_missing
  pretrained       model.pretrained filled the whole backbone, unless
                   model.pretrained_allow_missing
  teacher sanity   the teacher's AP50 on distill.checks.teacher_batches validation
                   batches reaches distill.checks.min_teacher_ap50
  step health      one real training batch: every loss term finite; every distillation
                   term non-zero and sending gradient into the student; each distiller
                   part (adapters, selector, ...) reached by some term; no gradient into
                   the teacher. Gradients come from torch.autograd.grad, so no `.grad`
                   is written and nothing steps; buffers (BatchNorm statistics) are
                   restored afterwards.
Every FAIL carries its fix (CheckResult.fix), printed under it in the table and in the
error. A failed check raises GuardrailError, a ConfigError: `liafkd` prints it and exits 2.
`liafkd doctor CONFIG` runs the same checks without training and prints the table.
After training, `complete_summary` adds each loss term's contribution and the teacher's
metrics to summary.json.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from liafkd.config import AugmentConfig, ConfigError, ExperimentConfig, ModelConfig, load_config
from liafkd.data.records import DatasetIndex
from liafkd.distill.config import ChecksConfig, DistillConfig, TeacherConfig, load_distill_config
from liafkd.engine.distributed import context
from liafkd.outputs import write_text_atomic

Status = Literal["PASS", "WARN", "FAIL", "SKIP"]

# distillation term -> the config key (under `distill.`) that weights it
TERM_WEIGHTS = {
    "loss_mimic": "mimic.weight",
    "loss_ld": "ld.weight",
    "loss_fgd_fg": "fgd.alpha_fg",
    "loss_fgd_bg": "fgd.beta_bg",
    "loss_fgd_att": "fgd.gamma_att",
    "loss_fgd_global": "fgd.lambda_global",
    "loss_aid_fg": "aid.alpha_fg",
    "loss_aid_bg": "aid.beta_bg",
    "loss_aid_att": "aid.gamma_att",
    "loss_aid_global": "aid.lambda_global",
    "loss_liaf_fg": "liaf.alpha_fg",
    "loss_liaf_bg": "liaf.beta_bg",
    "loss_liaf_att": "liaf.gamma_att",
    "loss_liaf_global": "liaf.delta_global",
    "loss_liaf_entropy": "liaf.selector.entropy_beta",
    "loss_liaf_align": "liaf.selector.align_weight",
    "loss_liaf_meta": "liaf.selector.meta_weight",
    "loss_liaf_ld": "ld.weight",
    "loss_pkd": "pkd.weight",
    "loss_crosskd_qfl": "crosskd.weight_qfl",
    "loss_crosskd_kl": "crosskd.weight_kl",
}
# terms that train the selector alone (its inputs are detached from the student)
SELECTOR_TERMS = frozenset({"loss_liaf_align", "loss_liaf_meta"})
# the selector starts at uniform weights, where the entropy's gradient is exactly zero
# and a one-instance batch gives the value 0: only its weight and finiteness are checked
REGULARISER_TERMS = frozenset({"loss_liaf_entropy"})
# 0 on a batch where no instance's imitation helps the held-out images (or with one
# image, no held-out half): a 0 there is an answer, not a broken term
MAY_BE_ZERO_TERMS = frozenset({"loss_liaf_meta"})


@dataclass
class CheckResult:
    name: str
    status: Status
    detail: str  # what the check found
    fix: str = ""  # what to do about it: required for a FAIL

    def __post_init__(self) -> None:
        if self.failed and not self.fix:
            raise ValueError(f"check {self.name!r}: a FAIL needs its fix")

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"


class GuardrailError(ConfigError):
    """Checks failed before training; the message lists each failure and its fix."""

    def __init__(self, results: list[CheckResult]) -> None:
        self.results = results
        failed = [r for r in results if r.failed]
        lines = [f"{len(failed)} check(s) failed before training:"]
        for r in failed:
            lines += [f"- {r.name}: {r.detail}", f"  fix: {r.fix}"]
        super().__init__("\n".join(lines))


def format_table(results: list[CheckResult]) -> str:
    """One row per check; under a FAIL, its fix."""
    width = max((len(r.name) for r in results), default=0)
    lines = []
    for r in results:
        lines.append(f"{r.status:<5} {r.name:<{width}}  {r.detail}")
        if r.failed:
            lines.append(f"{'':<5} {'fix:':<{width}}  {r.fix}")
    return "\n".join(lines)


def _some(keys: list[str], limit: int = 10) -> str:
    more = f" ... (+{len(keys) - limit})" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


# --- teacher: classes and weights ------------------------------------------------


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
    teacher: TeacherConfig, class_names: list[str], teacher_cfg: ExperimentConfig | None = None
) -> tuple[nn.Module, TeacherLoad]:
    """Build the teacher from its config (`teacher_cfg` when the caller has read it
    already) and load what fits of its checkpoint."""
    from liafkd.engine.build import build_student
    from liafkd.engine.checkpoint import CheckpointError, load_checkpoint, load_state_dict_reporting

    teacher_cfg = teacher_cfg or load_config(teacher.config)
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
            parts.append(f"{len(keys)} {title}: {_some(keys)}")
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
    config as `run_config` (read once: `teacher_cfg` when the caller has read it)."""
    teacher_cfg = teacher_cfg or load_config(teacher.config)
    detector, load = read_teacher(teacher, class_names, teacher_cfg)
    results = teacher_load_results(load, class_names, teacher.allow_missing)
    if any(r.failed for r in results):
        raise GuardrailError(results)
    detector.load_report = load
    detector.run_config = teacher_cfg
    return detector.eval().requires_grad_(False)


# --- student: pretrained backbone --------------------------------------------------


def pretrained_result(student: nn.Module, model_cfg: ModelConfig) -> CheckResult:
    if not model_cfg.pretrained:
        return CheckResult("pretrained", "SKIP", "no model.pretrained: the backbone starts random")
    report = getattr(student, "pretrained_report", None)
    if report is None:
        return CheckResult(
            "pretrained", "WARN", f"{type(student).__name__} does not report its pretrained load"
        )
    if report.missing:
        detail = (
            f"{report.path}: {len(report.missing)} backbone tensors missing: "
            f"{_some(report.missing)}; {len(report.unexpected)} unexpected: "
            f"{_some(report.unexpected)} (a file saved with a prefix such as 'backbone.' or "
            "'module.' loads nothing)"
        )
        if model_cfg.pretrained_allow_missing:
            return CheckResult("pretrained", "WARN", detail + " (allowed by the config)")
        return CheckResult(
            "pretrained",
            "FAIL",
            detail,
            fix="use a torchvision-format ResNet state dict, or set "
            "model.pretrained_allow_missing: true",
        )
    if report.unexpected:
        return CheckResult(
            "pretrained",
            "WARN",
            f"{report.path}: all backbone tensors loaded; ignored {len(report.unexpected)} "
            f"unexpected keys: {_some(report.unexpected)}",
        )
    return CheckResult("pretrained", "PASS", f"all backbone tensors loaded from {report.path}")


# --- teacher sanity ----------------------------------------------------------------


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
    teacher_config: str,
    cfg: ExperimentConfig,
    checks: ChecksConfig,
    val_index: DatasetIndex,
    device: torch.device,
) -> tuple[CheckResult, dict[str, Any]]:
    """Evaluate the teacher on the first `teacher_batches` validation batches, with this
    run's preprocessing (what the teacher sees while distilling)."""
    from liafkd.engine.evaluate import evaluate_detector

    count = checks.teacher_batches * cfg.data.batch_size
    subset = dataclasses.replace(val_index, records=val_index.records[:count], problems=[])
    metrics, dets = evaluate_detector(
        teacher, subset, cfg.data.augment, device, cfg.data.batch_size
    )
    objects = sum(r.num_instances for r in subset.records)
    teacher_cfg = getattr(teacher, "run_config", None) or load_config(teacher_config)
    hint = normalisation_hint(teacher_cfg.data.augment, cfg.data.augment)
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


# --- step health -------------------------------------------------------------------


@dataclass
class StepProbe:
    """One training batch through the train module, with gradients per term."""

    values: dict[str, float]  # every loss term
    kd_names: list[str]  # the distiller's terms
    grads: dict[str, dict[str, float]]  # term -> parameter group -> gradient norm
    det_grad: float  # norm of the detection loss's gradient into the student
    teacher: TeacherState | None = None  # None without a teacher


@dataclass
class TeacherState:
    """How the teacher stood after the probe step. Gradient may pass *through* the
    teacher (CrossKD runs student features through its head); none may reach its
    weights, which need requires_grad False, no place in the optimizer, eval mode."""

    trainable: list[str]  # teacher tensors with requires_grad
    in_optimizer: int  # teacher tensors among the train module's parameters
    training: list[str]  # teacher modules left in train mode
    buffers_changed: list[str]  # running statistics the step updated


def parameter_groups(module: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters: "student", then one group per distiller part (adapters,
    selector, relations_student, ...)."""
    groups: dict[str, list[nn.Parameter]] = {
        "student": [p for p in module.student.parameters() if p.requires_grad]
    }
    distiller = getattr(module, "distiller", None)
    if distiller is not None:
        for name, param in distiller.named_parameters():
            if param.requires_grad:
                parts = name.split(".")
                part = parts[1] if parts[0] == "method" and len(parts) > 2 else parts[0]
                groups.setdefault(part, []).append(param)
    return groups


def grad_norms(loss: Tensor, groups: dict[str, list[nn.Parameter]]) -> dict[str, float]:
    """Gradient norm of `loss` into each group, via autograd.grad (no `.grad` written)."""
    params = [p for ps in groups.values() for p in ps]
    owners = [name for name, ps in groups.items() for _ in ps]
    norms = dict.fromkeys(groups, 0.0)
    if not loss.requires_grad or not params:
        return norms
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    squares: dict[str, list[Tensor]] = {name: [] for name in groups}
    for owner, grad in zip(owners, grads, strict=True):
        if grad is not None:
            squares[owner].append(grad.detach().float().pow(2).sum())
    for name, parts in squares.items():
        if parts:
            norms[name] = float(torch.stack(parts).sum().sqrt())
    return norms


def probe_step(module: nn.Module, images: Tensor, targets: list[dict[str, Tensor]]) -> StepProbe:
    """Run one batch as training would (train mode, full precision) and measure where
    each term's gradient goes; leaves parameters, `.grad` and buffers as they were."""
    distiller = getattr(module, "distiller", None)
    teacher = getattr(module, "teacher", None)
    teacher_buffers = (
        {n: b.detach().clone() for n, b in teacher.named_buffers()} if teacher is not None else {}
    )
    groups = parameter_groups(module)
    kd_terms: dict[str, Tensor] = {}
    hook = (
        distiller.register_forward_hook(lambda _m, _args, out: kd_terms.update(out))
        if distiller is not None
        else None
    )
    saved = {name: b.detach().clone() for name, b in module.named_buffers()}
    was_training = module.training
    try:
        module.train()
        with torch.enable_grad():
            terms = module(images, targets)
            kd_names = [n for n in terms if n in kd_terms]
            det_loss = sum(v for n, v in terms.items() if n not in kd_terms)
            probe = StepProbe(
                values={n: float(v.detach()) for n, v in terms.items()},
                kd_names=kd_names,
                grads={n: grad_norms(terms[n], groups) for n in kd_names},
                det_grad=grad_norms(det_loss, {"student": groups["student"]})["student"],
            )
        if teacher is not None:
            probe.teacher = teacher_state(module, teacher, teacher_buffers)
    finally:
        if hook is not None:
            hook.remove()
        with torch.no_grad():
            for name, buffer in module.named_buffers():
                buffer.copy_(saved[name])
        module.train(was_training)
        _forget_probe_records(module)
    return probe


def teacher_state(
    module: nn.Module, teacher: nn.Module, buffers_before: dict[str, Tensor]
) -> TeacherState:
    trained = {id(p) for p in module.parameters()}
    return TeacherState(
        trainable=[n for n, p in teacher.named_parameters() if p.requires_grad],
        in_optimizer=sum(id(p) in trained for p in teacher.parameters()),
        training=[n or "(root)" for n, m in teacher.named_modules() if m.training],
        buffers_changed=[
            n for n, b in teacher.named_buffers() if not torch.equal(b, buffers_before[n])
        ],
    )


def _forget_probe_records(module: nn.Module) -> None:
    """Drop the probe batch's instance weights, so the first epoch's statistics and
    dumps hold training batches only."""
    distiller = getattr(module, "distiller", None)
    if distiller is not None:
        distiller.reset_stats()
    rows = getattr(module, "_instance_rows", None)  # DistillTrainModule's dump buffer
    if isinstance(rows, list):
        rows.clear()


def weight_of(dcfg: DistillConfig | None, term: str) -> tuple[str, float] | None:
    """(`distill.<key>`, value) of the weight of `term`, when known."""
    key = TERM_WEIGHTS.get(term)
    if dcfg is None or key is None:
        return None
    value: Any = dcfg
    for part in key.split("."):
        value = getattr(value, part, None)
    return (f"distill.{key}", float(value)) if isinstance(value, (int, float)) else None


NONFINITE_FIX = (
    "a NaN or inf before any update comes from the batch or the method: `liafkd data "
    "check` on this config finds degenerate boxes and unreadable images; with clean data, "
    "report it with this table"
)
ALLOW_ZERO_HINT = "--set 'distill.checks.allow_zero=[{name}]'"


def term_result(
    probe: StepProbe, name: str, dcfg: DistillConfig | None, allow_zero: list[str]
) -> CheckResult:
    value = probe.values[name]
    grads = probe.grads[name]
    check = f"term {name}"
    weight = weight_of(dcfg, name)
    zero_weight = weight is not None and weight[1] == 0
    if not math.isfinite(value):
        return CheckResult(check, "FAIL", f"is {value} on the first batch", fix=NONFINITE_FIX)
    if name in allow_zero:
        return CheckResult(check, "PASS", f"= {value:.4g} (distill.checks.allow_zero)")
    if value == 0 and name in MAY_BE_ZERO_TERMS and not zero_weight:
        return CheckResult(check, "PASS", "= 0 on the first batch (no instance helps there)")
    if zero_weight or (value == 0 and name not in REGULARISER_TERMS):
        why = f"its weight {weight[0]} is 0" if zero_weight else "it contributes nothing"
        return CheckResult(
            check,
            "FAIL",
            f"is exactly 0 on the first batch: {why}",
            fix="give it a positive weight, or list it in distill.checks.allow_zero if "
            f"that is intended ({ALLOW_ZERO_HINT.format(name=name)})",
        )
    if name in REGULARISER_TERMS:
        return CheckResult(check, "PASS", f"= {value:.4g} (selector regulariser)")
    target = "selector" if name in SELECTOR_TERMS else "student"
    norm = grads.get(target, 0.0)
    if not math.isfinite(norm):
        return CheckResult(
            check, "FAIL", f"sends a non-finite gradient into the {target}", fix=NONFINITE_FIX
        )
    if norm == 0:
        cause = (
            "the student's features or outputs reach it detached"
            if target == "student"
            else "the selector's logits reach it detached"
        )
        return CheckResult(
            check,
            "FAIL",
            f"= {value:.4g} but sends no gradient into the {target} ({cause}): "
            "distilling with it would change nothing",
            fix="a term that trains nothing is a defect of the method: report it with this "
            "table; to train anyway, list it in distill.checks.allow_zero "
            f"({ALLOW_ZERO_HINT.format(name=name)})",
        )
    return CheckResult(check, "PASS", f"= {value:.4g}, gradient norm into the {target} {norm:.3g}")


def step_results(
    probe: StepProbe, dcfg: DistillConfig | None, allow_zero: list[str]
) -> list[CheckResult]:
    results = []
    det_names = [n for n in probe.values if n not in probe.kd_names]
    bad = {n: probe.values[n] for n in det_names if not math.isfinite(probe.values[n])}
    if bad:
        results.append(
            CheckResult("detection losses", "FAIL", f"non-finite terms {bad}", fix=NONFINITE_FIX)
        )
    elif probe.det_grad == 0 or not math.isfinite(probe.det_grad):
        results.append(
            CheckResult(
                "detection losses",
                "FAIL",
                f"gradient norm into the student {probe.det_grad} (frozen or detached student?)",
                fix="the student must train on its own loss: check model.frozen_stages; "
                "otherwise report it with this table",
            )
        )
    else:
        shown = ", ".join(f"{n} {probe.values[n]:.4g}" for n in det_names)
        results.append(CheckResult("detection losses", "PASS", f"finite with gradient: {shown}"))
    if dcfg is not None and dcfg.method != "none" and not probe.kd_names:
        results.append(
            CheckResult(
                "distillation terms",
                "FAIL",
                f"method {dcfg.method!r} returned no distillation terms on the first batch",
                fix="check that distill.method is the one intended and that the training "
                "images hold objects (`liafkd data check`)",
            )
        )
    results += [term_result(probe, n, dcfg, allow_zero) for n in probe.kd_names]
    results += part_results(probe, allow_zero)
    results += unknown_allowed(probe, allow_zero)
    if probe.teacher is not None:
        results.append(teacher_frozen_result(probe.teacher))
    return results


def distiller_parts(probe: StepProbe) -> list[str]:
    """The trainable distiller parts (adapters, selector, ...) of the probed module."""
    return sorted({g for norms in probe.grads.values() for g in norms} - {"student"})


def part_results(probe: StepProbe, allow_zero: Collection[str] = ()) -> list[CheckResult]:
    """Each trainable distiller part must be reached by some distillation term. A part
    that is not trainable by design has no parameters (LIAF-KD builds no selector at
    lam 0) and is not checked; one listed in allow_zero may receive none."""
    results = []
    for part in distiller_parts(probe):
        name = f"distiller {part}"
        norms = {term: by_part.get(part, 0.0) for term, by_part in probe.grads.items()}
        if not all(math.isfinite(n) for n in norms.values()):
            results.append(
                CheckResult(name, "FAIL", f"non-finite gradient {norms}", fix=NONFINITE_FIX)
            )
        elif any(n > 0 for n in norms.values()):
            reaching = ", ".join(f"{t} {n:.3g}" for t, n in norms.items() if n > 0)
            results.append(CheckResult(name, "PASS", f"gradient from {reaching}"))
        elif part in allow_zero:
            results.append(CheckResult(name, "PASS", "no gradient (distill.checks.allow_zero)"))
        elif zero := [t for t in norms if t in MAY_BE_ZERO_TERMS and probe.values[t] == 0]:
            results.append(CheckResult(name, "PASS", f"none on this batch: {zero[0]} is 0 here"))
        else:
            results.append(
                CheckResult(
                    name,
                    "FAIL",
                    "no distillation term sends it gradient: it would not learn",
                    fix=part_fix(part),
                )
            )
    return results


def part_fix(part: str) -> str:
    allow = f"list it in distill.checks.allow_zero ({ALLOW_ZERO_HINT.format(name=part)})"
    if part == "selector":
        return (
            "the selector learns from differences between instances: a batch with one "
            "object gives it none (a larger data.batch_size helps); uniform weights need no "
            f"selector (distill.liaf.selector.lam: 0); to train it anyway, {allow}"
        )
    return f"if it is not meant to learn, {allow}; otherwise report it with this table"


def unknown_allowed(probe: StepProbe, allow_zero: list[str]) -> list[CheckResult]:
    """A WARN for each distill.checks.allow_zero entry that names no term or part here
    (a typo would otherwise silently allow nothing)."""
    known = set(probe.kd_names) | set(distiller_parts(probe))
    return [
        CheckResult(
            "distill.checks.allow_zero",
            "WARN",
            f"{name!r} is no distillation term or distiller part of this run "
            f"(terms: {', '.join(probe.kd_names) or 'none'}; parts: "
            f"{', '.join(distiller_parts(probe)) or 'none'})",
        )
        for name in allow_zero
        if name not in known
    ]


def teacher_frozen_result(state: TeacherState) -> CheckResult:
    problems = []
    if state.trainable:
        problems.append(
            f"{len(state.trainable)} tensors require grad ({_some(state.trainable, 3)})"
        )
    if state.in_optimizer:
        problems.append(f"{state.in_optimizer} tensors are among the trained parameters")
    if state.training:
        problems.append(f"{len(state.training)} modules in train mode ({_some(state.training, 3)})")
    if state.buffers_changed:
        problems.append(f"the step changed {_some(state.buffers_changed, 3)}")
    if problems:
        return CheckResult(
            "teacher frozen",
            "FAIL",
            "; ".join(problems) + ": the teacher would change while distilling",
            fix="freeze the teacher with eval().requires_grad_(False) and keep it out of the "
            "module tree (a custom train module must do what DistillTrainModule does)",
        )
    return CheckResult(
        "teacher frozen", "PASS", "no teacher weight trains; eval mode; statistics unchanged"
    )


def probe_batch(
    index: DatasetIndex, cfg: ExperimentConfig, max_batches: int = 8
) -> tuple[Tensor, list[dict[str, Any]]]:
    """The first training batch (augmented, as training draws them) with objects."""
    from liafkd.data.dataset import build_loader

    loader = build_loader(
        index,
        cfg.data.augment,
        cfg.data.batch_size,
        train=True,
        num_workers=0,
        seed=cfg.train.seed,
        drop_unreadable=cfg.data.train.policy == "drop",  # as training does
    )
    last = None
    for seen, (images, targets, _sizes) in enumerate(loader, start=1):
        if len(targets):
            last = images, targets
        if (last and sum(len(t["labels"]) for t in targets) > 0) or seen >= max_batches:
            break
    if last is None:
        raise ValueError("data.train: no batch to check (no image of the dataset is readable)")
    return last


def step_health(
    module: nn.Module,
    cfg: ExperimentConfig,
    dcfg: DistillConfig | None,
    train_index: DatasetIndex,
    device: torch.device,
) -> list[CheckResult]:
    images, targets = probe_batch(train_index, cfg)
    targets = [
        {k: v.to(device) if isinstance(v, Tensor) else v for k, v in t.items()} for t in targets
    ]
    probe = probe_step(module, images.to(device), targets)
    allow_zero = dcfg.checks.allow_zero if dcfg is not None else []
    return step_results(probe, dcfg, allow_zero)


# --- all checks of a run --------------------------------------------------------------


@dataclass
class RunChecks:
    results: list[CheckResult]
    teacher: dict[str, Any]  # the teacher's metrics, for the run's summary

    @property
    def failed(self) -> bool:
        return any(r.failed for r in self.results)


def run_distill_config(cfg: ExperimentConfig, source: str) -> DistillConfig | None:
    if cfg.distill is None:
        return None
    return load_distill_config(cfg.distill, source, base_dir=Path(source).resolve().parent)


def collect_checks(
    cfg: ExperimentConfig,
    source: str,
    module: nn.Module,
    train_index: DatasetIndex,
    val_index: DatasetIndex,
    device: torch.device,
) -> RunChecks:
    """Every check that applies to this run (train module already on `device`)."""
    dcfg = run_distill_config(cfg, source)
    checks = dcfg.checks if dcfg is not None else ChecksConfig()
    results = [pretrained_result(module.student, cfg.model)]
    teacher_info: dict[str, Any] = {}
    teacher = getattr(module, "teacher", None)
    if teacher is not None and dcfg is not None and dcfg.teacher is not None:
        load = getattr(teacher, "load_report", None)
        if load is not None:
            results += teacher_load_results(
                load, train_index.class_names, dcfg.teacher.allow_missing
            )
        teacher_info["checkpoint"] = dcfg.teacher.checkpoint
        run = teacher_run_metrics(dcfg.teacher.checkpoint)
        if run is not None:
            teacher_info["run"] = run
        if checks.enabled and checks.teacher_sanity:
            result, sanity = teacher_sanity(
                teacher, dcfg.teacher.config, cfg, checks, val_index, device
            )
            results.append(result)
            teacher_info["sanity"] = sanity
        else:
            results.append(_switched_off("teacher sanity", "teacher_sanity"))
    if checks.enabled and checks.step_health:
        results += step_health(module, cfg, dcfg, train_index, device)
    else:
        results.append(_switched_off("step health", "step_health"))
    return RunChecks(results, teacher_info)


def _switched_off(name: str, switch: str) -> CheckResult:
    return CheckResult(name, "SKIP", f"switched off (distill.checks.enabled / .{switch})")


def run_checks(
    cfg: ExperimentConfig,
    source: str,
    module: nn.Module,
    train_index: DatasetIndex,
    val_index: DatasetIndex,
    device: torch.device,
) -> RunChecks:
    """Print the check table; GuardrailError when any check failed."""
    report = collect_checks(cfg, source, module, train_index, val_index, device)
    print("checks before training:\n" + format_table(report.results), flush=True)
    if report.failed:
        raise GuardrailError(report.results)
    return report


# --- after training -------------------------------------------------------------------


def loss_term_summary(metrics_path: str | Path) -> dict[str, dict[str, float]]:
    """Each `loss_*` term over the run from metrics.jsonl's epoch records (the step
    records when no epoch finished): mean over epochs, first and last epoch's mean,
    and share = |mean| / sum of |means| (magnitudes, so that a negative regulariser
    counts by its size). A term that fades to nothing shows as last << first."""
    path = Path(metrics_path)
    if not path.is_file():
        return {}
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # a line cut short by a killed run
            continue
    # a rerun or resume into the same folder logs an epoch again: the latest counts
    by_epoch = {r["epoch"]: r for r in records if r.get("type") == "epoch"}
    rows = [by_epoch[e] for e in sorted(by_epoch)] or [
        r for r in records if r.get("type") == "train"
    ]
    names = sorted({k for r in rows for k in r if k.startswith("loss_")})
    series = {n: [float(r[n]) for r in rows if n in r] for n in names}
    means = {n: sum(v) / len(v) for n, v in series.items()}
    magnitude = sum(abs(m) for m in means.values())
    return {
        n: {
            "mean": means[n],
            "share": abs(means[n]) / magnitude if magnitude else 0.0,
            "first": series[n][0],
            "last": series[n][-1],
        }
        for n in names
    }


def format_loss_terms(terms: dict[str, dict[str, float]]) -> str:
    lines = [f"{'loss term':<22}{'mean':>11}{'share':>8}{'first':>11}{'last':>11}"]
    for name, t in terms.items():
        share = f"{100 * t['share']:.1f}%"
        lines.append(f"{name:<22}{t['mean']:>11.4g}{share:>8}{t['first']:>11.4g}{t['last']:>11.4g}")
    return "\n".join(lines)


def complete_summary(
    out_dir: str | Path, summary: dict[str, Any], teacher: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Add "loss_terms" (and "teacher", when given) to the run's summary.json; print
    the terms and the teacher's AP beside the student's."""
    out = Path(out_dir)
    summary = {**summary, "loss_terms": loss_term_summary(out / "metrics.jsonl")}
    if teacher:
        summary["teacher"] = teacher
    if context().is_main:  # under torchrun rank 0 writes the run's files
        write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
    if summary["loss_terms"]:
        print(format_loss_terms(summary["loss_terms"]))
    if teacher:
        print(side_by_side(summary.get("final", {}), teacher))
    return summary


def side_by_side(student_final: dict[str, Any], teacher: dict[str, Any]) -> str:
    def fmt(value: Any) -> str:  # percent, as every table liafkd prints
        return f"{100 * value:.1f}" if isinstance(value, (int, float)) else "-"

    parts = [f"student AP {fmt(student_final.get('AP'))} AP50 {fmt(student_final.get('AP50'))}"]
    run = (teacher.get("run") or {}).get("final") or {}
    if run:
        parts.append(f"teacher (its own run) AP {fmt(run.get('AP'))} AP50 {fmt(run.get('AP50'))}")
    sanity = teacher.get("sanity")
    if sanity:
        parts.append(
            f"teacher on {sanity['images']} val images AP {fmt(sanity['AP'])} "
            f"AP50 {fmt(sanity['AP50'])}"
        )
    return " | ".join(parts)
