"""`liafkd distill CONFIG`: train a student with a frozen teacher and a KD method
(liafkd.engine.runs)."""

from __future__ import annotations

import argparse

from liafkd.cli.threads import apply_threads
from liafkd.cli.train import add_common_run_args

MOVED_TO_ENGINE = ("build_distill_module", "distill_student", "inherit_or_fail")


def __getattr__(name: str):
    """The functions that lived here are in liafkd.engine.runs; old imports still work
    (and importing this module for the parser still does not import torch)."""
    if name in MOVED_TO_ENGINE:
        from liafkd.engine import runs

        return getattr(runs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "distill",
        help="train a student with a frozen teacher and a distillation method",
        description="Distil a teacher into a student. The config is a `train` config plus a "
        "`distill:` block: method (none|mimic|fgd|aid|ld|pkd|crosskd|crosskd+pkd|"
        "fgd+crosskd|liaf|liaf+ld|liaf+crosskd), teacher {config, checkpoint}, `inherit: "
        "true` to start the student's neck and head from the teacher's weights, and the "
        "method's options. The saved student holds only the student; adapters and "
        "selectors live in the training checkpoints.",
    )
    add_common_run_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from liafkd.engine.runs import distill_student

    apply_threads(args.threads)
    distill_student(args.config, args.overrides, args.resume, args.overwrite, args.strict_resume)
    return 0
