"""`liafkd train` and `liafkd distill` as functions: build what a config trains (the
detector alone, or student + frozen teacher + distiller), run the pre-training checks,
train, and return the run's summary. The CLI modules only parse arguments and call these."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from liafkd.config import ConfigError, ExperimentConfig, load_config
from liafkd.engine.build import build_student, load_indices
from liafkd.engine.distributed import broadcast_object, distributed_run, main_first
from liafkd.engine.guardrails import complete_summary, load_teacher, run_checks
from liafkd.engine.rundir import open_run_dir
from liafkd.engine.trainer import DetectorTrainModule, Trainer, format_final, seed_everything
from liafkd.outputs import Input


def resolve_resume(arg: str | None, trainer: Trainer) -> Path | None:
    """`--resume` (the newest checkpoint in output_dir), `--resume PATH`, or None."""
    if arg is None:
        return None
    if arg == "latest":
        latest = broadcast_object(trainer.latest_checkpoint())  # rank 0's view for all
        if latest is None:
            print(f"no checkpoint in {trainer.ckpt_dir}; starting from scratch")
        return latest
    return Path(arg)


def train_detector(
    config: str,
    overrides: list[str],
    resume: str | None = None,
    overwrite: bool = False,
    strict_resume: bool = False,
) -> dict:
    """`liafkd train` as a function: returns the run's summary."""
    cfg = load_config(config, overrides)
    if cfg.distill is not None:
        raise ConfigError(f"{config}: has a `distill:` block; run it with `liafkd distill`")
    return fit_run(cfg, config, resume, overwrite, strict_resume)


def fit_run(
    cfg: ExperimentConfig,
    config: str,
    resume: str | None,
    overwrite: bool,
    strict_resume: bool,
    extra_meta: dict[str, str] | None = None,
) -> dict:
    """Open the run folder, build what `cfg` trains (build_train_module), run the checks,
    train, and complete the summary: the body of `liafkd train` and `liafkd distill`."""
    inputs = run_inputs(cfg, config)
    with (
        distributed_run(cfg.train.device),  # under torchrun: one process per GPU
        open_run_dir(cfg.output_dir, resume, overwrite, inputs),  # before building
    ):
        seed_everything(cfg.train.seed)  # model initialisation follows the seed
        with main_first():  # rank 0 generates synthetic data once
            train_index, val_index = load_indices(cfg)
        # distillation: every process holds its own frozen teacher; DDP wraps student +
        # distiller
        module = build_train_module(cfg, config, train_index.class_names)
        trainer = Trainer(cfg, module, train_index, val_index, extra_meta=extra_meta)
        checks = run_checks(cfg, config, trainer.module, train_index, val_index, trainer.device)
        summary = trainer.fit(resolve_resume(resume, trainer), strict_resume)
        if not trainer.already_finished:
            summary = complete_summary(cfg.output_dir, summary, checks.teacher)
        print(format_final(summary, cfg.output_dir))
    return summary


def run_inputs(cfg: ExperimentConfig, source: str) -> list[Input]:
    """The files a run reads that it must never write over: its config and, for
    distillation, the teacher's config and checkpoint."""
    inputs = [Input(Path(source), "config")]
    if cfg.distill is not None:
        from liafkd.distill.config import load_distill_config

        dcfg = load_distill_config(cfg.distill, source, base_dir=Path(source).resolve().parent)
        if dcfg.teacher is not None:
            inputs += [
                Input(Path(dcfg.teacher.config), "teacher config"),
                Input(Path(dcfg.teacher.checkpoint), "teacher checkpoint"),
            ]
    return inputs


def build_train_module(cfg: ExperimentConfig, source: str, class_names: list[str]) -> nn.Module:
    """What `liafkd train` (no `distill:` block) or `liafkd distill` would train."""
    if cfg.distill is not None:
        return build_distill_module(cfg, source, class_names)
    return DetectorTrainModule(build_student(cfg.model, len(class_names)))


def build_distill_module(cfg: ExperimentConfig, source: str, class_names: list[str]) -> nn.Module:
    """Student, frozen teacher and distiller of a distill config. The teacher's config is
    read once, here, and handed to what needs it."""
    from liafkd.distill.base import HeadPair
    from liafkd.distill.capabilities import check_detector_support
    from liafkd.distill.config import load_distill_config
    from liafkd.distill.distiller import build_distiller
    from liafkd.engine.distill_module import DistillTrainModule

    dcfg = load_distill_config(cfg.distill, source, base_dir=Path(source).resolve().parent)
    teacher_cfg = load_config(dcfg.teacher.config) if dcfg.teacher else None
    teacher_model = teacher_cfg.model if teacher_cfg is not None else None
    check_detector_support(dcfg.method, cfg.model, teacher_model, source)  # before any build
    student = build_student(cfg.model, len(class_names))
    if dcfg.teacher is None:  # only `none` may omit it (validated): the student alone
        return DetectorTrainModule(student)
    teacher = load_teacher(dcfg.teacher, class_names, teacher_cfg)  # stops on a wrong teacher
    if dcfg.inherit:
        inherit_or_fail(student, teacher, source)
    distiller = build_distiller(
        dcfg,
        cfg.model.fpn_channels,
        teacher_cfg.model.fpn_channels,
        num_levels=len(student.strides),
        heads=HeadPair(student.head, teacher.head),
    )
    corruption = None
    if dcfg.teacher_corruption is not None:
        from liafkd.distill.corruption import TeacherCorruption

        corruption = TeacherCorruption(**dcfg.teacher_corruption.model_dump())
    return DistillTrainModule(student, teacher, distiller, corruption)


def inherit_or_fail(student: nn.Module, teacher: nn.Module, source: str) -> None:
    """`distill.inherit`: copy the teacher's matching neck/head tensors, print the report."""
    from liafkd.distill.inherit import inherit_from_teacher

    report = inherit_from_teacher(student, teacher)
    print(report.summary())
    if not report.copied_weights:  # biases and scales alone always match
        raise ConfigError(
            f"{source}: distill.inherit: no neck or head weight of the teacher has the "
            f"student's name and shape (other widths?); nothing worth inheriting"
        )


def distill_student(
    config: str,
    overrides: list[str],
    resume: str | None = None,
    overwrite: bool = False,
    strict_resume: bool = False,
) -> dict:
    """`liafkd distill` as a function: returns the run's summary."""
    cfg = load_config(config, overrides)
    if cfg.distill is None:  # else fit_run would train the detector alone
        raise ConfigError(f"{config}: distill: missing (set at least `method`)")
    meta = {"distill_method": cfg.distill.get("method")}  # validated when built
    return fit_run(cfg, config, resume, overwrite, strict_resume, extra_meta=meta)
