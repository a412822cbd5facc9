"""The folders `liafkd data get` and `data prepare` write: new or empty, or one that
liafkd wrote before (it holds MARKER). Anything else is the user's and is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from liafkd.config import ConfigError

MARKER = ".liafkd-data.json"  # written first: the folder is liafkd's from then on


class DataFolderError(ConfigError):
    """The destination cannot take the data, or what was written does not check out."""


def check_destination(dest: Path, command: str) -> None:
    """Refuse a file, or a non-empty folder that `command` did not write."""
    if dest.exists() and not dest.is_dir():
        raise DataFolderError(f"{dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / MARKER).is_file():
        raise DataFolderError(
            f"{dest} is not empty and was not written by `{command}` (no {MARKER}): "
            "give an empty or new folder"
        )


def read_marker(dest: Path) -> dict[str, Any] | None:
    try:
        return json.loads((dest / MARKER).read_text())
    except (OSError, ValueError):
        return None


def write_marker(dest: Path, record: dict[str, Any]) -> None:
    (dest / MARKER).write_text(json.dumps(record, indent=2) + "\n")
