"""`--threads N`: torch's intra-op CPU threads for one command (torch.set_num_threads).

torch's default is one thread per physical core. On a machine shared with other work
(or when several liafkd processes run at once) that oversubscribes the cores and every
process slows down many times over; `--threads 1` per process avoids it.
"""

from __future__ import annotations

import argparse

DEFAULT_TEXT = "torch's choice, one per physical core"


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_threads_arg(parser: argparse.ArgumentParser, default_text: str = DEFAULT_TEXT) -> None:
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"torch CPU threads for this process (default: {default_text}); on a machine "
        "shared with other work, 1",
    )


def apply_threads(threads: int | None) -> None:
    """Set torch's intra-op threads when asked; torch is imported only then."""
    if threads is None:
        return
    import torch

    torch.set_num_threads(threads)
