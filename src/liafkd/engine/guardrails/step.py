"""Step health: one real training batch through the train module, with each loss
term's gradient measured per parameter group (student, each distiller part) by
torch.autograd.grad, so that no `.grad` is written and nothing steps; buffers
(BatchNorm statistics) are restored afterwards."""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from liafkd.config import ExperimentConfig
from liafkd.data.records import DatasetIndex
from liafkd.distill.config import DistillConfig
from liafkd.engine.guardrails.report import CheckResult, some_keys

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
    "loss_liaf_coop": "liaf.selector.coop.weight",
    "loss_liaf_coop_filter": "liaf.selector.coop.filter_weight",
    "loss_liaf_coop_diversity": "liaf.selector.coop.diversity",
    "loss_liaf_ld": "ld.weight",
    "loss_pkd": "pkd.weight",
    "loss_crosskd_qfl": "crosskd.weight_qfl",
    "loss_crosskd_kl": "crosskd.weight_kl",
}
# terms that train the selector alone (its inputs are detached from the student)
SELECTOR_TERMS = frozenset(
    {
        "loss_liaf_align",
        "loss_liaf_meta",
        "loss_liaf_coop",
        "loss_liaf_coop_filter",
        "loss_liaf_coop_diversity",
    }
)
# the selector starts at uniform weights, where the entropy's gradient is exactly zero
# and a one-instance batch gives the value 0: only its weight and finiteness are checked
REGULARISER_TERMS = frozenset({"loss_liaf_entropy"})
# 0 on a batch where no instance's imitation helps the held-out images (or with one
# image, no held-out half): a 0 there is an answer, not a broken term
MAY_BE_ZERO_TERMS = frozenset({"loss_liaf_meta"})


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
            f"{len(state.trainable)} tensors require grad ({some_keys(state.trainable, 3)})"
        )
    if state.in_optimizer:
        problems.append(f"{state.in_optimizer} tensors are among the trained parameters")
    if state.training:
        problems.append(
            f"{len(state.training)} modules in train mode ({some_keys(state.training, 3)})"
        )
    if state.buffers_changed:
        problems.append(f"the step changed {some_keys(state.buffers_changed, 3)}")
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
