"""What every reader shares: image probing, class-name resolution, box checks, and
assembling parsed objects into `ImageRecord`s with their problems.

A reader parses its files into `RawImage`s (absolute-pixel xyxy boxes with the raw
class names) and hands them to `assemble_index`, which applies `class_map`,
`classes`, `ignore_classes` and `min_box_size` the same way for every format.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from liafkd.config import ConfigError, DatasetConfig
from liafkd.data.image_ids import assign_image_ids
from liafkd.data.images import ImageReadError, header_size
from liafkd.data.records import DatasetIndex, ImageRecord, Problem

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# Per-instance attributes the readers produce, with their array dtype and the value
# used when a format (or a single object) does not give one.
ATTR_DTYPES: dict[str, type] = {
    "truncated": np.float32,
    "occluded": np.int64,
    "alpha": np.float32,
    "difficult": np.bool_,
    "iscrowd": np.bool_,
}
ATTR_DEFAULTS: dict[str, float | int | bool] = {
    "truncated": 0.0,
    "occluded": 0,
    "alpha": -10.0,
    "difficult": False,
    "iscrowd": False,
}

# `ignore_labels` value of a region that ignores every class (KITTI DontCare).
DONT_CARE_LABEL = -1
# Coordinates this far past the border are rounding (e.g. normalised YOLO values),
# clipped without a report.
OUTSIDE_TOLERANCE_PX = 0.5
# Text files (labels, split lists, CSV, JSON) are UTF-8; a byte-order mark that
# Windows tools write is skipped rather than read as part of the first name.
TEXT_ENCODING = "utf-8-sig"
# Problem kinds that describe the data without anything wrong with a box or image.
REPORT_ONLY_KINDS = frozenset({"no_objects"})


class DatasetError(ConfigError):
    """The dataset cannot be used as configured (strict policy, missing split file,
    missing names file...). A ConfigError, so the CLI prints it without a traceback."""


@dataclass
class RawObject:
    name: str
    box_xyxy: tuple[float, float, float, float]
    location: str  # "file:LINE", "file#object N" or "file#annotations[i]"
    attrs: dict[str, float] = field(default_factory=dict)


@dataclass
class RawImage:
    image_path: Path
    width: int
    height: int
    objects: list[RawObject]
    location: str  # the annotation source, for image-level problems
    image_id: int | None = None  # the format's own id (COCO); else from the stems


def find_images(folder: Path, stem: str) -> list[Path]:
    """Every image `folder/stem.<ext>` with a known extension (lower or upper case), one
    path per file (a case-insensitive file system finds x.jpg and x.JPG as one file)."""
    found: dict[tuple[int, int], Path] = {}
    for ext in IMAGE_EXTENSIONS:
        for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                info = candidate.stat()
                found.setdefault((info.st_dev, info.st_ino), candidate)
    return list(found.values())


def one_image(
    candidates: list[Path], stem: str, location: str, problems: list[Problem]
) -> tuple[bool, Path | None]:
    """(usable, the image): several images for one stem (x.jpg and x.png) are refused
    the same way by every reader (ambiguous_image, dropped): which one the labels
    describe is a guess. (True, None) when there is none: the caller reports it."""
    if len(candidates) <= 1:
        return True, candidates[0] if candidates else None
    names = ", ".join(sorted(str(path) for path in candidates))
    message = f"several images for {stem}: {names}; rename or remove all but one"
    problems.append(Problem("ambiguous_image", location, message, dropped=True))
    return False, None


def probe_image(
    path: Path | None, location: str, problems: list[Problem], described_as: str = ""
) -> tuple[int, int] | None:
    """(width, height) from the image header (no decode), as displayed (EXIF
    orientation applied), or None with a problem."""
    if path is None or not path.is_file():
        problems.append(
            Problem(
                "missing_image",
                location,
                f"image not found: {described_as or path}",
                dropped=True,
            )
        )
        return None
    try:
        return header_size(path)
    except ImageReadError as e:
        message = str(e).removeprefix(f"{path}: ")
        problems.append(Problem("unreadable_image", str(path), message, dropped=True))
        return None


def image_size(
    declared: tuple[int, int] | None,
    header: tuple[int, int],
    location: str,
    problems: list[Problem],
) -> tuple[int, int]:
    """The image's own (header) size. A different size in the annotation is reported
    (size_mismatch) and not used: boxes are checked against the real image, and the
    loader would refuse a record whose size is not the image's."""
    if declared is not None and declared != header:
        message = (
            f"the annotation says {declared[0]}x{declared[1]}, the image is "
            f"{header[0]}x{header[1]}; boxes are checked against the image"
        )
        if declared == (header[1], header[0]):
            message += (
                " (its EXIF orientation turns it by 90 degrees: liafkd uses images as displayed)"
            )
        problems.append(Problem("size_mismatch", location, message))
    return header


