"""`liafkd doctor CONFIG`: every check `liafkd train|distill` runs before training,
plus the data summary, without training; a PASS/FAIL table, exit 1 on any FAIL. The
checks live in liafkd.engine.doctor."""

from __future__ import annotations

import argparse

from liafkd.cli.threads import add_threads_arg, apply_threads


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="check a train or distill config without training (PASS/FAIL table)",
        description="Runs the checks that `liafkd train` and `liafkd distill` run before "
        "training: the data, the model build and its pretrained backbone, the teacher's "
        "classes, weights and validation AP, and one real training step (every loss term "
        "finite and non-zero, with gradient into the student, none into the teacher). "
        "Prints a PASS/WARN/FAIL/SKIP table; exit status 1 when any check fails.",
    )
    p.add_argument("config", help="experiment YAML config (train or distill)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. distill.checks.teacher_batches=8",
    )
    add_threads_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from liafkd.config import ConfigError
    from liafkd.engine.doctor import diagnose
    from liafkd.engine.guardrails import CheckResult, format_table

    apply_threads(args.threads)
    try:
        results = diagnose(args.config, args.overrides)
    except ConfigError as e:  # the config itself does not load
        fix = "correct the key or file the message names, then run doctor again"
        results = [CheckResult("config", "FAIL", str(e), fix=fix)]
    print(format_table(results))
    failed = [r.name for r in results if r.failed]
    print(f"\n{len(failed)} failed: {', '.join(failed)}" if failed else "\nall checks passed")
    return 1 if failed else 0
