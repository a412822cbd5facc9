"""What `liafkd doctor CONFIG` checks: every check `liafkd train|distill` runs before
training, plus the data summary, collected rather than stopping at the first failure."""

from __future__ import annotations

from torch import nn

from liafkd.config import DatasetConfig, ExperimentConfig, load_config
from liafkd.data.records import DatasetIndex
from liafkd.engine.guardrails import CheckResult, GuardrailError
from liafkd.engine.runs import build_train_module


def dataset_result(what: str, ds_cfg: DatasetConfig) -> tuple[CheckResult, DatasetIndex | None]:
    """Read one split as training would; summarise it, warn on problems and on classes
    with no objects."""
    from liafkd.data.check import summarize
    from liafkd.engine.build import load_index

    try:
        index = load_index(ds_cfg, what)
    except (ValueError, OSError) as e:  # ConfigError and DatasetError are ValueErrors
        fix = f"correct {what} where the message says; `liafkd data check` details a dataset"
        return CheckResult(what, "FAIL", str(e), fix=fix), None
    summary = summarize(index, ds_cfg)
    detail = (
        f"{summary['images']} images, {summary['instances']} objects, "
        f"{len(index.class_names)} classes, {len(index.problems)} problems"
    )
    empty = [name for name, n in summary["instances_per_class"].items() if n == 0]
    if empty:
        return CheckResult(what, "WARN", f"{detail}; no objects of {empty}"), index
    if index.problems:
        return CheckResult(what, "WARN", f"{detail} (`liafkd data check` lists them)"), index
    return CheckResult(what, "PASS", detail), index


def data_results(
    cfg: ExperimentConfig,
) -> tuple[list[CheckResult], tuple[DatasetIndex, DatasetIndex] | None]:
    train_result, train = dataset_result("data.train", cfg.data.train)
    val_result, val = dataset_result("data.val", cfg.data.val)
    results = [train_result, val_result]
    if train is None or val is None:
        return results, None
    if train.class_names != val.class_names:
        results.append(
            CheckResult(
                "data classes",
                "FAIL",
                f"data.train has {train.class_names}, data.val has {val.class_names}",
                fix="give both splits the same classes in the same order (data.*.classes; "
                "data.*.class_map renames them)",
            )
        )
        return results, None
    return results, (train, val)


def model_result(module: nn.Module, distilling: bool) -> CheckResult:
    """The model's size. A `train` config trains a detector alone (a teacher, or a
    student without distillation): it is no "student" there."""
    detector = sum(p.numel() for p in module.student.parameters())
    name = type(module.student).__name__
    if not distilling:
        return CheckResult(
            "model", "PASS", f"{name} detector, {detector / 1e6:.2f}M parameters (trained alone)"
        )
    trained = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return CheckResult(
        "model",
        "PASS",
        f"{name} student {detector / 1e6:.2f}M parameters; "
        f"{trained / 1e6:.2f}M trained (with the distiller's)",
    )


def diagnose(config: str, overrides: list[str]) -> list[CheckResult]:
    """Every check, collected rather than stopping at the first failure."""
    from liafkd.engine.checkpoint import CheckpointError
    from liafkd.engine.distributed import resolve_device
    from liafkd.engine.guardrails import collect_checks
    from liafkd.engine.trainer import seed_everything

    cfg = load_config(config, overrides)
    results, indices = data_results(cfg)
    if indices is None:
        return results + [CheckResult("model", "SKIP", "needs the data")]
    train_index, val_index = indices
    seed_everything(cfg.train.seed)
    try:
        module = build_train_module(cfg, config, train_index.class_names)
    except GuardrailError as e:  # the teacher's classes or weights
        return results + e.results + [CheckResult("step health", "SKIP", "needs the teacher")]
    except (ValueError, OSError, CheckpointError) as e:
        fix = "correct the model or distill block, or the file, that the message names"
        return results + [CheckResult("model", "FAIL", str(e), fix=fix)]
    results.append(model_result(module, cfg.distill is not None))
    device = resolve_device(cfg.train.device)
    try:
        checks = collect_checks(cfg, config, module.to(device), train_index, val_index, device)
    except (ValueError, RuntimeError) as e:  # an image, the evaluation or the forward failed
        fix = (
            "the first training batch or the teacher's evaluation failed: `liafkd data "
            "check` finds unreadable images and bad boxes; with clean data, report it "
            "with this table"
        )
        return results + [CheckResult("checks", "FAIL", f"{type(e).__name__}: {e}", fix=fix)]
    return results + checks.results
