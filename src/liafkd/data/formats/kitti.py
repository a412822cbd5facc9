"""KITTI object label_2: root/training/image_2/<stem>.png, root/training/label_2/<stem>.txt,
split root/ImageSets/<split>.txt. Without ImageSets/, `split: train` reads every label
file and any other split name is refused (it would silently equal train); a name
ImageSets/ lacks is refused with the names it has.

A line has 15 space-separated fields: type, truncated, occluded, alpha, bbox x1 y1 x2 y2,
dimensions h w l, location x y z, rotation_y; result files add a 16th, score.
Classes default to Car, Pedestrian, Cyclist. DontCare regions become ignore boxes with
label DONT_CARE_LABEL (-1); `ignore_classes` (e.g. Van, Person_sitting) become ignore
boxes labelled by their index in `DatasetIndex.ignore_class_names`.
Attributes: "truncated" (float), "occluded" (int 0-3), "alpha" (float).
Image ids follow liafkd.data.image_ids: `000123.png` is image 123.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liafkd.config import DatasetConfig
from liafkd.data.formats.common import (
    TEXT_ENCODING,
    RawImage,
    RawObject,
    assemble_index,
    find_images,
    one_image,
    parse_finite,
    probe_image,
    read_split_stems,
    read_text_lines,
    resolve_under_root,
    unusable_label_file,
)
from liafkd.data.formats.layout import SPLIT_KEYS, layout_error, require_folder, select_stems
from liafkd.data.records import DatasetIndex, Problem

DEFAULT_CLASSES = ["Car", "Pedestrian", "Cyclist"]
# KITTI's other annotated classes: kept as ignore regions (neighbour-class rules), not
# reported as unknown, unless the config lists its own `ignore_classes`.
DEFAULT_IGNORE_CLASSES = ["Van", "Truck", "Tram", "Misc", "Person_sitting"]
DONT_CARE = "DontCare"
ATTR_NAMES = ["truncated", "occluded", "alpha"]
_NUMERIC_FIELDS = (
    "truncated occluded alpha x1 y1 x2 y2 height width length x y z rotation_y".split()
)


@dataclass
class KittiLine:
    type_name: str
    values: list[float]  # the 14 numeric fields in _NUMERIC_FIELDS order
    score: float | None


@dataclass
class KittiObjects:
    """The objects of one KITTI label (or result) file, one array row per line."""

    type_names: np.ndarray  # str [N]
    truncated: np.ndarray  # float32 [N]
    occluded: np.ndarray  # int64 [N], -1 for DontCare / unknown
    alpha: np.ndarray  # float32 [N]
    bbox: np.ndarray  # float32 [N, 4] x1 y1 x2 y2, pixels
    dims: np.ndarray  # float32 [N, 3] height width length, metres
    loc: np.ndarray  # float32 [N, 3] x y z, camera coordinates, metres
    rot_y: np.ndarray  # float32 [N]
    score: np.ndarray | None  # float32 [N] for result files, None for labels

    def __len__(self) -> int:
        return int(self.type_names.shape[0])


def parse_kitti_line(text: str) -> KittiLine:
    """One label line; ValueError naming the bad field."""
    fields = text.split()
    if len(fields) not in (15, 16):
        raise ValueError(f"expected 15 fields (16 with score), got {len(fields)}")
    values = []
    for name, raw in zip(_NUMERIC_FIELDS, fields[1:15], strict=True):
        try:
            values.append(parse_finite(raw))
        except ValueError:
            raise ValueError(f"{name} is not a finite number: {raw!r}") from None
    occluded = values[1]
    if occluded not in (-1.0, 0.0, 1.0, 2.0, 3.0):
        raise ValueError(f"occluded must be an integer in -1..3, got {fields[2]!r}")
    score = None
    if len(fields) == 16:
        try:
            score = parse_finite(fields[15])
        except ValueError:
            raise ValueError(f"score is not a finite number: {fields[15]!r}") from None
    return KittiLine(fields[0], values, score)


def _stack(lines: list[KittiLine], with_score: bool) -> KittiObjects:
    values = np.asarray([line.values for line in lines], dtype=np.float64).reshape(-1, 14)
    return KittiObjects(
        type_names=np.asarray([line.type_name for line in lines], dtype=str),
        truncated=values[:, 0].astype(np.float32),
        occluded=values[:, 1].astype(np.int64),
        alpha=values[:, 2].astype(np.float32),
        bbox=values[:, 3:7].astype(np.float32),
        dims=values[:, 7:10].astype(np.float32),
        loc=values[:, 10:13].astype(np.float32),
        rot_y=values[:, 13].astype(np.float32),
        score=np.asarray([line.score for line in lines], dtype=np.float32) if with_score else None,
    )


def parse_kitti_label_file(path: str | Path) -> KittiObjects:
    """Every object of a label or result file; ValueError naming `file:line` on the
    first malformed line, or when only some lines carry a score."""
    path = Path(path)
    lines: list[KittiLine] = []
    for line_number, text in enumerate(
        path.read_text(encoding=TEXT_ENCODING).splitlines(), start=1
    ):
        if not text.strip():
            continue
        try:
            line = parse_kitti_line(text)
        except ValueError as e:
            raise ValueError(f"{path}:{line_number}: {e}") from None
        if lines and (line.score is None) != (lines[0].score is None):
            raise ValueError(f"{path}:{line_number}: some lines have a score field, others not")
        lines.append(line)
    return _stack(lines, with_score=bool(lines) and lines[0].score is not None)


def _read_objects(label_path: Path, problems: list[Problem]) -> list[RawObject] | None:
    """The file's objects; None (the image dropped, reported) when it has lines and
    every one is malformed: kept, its objects would train as background."""
    objects = []
    malformed = 0
    for line_number, text in enumerate(read_text_lines(label_path, problems) or [], start=1):
        if not text.strip():
            continue
        location = f"{label_path}:{line_number}"
        try:
            line = parse_kitti_line(text)
        except ValueError as e:
            problems.append(Problem("malformed_line", location, str(e), dropped=True))
            malformed += 1
            continue
        x1, y1, x2, y2 = line.values[3:7]
        attrs = {"truncated": line.values[0], "occluded": line.values[1], "alpha": line.values[2]}
        objects.append(RawObject(line.type_name, (x1, y1, x2, y2), location, attrs))
    if unusable_label_file(label_path, malformed, objects, problems):
        return None
    return objects


# the one split name read without a split file: KITTI's training/ folder is its train set
ALL_LABELS_SPLIT = "train"


def _named_split_stems(
    cfg: DatasetConfig, split: str, label_dir: Path, tree: list[str], keys: list[str]
) -> list[str]:
    """ImageSets/<split>.txt; without ImageSets/, `train` is every label file and any
    other name is refused (it would be the same images, a val set equal to train)."""
    sets_dir = Path(cfg.root) / "ImageSets"
    split_file = sets_dir / f"{split}.txt"
    if split_file.is_file():
        return read_split_stems(split_file, lambda stem: (label_dir / f"{stem}.txt").is_file())
    available = sorted(p.stem for p in sets_dir.glob("*.txt")) if sets_dir.is_dir() else []
    if available:
        detail = f" (available: {available})"
    elif split == ALL_LABELS_SPLIT:
        return sorted(p.stem for p in label_dir.glob("*.txt"))
    else:
        detail = (
            f" (ImageSets/ holds no split file: only `split: {ALL_LABELS_SPLIT}` reads every "
            f"label file, and a `{split}` split would be those same images; give "
            f"ImageSets/{split}.txt, a list file such as `split: {split}.txt`, or "
            "`split: {ratio: 0.8, seed: 0}` to divide the labels into train and val)"
        )
    raise layout_error(cfg, split_file, "split file", tree, keys, detail)


def read_kitti(cfg: DatasetConfig) -> DatasetIndex:
    tree = [
        f"{cfg.annotations_dir or 'training/label_2'}/<name>.txt    KITTI label lines",
        f"{cfg.images_dir or 'training/image_2'}/<name>.png",
        "ImageSets/<split>.txt    the split's names (without ImageSets/: train = every label)",
    ]
    keys = [
        "annotations_dir (default training/label_2)",
        "images_dir (default training/image_2)",
        SPLIT_KEYS,
    ]
    labels = resolve_under_root(cfg, cfg.annotations_dir or "training/label_2")
    label_dir = require_folder(cfg, labels, "KITTI label_2", tree, keys)
    images = resolve_under_root(cfg, cfg.images_dir or "training/image_2")
    image_dir = require_folder(cfg, images, "KITTI image_2", tree, keys)
    problems: list[Problem] = []
    raw_images = []
    every = lambda: [p.stem for p in label_dir.glob("*.txt")]  # noqa: E731
    named = lambda name: _named_split_stems(cfg, name, label_dir, tree, keys)  # noqa: E731
    for stem in select_stems(cfg, every, named):
        label_path = label_dir / f"{stem}.txt"
        if not label_path.is_file():
            problems.append(
                Problem("missing_label", str(label_path), "label file not found", dropped=True)
            )
            continue
        usable, image_path = one_image(
            find_images(image_dir, stem), stem, str(label_path), problems
        )
        if not usable:
            continue
        size = probe_image(image_path, str(label_path), problems, f"{image_dir}/{stem}.png")
        if size is None:
            continue
        objects = _read_objects(label_path, problems)
        if objects is None:
            continue
        raw_images.append(RawImage(image_path, size[0], size[1], objects, str(label_path)))
    class_names = cfg.classes or DEFAULT_CLASSES
    if not cfg.ignore_classes:
        ignore = [name for name in DEFAULT_IGNORE_CLASSES if name not in class_names]
        cfg = cfg.model_copy(update={"ignore_classes": ignore})
    return assemble_index(
        raw_images, class_names, cfg, ATTR_NAMES, problems, dont_care_names=[DONT_CARE]
    )
