"""`liafkd train CONFIG`: train a detector from one YAML config (liafkd.engine.runs)."""

from __future__ import annotations

import argparse

from liafkd.cli.threads import add_threads_arg, apply_threads


def add_common_run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML config")
    add_threads_arg(parser)
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
        help="continue from CKPT, or from the newest checkpoint in output_dir. A finished "
        "run (final.pt, summary.json) is never trained further: continue it into a new "
        "folder (--resume RUN/checkpoints/epoch_N.pt --set output_dir=NEW); another run's "
        "checkpoint is resumed only into an empty output_dir",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="output_dir holds an earlier run: delete the files liafkd wrote there first "
        "(final.pt, best.pt, summary.json, metrics.jsonl, checkpoints/epoch_*.pt, "
        "instances/, eval/detections*.json, tensorboard/ events, viz/ plots); your own "
        "files stay and are listed. Without this, or --resume, such a folder is refused",
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


def run(args: argparse.Namespace) -> int:
    from liafkd.engine.runs import train_detector

    apply_threads(args.threads)
    train_detector(args.config, args.overrides, args.resume, args.overwrite, args.strict_resume)
    return 0
