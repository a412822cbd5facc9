"""`liafkd` entry point. Each sub-command lives in its own module under
liafkd.cli and exposes `register(subparsers)`; the module's handler is set with
`parser.set_defaults(func=...)` and returns an exit code.

Building the parser must stay cheap (`liafkd --help` in well under half a second): the
command modules import only the standard library at module level, and each handler
imports what it needs (torch, torchvision, pydantic, pycocotools) when it runs. Commands
that need no model (`kitti-eval`, `data check|convert`, `eval --results`) never import
torch; tests/cli/test_cli_startup.py holds them to it.
"""

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

# (module, exception class) -> exit code. Looked up only in modules already imported:
# an exception of a module the command never loaded cannot have been raised, and
# importing the module to compare would cost the command the torch import.
KNOWN_ERRORS = [
    ("liafkd.config", "ConfigError", 2),
    ("liafkd.safe_load", "CheckpointError", 2),
    ("liafkd.data.dataset", "DataLoadError", 2),
    ("liafkd.engine.demo", "DemoError", 2),
    ("liafkd.engine.trainer", "NonFiniteLossError", 1),
    ("liafkd.outputs", "DiskFullError", 1),
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


def known_error_code(error: BaseException) -> int | None:
    """The exit code of a liafkd error class, None for anything else."""
    for module_name, class_name, code in KNOWN_ERRORS:
        module = sys.modules.get(module_name)
        cls = getattr(module, class_name, None) if module is not None else None
        if cls is not None and isinstance(error, cls):
            return code
    return None


def printable_console() -> None:
    """A file name that is not valid UTF-8 (Linux keeps its bytes as lone surrogates)
    prints as a backslash escape instead of raising UnicodeEncodeError, possibly in the
    middle of an epoch. Only strict streams change (C.UTF-8 already writes the bytes)."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    printable_console()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except Exception as e:
        interrupted = sys.modules.get("liafkd.engine.trainer")
        if interrupted is not None and isinstance(e, interrupted.TrainingInterrupted):
            print(str(e), file=sys.stderr)
            return 128 + e.signum
        code = known_error_code(e)
        if code is None:
            raise
        print(f"error: {e}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