def is_finite_number(value: object) -> bool:
    """A JSON number that is finite (bools are not numbers here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_finite(text: str) -> float:
    """float(text), rejecting nan and inf (ValueError)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def read_text_lines(path: Path, problems: list[Problem]) -> list[str] | None:
    """The file's lines, or None with a problem when it cannot be read as text."""
    try:
        return path.read_text(encoding=TEXT_ENCODING).splitlines()
    except (OSError, UnicodeDecodeError) as e:
        problems.append(Problem("malformed_line", str(path), f"cannot read: {e}", dropped=True))
        return None


def unusable_label_file(
    label_path: Path, malformed: int, objects: list[RawObject], problems: list[Problem]
) -> bool:
    """True (reported) when a label file has lines and every one is malformed: the
    image is dropped, as every reader does, since kept its objects would train as
    background."""
    if not malformed or objects:
        return False
    message = (
        f"every label line ({malformed}) is malformed: image dropped (kept, its "
        "objects would train as background)"
    )
    problems.append(Problem("unusable_labels", str(label_path), message, dropped=True))
    return True


def read_split_stems(split_file: Path, exists: Callable[[str], bool] | None = None) -> list[str]:
    """The file name stem of each non-empty line. A line may hold a name with spaces,
    or a name and a flag (VOC's `stem  1`): the candidates are the whole line, the line
    without a trailing integer flag, then its first token; the first for which
    `exists` holds is taken, else the whole line (so a missing file is reported under
    its full name, not a piece of it)."""
    stems = []
    for line in split_file.read_text(encoding=TEXT_ENCODING).splitlines():
        text = line.strip()
        fields = text.split()
        if not fields:
            continue
        candidates = [text]
        if len(fields) > 1 and fields[-1].lstrip("+-").isdigit():
            candidates.append(text.rsplit(None, 1)[0].strip())
        candidates.append(fields[0])
        if exists is None:
            # without a way to tell, a flag is a flag and a name with spaces stays whole
            stems.append(candidates[1] if len(candidates) == 3 else text)
            continue
        stems.append(next((c for c in candidates if exists(c)), text))
    return stems


def resolve_under_root(cfg: DatasetConfig, relative: str) -> Path:
    path = Path(relative).expanduser()
    return path if path.is_absolute() else Path(cfg.root) / path


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path}: {what} folder not found")
    return path


def mapped_names(names: Iterable[str], cfg: DatasetConfig) -> list[str]:
    """Names after `class_map`, first occurrence order, ignore classes left out."""
    result: list[str] = []
    for name in names:
        name = cfg.class_map.get(name, name)
        if name not in result and name not in cfg.ignore_classes:
            result.append(name)
    return result


class ClassTable:
    """Maps a raw class name to a training label, an ignore label, or unknown."""

    def __init__(
        self, cfg: DatasetConfig, class_names: list[str], dont_care_names: Iterable[str] = ()
    ) -> None:
        self.class_map = cfg.class_map
        self.class_names = class_names
        self.ignore_names = list(cfg.ignore_classes)
        self._train = {name: i for i, name in enumerate(class_names)}
        self._ignore = {name: i for i, name in enumerate(self.ignore_names)}
        self._dont_care = set(dont_care_names)

    def resolve(self, raw_name: str) -> tuple[str, int]:
        """("train" | "ignore" | "dontcare" | "unknown", label)."""
        name = self.class_map.get(raw_name, raw_name)
        if name in self._train:
            return "train", self._train[name]
        if name in self._ignore:
            return "ignore", self._ignore[name]
        if name in self._dont_care:
            return "dontcare", DONT_CARE_LABEL
        return "unknown", -1


