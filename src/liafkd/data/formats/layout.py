"""Datasets laid out as users have them: which files a split holds, and errors that
show the folder tree a format expects with the keys that change it.

`split` in a dataset block is one of
- a split name: the format's own convention (VOC `ImageSets/Main/<name>.txt`, KITTI
  `ImageSets/<name>.txt`, YOLO `images/<name>/`, COCO `images/<name>/`);
- a file listing the images, relative to root (or absolute): a `.txt` of file names or
  stems, one a line, or a `.csv` whose `filename` column (or `file`, `image`,
  `file_name`, `image_id`, `name`; else the first column) names them. Names may carry an
  extension or a folder (`images/x.jpg`); repeated names (one CSV row per box) count
  once;
- `{ratio: 0.8, seed: 0, part: train|val}`: all the dataset's files, shuffled with the
  seed; `train` takes the first `ratio` share, `val` the rest.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable
from pathlib import Path

from liafkd.config import DatasetConfig, SplitRatio
from liafkd.data.formats.common import (
    IMAGE_EXTENSIONS,
    TEXT_ENCODING,
    DatasetError,
    read_split_stems,
    resolve_under_root,
)

SPLIT_LIST_SUFFIXES = (".txt", ".csv", ".lst")
NAME_COLUMNS = ("filename", "file_name", "file", "image", "image_id", "name", "img", "path")

SPLIT_KEYS = (
    "split (a split name; a .txt or .csv file listing the images, relative to root; or "
    "{ratio: 0.8, seed: 0})"
)


def is_split_list(split: str | SplitRatio) -> bool:
    """A file of names rather than a split name: ends in .txt/.csv/.lst or has a folder."""
    return isinstance(split, str) and (
        split.lower().endswith(SPLIT_LIST_SUFFIXES) or "/" in split or "\\" in split
    )


def describe_split(split: str | SplitRatio) -> str:
    """The split as one line of text (for summaries and JSON)."""
    if isinstance(split, SplitRatio):
        part = f", {split.part} part" if split.part else ""
        within = f" of {split.within}" if split.within else ""
        return f"ratio {split.ratio} seed {split.seed}{part}{within}"
    return split


def _name_stem(name: str) -> str:
    """`images/x.jpg` -> `x`; a name without an image or annotation extension stays whole
    (`scan.v2` is a stem)."""
    path = Path(name.strip().replace("\\", "/"))
    if path.suffix.lower() in (*IMAGE_EXTENSIONS, ".xml", ".txt", ".json"):
        return path.stem
    return path.name


def read_split_list(path: Path) -> list[str]:
    """The image stems a .txt or .csv list names, first occurrence order."""
    if not path.is_file():
        raise DatasetError(f"{path}: split file not found (split: a file relative to root)")
    if path.suffix.lower() != ".csv":
        names = (_name_stem(name) for name in read_split_stems(path))
        return list(dict.fromkeys(name for name in names if name))
    with path.open(newline="", encoding=TEXT_ENCODING) as handle:
        rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    column = next((header.index(c) for c in NAME_COLUMNS if c in header), None)
    body = rows[1:] if column is not None else rows
    if column is None:
        column = 0
        if Path(rows[0][0].strip()).suffix == "" and len(rows[0]) > 1:
            body = rows[1:]  # a header row without a known name column
    stems = [_name_stem(row[column]) for row in body if len(row) > column]
    return list(dict.fromkeys(s for s in stems if s))


def ratio_part(stems: list[str], spec: SplitRatio) -> list[str]:
    """The `spec.part` side of a seeded shuffle of `stems` (sorted first, so the same
    files give the same split whatever the listing order). No part: all of them."""
    ordered = sorted(set(stems))
    if spec.part is None:
        return ordered
    random.Random(spec.seed).shuffle(ordered)
    cut = round(spec.ratio * len(ordered))
    if len(ordered) > 1:
        cut = min(max(cut, 1), len(ordered) - 1)  # both sides get at least one file
    chosen = ordered[:cut] if spec.part == "train" else ordered[cut:]
    return sorted(chosen)


def select_stems(
    cfg: DatasetConfig,
    all_stems: Callable[[], list[str]],
    named: Callable[[str], list[str]],
) -> list[str]:
    """The stems of `cfg.split`: a ratio over `all_stems()`, a list file, or the
    format's own named split (`named(name)`)."""
    split = cfg.split
    if isinstance(split, SplitRatio):
        pool = all_stems() if split.within is None else _named_or_listed(cfg, split.within, named)
        return ratio_part(pool, split)
    return _named_or_listed(cfg, split, named)


def _named_or_listed(
    cfg: DatasetConfig, split: str, named: Callable[[str], list[str]]
) -> list[str]:
    if is_split_list(split):
        return read_split_list(resolve_under_root(cfg, split))
    return named(split)


def layout_error(
    cfg: DatasetConfig,
    missing: Path,
    what: str,
    tree: list[str],
    keys: list[str],
    detail: str = "",
) -> DatasetError:
    """A missing folder or file, the tree the format reads and the keys that change it."""
    lines = [
        f"{missing}: {what} not found{detail}.",
        f"A `format: {cfg.format}` dataset is read as:",
        f"  {cfg.root}/",
        *(f"    {line}" for line in tree),
        "Keys that change where it looks: " + "; ".join(keys) + ".",
    ]
    return DatasetError("\n".join(lines))


def require_folder(
    cfg: DatasetConfig, path: Path, what: str, tree: list[str], keys: list[str]
) -> Path:
    if not path.is_dir():
        raise layout_error(cfg, path, f"{what} folder", tree, keys)
    return path
