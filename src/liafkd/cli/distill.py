"""`liafkd distill CONFIG`: train a student with a frozen teacher and a KD method."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from liafkd.cli.train import add_common_run_args, resolve_resume

if TYPE_CHECKING:
    from torch import nn

    from liafkd.config import ExperimentConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "distill",
        help="train a student with a frozen teacher and a distillation method",
        description="Distil a teacher into a student. The config is a `train` config plus a "
        "`distill:` block: method (none|mimic|fgd|aid|ld|pkd|crosskd|crosskd+pkd|liaf|"
        "liaf+ld|liaf+crosskd), teacher {config, checkpoint}, `inherit: true` to start the "
        "student's neck and head from the teacher's weights, and the method's options. The "
        "saved student holds only the student; adapters and selectors live in the training "
        "checkpoints.",
    )
    add_common_run_args(p)
    p.set_defaults(func=run)


def build_distill_module(cfg: ExperimentConfig, source: str, class_names: list[str]) -> nn.Module:
    from liafkd.config import load_config
    from liafkd.distill.base import HeadPair
    from liafkd.distill.capabilities import check_detector_support
    from liafkd.distill.config import load_distill_config
    from liafkd.distill.distiller import build_distiller
    from liafkd.engine.build import build_student
    from liafkd.engine.distill_module import DistillTrainModule
    from liafkd.engine.guardrails import load_teacher

    dcfg = load_distill_config(cfg.distill, source, base_dir=Path(source).resolve().parent)
    teacher_model = load_config(dcfg.teacher.config).model if dcfg.teacher else None
    check_detector_support(dcfg.method, cfg.model, teacher_model, source)  # before any build
    student = build_student(cfg.model, len(class_names))
    if dcfg.teacher is None:  # only `none` may omit it (validated): the student alone
        from liafkd.engine.trainer import DetectorTrainModule

        return DetectorTrainModule(student)
    teacher = load_teacher(dcfg.teacher, class_names)  # stops on a wrong teacher
    if dcfg.inherit:
        inherit_or_fail(student, teacher, source)
    teacher_channels = load_config(dcfg.teacher.config).model.fpn_channels
    distiller = build_distiller(
        dcfg,
        cfg.model.fpn_channels,
        teacher_channels,
        num_levels=len(student.strides),
        heads=HeadPair(student.head, teacher.head),
    )
    return DistillTrainModule(student, teacher, distiller)


def inherit_or_fail(student: nn.Module, teacher: nn.Module, source: str) -> None:
    """`distill.inherit`: copy the teacher's matching neck/head tensors, print the report."""
    from liafkd.config import ConfigError
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
    from liafkd.config import load_config
    from liafkd.engine.build import load_indices
    from liafkd.engine.distributed import distributed_run, main_first
    from liafkd.engine.guardrails import complete_summary, run_checks
    from liafkd.engine.rundir import open_run_dir
    from liafkd.engine.trainer import Trainer, format_final, seed_everything

    cfg = load_config(config, overrides)
    with (
        distributed_run(cfg.train.device),  # under torchrun: one process per GPU
        open_run_dir(cfg.output_dir, resume is not None, overwrite),  # before building
    ):
        seed_everything(cfg.train.seed)  # model initialisation follows the seed
        with main_first():  # rank 0 generates synthetic data once
            train_index, val_index = load_indices(cfg)
        # every process holds its own frozen teacher; DDP wraps student + distiller
        module = build_distill_module(cfg, config, train_index.class_names)
        trainer = Trainer(
            cfg,
            module,
            train_index,
            val_index,
            extra_meta={"distill_method": cfg.distill["method"]},
        )
        checks = run_checks(cfg, config, trainer.module, train_index, val_index, trainer.device)
        summary = trainer.fit(resolve_resume(resume, trainer), strict_resume)
        summary = complete_summary(cfg.output_dir, summary, checks.teacher)
        print(format_final(summary, cfg.output_dir))
    return summary


def run(args: argparse.Namespace) -> int:
    distill_student(args.config, args.overrides, args.resume, args.overwrite, args.strict_resume)
    return 0