def _fmt_box(box: Iterable[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def check_box(
    box: tuple[float, float, float, float],
    width: int,
    height: int,
    min_box_size: float,
    location: str,
    problems: list[Problem],
) -> tuple[float, float, float, float] | None:
    """The box clipped to the image, or None when nothing usable is left.

    A box whose corners are reversed (x2 < x1 or y2 < y1) is dropped (reversed_box);
    one reaching past the border by more than OUTSIDE_TOLERANCE_PX is reported
    (box_outside_image); one with a side below `min_box_size` is dropped
    (zero_area_box, or box_outside_image when clipping emptied it).
    """
    x1, y1, x2, y2 = box
    if x2 < x1 or y2 < y1:
        side = "x2 < x1" if x2 < x1 else "y2 < y1"
        message = f"box {_fmt_box(box)} has {side}: its corners are reversed"
        problems.append(Problem("reversed_box", location, message, dropped=True))
        return None
    tol = OUTSIDE_TOLERANCE_PX
    outside = x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol
    clipped = (
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
        min(max(x2, 0.0), width),
        min(max(y2, 0.0), height),
    )
    box_w, box_h = clipped[2] - clipped[0], clipped[3] - clipped[1]
    too_small = box_w < min_box_size or box_h < min_box_size
    if outside:
        size = f"{width}x{height}"
        if too_small:
            message = f"box {_fmt_box(box)} lies outside the {size} image; nothing left"
            problems.append(Problem("box_outside_image", location, message, dropped=True))
            return None
        message = f"box {_fmt_box(box)} extends outside the {size} image; clipped"
        problems.append(Problem("box_outside_image", location, message, dropped=False))
        return clipped
    if too_small:
        message = (
            f"box {_fmt_box(box)} is {x2 - x1:g}x{y2 - y1:g} px, "
            f"a side below min_box_size {min_box_size:g}"
        )
        problems.append(Problem("zero_area_box", location, message, dropped=True))
        return None
    return clipped


def _boxes_array(boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def build_record(
    raw: RawImage,
    image_id: int,
    table: ClassTable,
    attr_names: list[str],
    cfg: DatasetConfig,
    problems: list[Problem],
) -> ImageRecord:
    boxes: list[tuple[float, float, float, float]] = []
    labels: list[int] = []
    attrs: dict[str, list] = {name: [] for name in attr_names}
    ignore_boxes: list[tuple[float, float, float, float]] = []
    ignore_labels: list[int] = []
    for obj in raw.objects:
        role, label = table.resolve(obj.name)
        if role == "unknown":
            message = (
                f"class '{obj.name}' is neither in classes {table.class_names} "
                f"nor in ignore_classes {table.ignore_names}"
            )
            problems.append(Problem("unknown_class", obj.location, message, dropped=True))
            continue
        box = check_box(
            obj.box_xyxy, raw.width, raw.height, cfg.min_box_size, obj.location, problems
        )
        if box is None:
            continue
        if role == "train":
            boxes.append(box)
            labels.append(label)
            for name in attr_names:
                attrs[name].append(obj.attrs.get(name, ATTR_DEFAULTS[name]))
        else:
            ignore_boxes.append(box)
            ignore_labels.append(label)
    if not labels:
        problems.append(Problem("no_objects", raw.location, "no objects of the listed classes"))
    return ImageRecord(
        image_id=image_id,
        file_name=str(raw.image_path.resolve()),
        width=raw.width,
        height=raw.height,
        boxes_xyxy=_boxes_array(boxes),
        labels=np.asarray(labels, dtype=np.int64),
        attrs={name: np.asarray(values, dtype=ATTR_DTYPES[name]) for name, values in attrs.items()},
        ignore_boxes_xyxy=_boxes_array(ignore_boxes),
        ignore_labels=np.asarray(ignore_labels, dtype=np.int64),
    )


def assemble_index(
    raw_images: list[RawImage],
    class_names: list[str],
    cfg: DatasetConfig,
    attr_names: list[str],
    problems: list[Problem],
    dont_care_names: Iterable[str] = (),
) -> DatasetIndex:
    """Records for the parsed images. Ids: the format's own (COCO), else from the image
    file stems by liafkd.data.image_ids (KITTI's `000123.png` is 123; unique always)."""
    table = ClassTable(cfg, class_names, dont_care_names)
    if all(raw.image_id is not None for raw in raw_images):
        ids = [int(raw.image_id) for raw in raw_images]  # type: ignore[arg-type]
    else:
        ids = assign_image_ids([raw.image_path.stem for raw in raw_images])
    records = [
        build_record(raw, image_id, table, attr_names, cfg, problems)
        for raw, image_id in zip(raw_images, ids, strict=True)
    ]
    return DatasetIndex(
        records=records,
        class_names=list(class_names),
        problems=problems,
        ignore_class_names=list(cfg.ignore_classes),
    )
