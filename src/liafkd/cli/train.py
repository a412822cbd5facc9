"""`liafkd train CONFIG`: train a detector from one YAML config."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_common_run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML config")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. train.seed=1",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        metavar="CKPT",
        help="continue from CKPT, or from the newest checkpoint in output_dir",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="output_dir holds an earlier run: delete its files first (without this, or "
        "--resume, such a folder is refused)",
    )
    parser.add_argument(
        "--strict-resume",
        action="store_true",
        help="with --resume: refuse a config that differs from the checkpoint's (by default "
        "the changes are printed and training goes on)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a detector (the student alone, or a teacher)",
        description="Train a detector from a YAML config. Writes checkpoints, metrics.jsonl, "
        "best.pt, final.pt and summary.json under the config's output_dir.",
    )
    add_common_run_args(p)
    p.set_defaults(func=run)


def resolve_resume(arg: str | None, trainer) -> Path | None:
    from liafkd.engine.distributed import broadcast_object

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
    from liafkd.config import ConfigError, load_config
    from liafkd.engine.build import build_student, load_indices
    from liafkd.engine.distributed import distributed_run, main_first
    from liafkd.engine.guardrails import complete_summary, run_checks
    from liafkd.engine.rundir import open_run_dir
    from liafkd.engine.trainer import DetectorTrainModule, Trainer, format_final, seed_everything

    cfg = load_config(config, overrides)
    if cfg.distill is not None:
        raise ConfigError(f"{config}: has a `distill:` block; run it with `liafkd distill`")
    with (
        distributed_run(cfg.train.device),  # under torchrun: one process per GPU
        open_run_dir(cfg.output_dir, resume is not None, overwrite),  # before building
    ):
        seed_everything(cfg.train.seed)  # model initialisation follows the seed
        with main_first():  # rank 0 generates synthetic data once
            train_index, val_index = load_indices(cfg)
        student = build_student(cfg.model, len(train_index.class_names))
        trainer = Trainer(cfg, DetectorTrainModule(student), train_index, val_index)
        run_checks(cfg, config, trainer.module, train_index, val_index, trainer.device)
        summary = trainer.fit(resolve_resume(resume, trainer), strict_resume)
        summary = complete_summary(cfg.output_dir, summary)
        print(format_final(summary, cfg.output_dir))
    return summary


def run(args: argparse.Namespace) -> int:
    train_detector(args.config, args.overrides, args.resume, args.overwrite, args.strict_resume)
    return 0
