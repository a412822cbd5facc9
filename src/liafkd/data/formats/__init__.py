"""Dataset readers: `read_dataset(cfg)` returns a `DatasetIndex` for any supported
format, collecting every problem instead of stopping at the first;
`enforce_policy(index, cfg)` then stops a `strict` dataset that has any."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from liafkd.config import DatasetConfig
from liafkd.data.formats.coco import read_coco
from liafkd.data.formats.common import REPORT_ONLY_KINDS, DatasetError
from liafkd.data.formats.csv_boxes import read_csv_boxes
from liafkd.data.formats.kitti import read_kitti
from liafkd.data.formats.voc import read_voc
from liafkd.data.formats.yolo import read_yolo
from liafkd.data.records import DatasetIndex, Problem

__all__ = ["DatasetError", "enforce_policy", "read_dataset", "serious_problems"]

MAX_LISTED_PROBLEMS = 50

READERS: dict[str, Callable[[DatasetConfig], DatasetIndex]] = {
    "coco": read_coco,
    "voc": read_voc,
    "yolo": read_yolo,
    "kitti": read_kitti,
    "csv": read_csv_boxes,
}


def _read_synthetic(cfg: DatasetConfig, generate: bool = True) -> DatasetIndex:
    # imported here so that liafkd.data.synthetic may itself import this package
    from liafkd.data.synthetic import ensure_synthetic

    kitti_root = Path(ensure_synthetic(cfg, generate=generate))
    return read_kitti(cfg.model_copy(update={"root": str(kitti_root), "format": "kitti"}))


def read_dataset(cfg: DatasetConfig, generate: bool = True) -> DatasetIndex:
    """Every readable image of the configured split, with all problems found.

    Raises DatasetError only when the dataset cannot be located at all (missing
    folder, split file, annotation or names file). `format: synthetic` is generated on
    first use unless `generate` is False (a read-only command: it then says what to run)."""
    if cfg.format == "synthetic":
        return _read_synthetic(cfg, generate)
    if not Path(cfg.root).is_dir():
        raise DatasetError(f"{cfg.root}: dataset root not found")
    return READERS[cfg.format](cfg)


def serious_problems(index: DatasetIndex) -> list[Problem]:
    """The problems that a strict policy refuses (all but report-only ones)."""
    return [p for p in index.problems if p.kind not in REPORT_ONLY_KINDS]


def enforce_policy(index: DatasetIndex, cfg: DatasetConfig) -> None:
    """Raise DatasetError listing the problems when `cfg.policy` is strict."""
    if cfg.policy != "strict":
        return
    problems = serious_problems(index)
    if not problems:
        return
    lines = [str(p) for p in problems[:MAX_LISTED_PROBLEMS]]
    if len(problems) > MAX_LISTED_PROBLEMS:
        lines.append(f"... and {len(problems) - MAX_LISTED_PROBLEMS} more")
    raise DatasetError(
        f"{cfg.root}: policy is strict and the dataset has {len(problems)} problem(s):\n"
        + "\n".join(lines)
    )
