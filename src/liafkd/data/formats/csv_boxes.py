"""`format: csv`: the one-row-per-box CSV many tutorials and labelling tools write,

    filename,width,height,class,xmin,ymin,xmax,ymax
    BloodImage_00001.jpg,640,480,RBC,68,315,286,480

`ann_file` is the CSV (relative to root), `images_dir` the image folder (default: root).
Boxes are absolute pixels, xyxy. Column names are matched without case, with the usual
aliases (`file_name`/`image` for filename, `label`/`name` for class); width and height
are optional (the image header gives the size). A row with an empty class is an image
without objects. Any `split` applies: a name keeps every image of the CSV (the CSV is
the split), a list file or a ratio keeps those images.
"""

from __future__ import annotations

import csv
from pathlib import Path

from liafkd.config import DatasetConfig
from liafkd.data.formats.common import (
    TEXT_ENCODING,
    DatasetError,
    RawImage,
    RawObject,
    assemble_index,
    find_images,
    image_size,
    mapped_names,
    one_image,
    parse_finite,
    probe_image,
    resolve_under_root,
)
from liafkd.data.formats.layout import SPLIT_KEYS, layout_error, require_folder, select_stems
from liafkd.data.records import DatasetIndex, Problem

COLUMNS = {
    "filename": ("filename", "file_name", "file", "image", "image_name", "path"),
    "width": ("width", "image_width", "w"),
    "height": ("height", "image_height", "h"),
    "class": ("class", "label", "name", "class_name", "category"),
    "xmin": ("xmin", "x_min", "x1", "left"),
    "ymin": ("ymin", "y_min", "y1", "top"),
    "xmax": ("xmax", "x_max", "x2", "right"),
    "ymax": ("ymax", "y_max", "y2", "bottom"),
}
REQUIRED = ("filename", "class", "xmin", "ymin", "xmax", "ymax")
KEYS = [
    "ann_file (the CSV, relative to root)",
    "images_dir (the image folder, default the root)",
    SPLIT_KEYS,
]


def _tree(cfg: DatasetConfig) -> list[str]:
    return [
        f"{cfg.ann_file or '<ann_file>.csv'}    filename,width,height,class,xmin,ymin,xmax,ymax",
        f"{cfg.images_dir + '/' if cfg.images_dir else ''}<filename>    the images",
    ]


def _columns(header: list[str], path: Path) -> dict[str, int]:
    names = [cell.strip().lower() for cell in header]
    found = {}
    for key, aliases in COLUMNS.items():
        index = next((names.index(a) for a in aliases if a in names), None)
        if index is not None:
            found[key] = index
    missing = [key for key in REQUIRED if key not in found]
    if missing:
        raise DatasetError(
            f"{path}: the CSV header {header} lacks {missing}; expected "
            "filename,width,height,class,xmin,ymin,xmax,ymax (width and height optional)"
        )
    return found


def read_csv_boxes(cfg: DatasetConfig) -> DatasetIndex:
    tree = _tree(cfg)
    if not cfg.ann_file:
        raise layout_error(
            cfg, Path(cfg.root), "an annotation file: format csv needs `ann_file`", tree, KEYS
        )
    path = resolve_under_root(cfg, cfg.ann_file)
    if not path.is_file():
        raise layout_error(cfg, path, "CSV annotation file", tree, KEYS)
    image_dir = resolve_under_root(cfg, cfg.images_dir) if cfg.images_dir else Path(cfg.root)
    require_folder(cfg, image_dir, "image", tree, KEYS)
    problems: list[Problem] = []
    with path.open(newline="", encoding=TEXT_ENCODING) as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return assemble_index([], cfg.classes or [], cfg, [], problems)
    columns = _columns(rows[0], path)
    width_of = max(columns.values()) + 1
    # filename -> (declared size, objects, first line), in first-seen order
    images: dict[str, tuple[tuple[int, int] | None, list[RawObject], int]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        location = f"{path}:{line}"
        if len(row) < width_of:
            message = f"expected {width_of} fields, got {len(row)}"
            problems.append(Problem("malformed_line", location, message, dropped=True))
            continue
        name = row[columns["filename"]].strip()
        entry = images.setdefault(name, (_declared(row, columns), [], line))
        label = row[columns["class"]].strip()
        if not label:
            continue  # an image without objects
        try:
            box = tuple(parse_finite(row[columns[k]]) for k in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError as e:
            problems.append(Problem("malformed_line", location, f"box: {e}", dropped=True))
            continue
        entry[1].append(RawObject(label, box, location))  # type: ignore[arg-type]
    by_stem = {Path(name).stem: name for name in images}
    keep = set(select_stems(cfg, lambda: list(by_stem), lambda split: list(by_stem)))
    raw_images = []
    for name, (declared, objects, line) in images.items():
        if Path(name).stem not in keep:
            continue
        location = f"{path}:{line}"
        image_path = image_dir / name
        if not image_path.is_file():  # the CSV's name without its extension, or another
            candidates = find_images(image_dir, Path(name).stem)
            usable, found = one_image(candidates, Path(name).stem, location, problems)
            if not usable:
                continue
            image_path = found or image_path
        header = probe_image(image_path, location, problems, str(image_dir / name))
        if header is None:
            continue
        width, height = image_size(declared, header, location, problems)
        raw_images.append(RawImage(image_path, width, height, objects, location))
    class_names = cfg.classes or sorted(
        mapped_names((obj.name for raw in raw_images for obj in raw.objects), cfg)
    )
    return assemble_index(raw_images, class_names, cfg, [], problems)


def _declared(row: list[str], columns: dict[str, int]) -> tuple[int, int] | None:
    """(width, height) the CSV states, None when absent or not a positive number."""
    if "width" not in columns or "height" not in columns:
        return None
    try:
        width = int(float(row[columns["width"]]))
        height = int(float(row[columns["height"]]))
    except (ValueError, OverflowError):
        return None
    return (width, height) if width > 0 and height > 0 else None
