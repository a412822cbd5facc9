"""Every check that applies to one run, in order: the student's pretrained backbone,
the teacher (teacher.py), the step health (step.py); `run_checks` prints the table and
stops the run on a FAIL."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from liafkd.config import ExperimentConfig, ModelConfig
from liafkd.data.records import DatasetIndex
from liafkd.distill.config import ChecksConfig, DistillConfig, load_distill_config
from liafkd.engine.guardrails.report import CheckResult, GuardrailError, format_table, some_keys
from liafkd.engine.guardrails.step import step_health
from liafkd.engine.guardrails.teacher import (
    teacher_load_results,
    teacher_run_metrics,
    teacher_sanity,
)


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
            f"{some_keys(report.missing)}; {len(report.unexpected)} unexpected: "
            f"{some_keys(report.unexpected)} (a file saved with a prefix such as 'backbone.' or "
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
            f"unexpected keys: {some_keys(report.unexpected)}",
        )
    return CheckResult("pretrained", "PASS", f"all backbone tensors loaded from {report.path}")


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
            result, sanity = teacher_sanity(teacher, cfg, checks, val_index, device)
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
