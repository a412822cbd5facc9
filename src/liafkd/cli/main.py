"""`liafkd` entry point. Each sub-command lives in its own module under
liafkd.cli and exposes `register(subparsers)`; the module's handler is set with
`parser.set_defaults(func=...)` and returns an exit code."""

from __future__ import annotations

import argparse
import importlib
import sys

from liafkd import __version__

# One line per command module; a new command is one module plus one line here.
COMMAND_MODULES = [
    "liafkd.cli.data",
    "liafkd.cli.evaluate",
    "liafkd.cli.kitti_eval",
    "liafkd.cli.train",
    "liafkd.cli.distill",
    "liafkd.cli.import_mmdet",
    "liafkd.cli.doctor",
    "liafkd.cli.demo",
    "liafkd.cli.export",
    "liafkd.cli.predict",
    "liafkd.cli.viz",
    "liafkd.cli.bench",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="liafkd",
        description="Distil large object detectors into small ones (LIAF-KD and rivals).",
    )
    parser.add_argument("--version", action="version", version=f"liafkd {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from liafkd.config import ConfigError
    from liafkd.data.dataset import DataLoadError
    from liafkd.engine.checkpoint import CheckpointError
    from liafkd.engine.trainer import NonFiniteLossError, TrainingInterrupted

    try:
        return int(args.func(args) or 0)
    except (ConfigError, CheckpointError, DataLoadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except TrainingInterrupted as e:
        print(str(e), file=sys.stderr)
        return 128 + e.signum


if __name__ == "__main__":
    sys.exit(main())
