"""YOLO txt: images in root/images/<split>/, one label file per image in
<labels_dir>/<split>/<stem>.txt (labels_dir defaults to root/labels), each line
`class cx cy w h` normalised to [0, 1]. An image without a label file has no
objects; a label file without an image is reported as missing_image.

Class names come from `names_file` (YAML with `names:` as a list or an {id: name}
mapping), or from `classes` when no names file is given; with both, the file names
the ids and `classes` chooses and orders the training classes. The image size is
read from the image header.
"""

from __future__ import annotations

from pathlib import Path

from liafkd.config import ConfigError, DatasetConfig, read_yaml
from liafkd.data.formats.common import (
    IMAGE_EXTENSIONS,
    DatasetError,
    RawImage,
    RawObject,
    assemble_index,
    mapped_names,
    parse_finite,
    probe_image,
    read_text_lines,
    require_dir,
    resolve_under_root,
)
from liafkd.data.records import DatasetIndex, Problem


def read_names_file(path: Path) -> dict[int, str]:
    """{class id: name} from a YOLO dataset YAML's `names`."""
    try:
        names = read_yaml(path).get("names")
    except ConfigError as e:
        raise DatasetError(str(e)) from None
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names:
        raise DatasetError(f"{path}: expected `names:` as a list or an {{id: name}} mapping")
    result = {}
    for key, name in names.items():
        if not isinstance(key, int) or isinstance(key, bool) or not isinstance(name, str):
            raise DatasetError(f"{path}: names: entry {key!r}: {name!r} is not `int: name`")
        result[key] = name
    return result


def _id_to_name(cfg: DatasetConfig) -> dict[int, str]:
    if cfg.names_file:
        return read_names_file(resolve_under_root(cfg, cfg.names_file))
    if cfg.classes:
        return dict(enumerate(cfg.classes))
    raise DatasetError(f"{cfg.root}: YOLO needs `names_file` or `classes` to name class ids")


def _parse_line(
    text: str, width: int, height: int, id_to_name: dict[int, str]
) -> tuple[str, tuple[float, float, float, float]]:
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields `class cx cy w h`, got {len(fields)}")
    try:
        class_id = int(fields[0])
    except ValueError:
        raise ValueError(f"class id {fields[0]!r} is not an integer") from None
    try:
        cx, cy, w, h = (parse_finite(v) for v in fields[1:])
    except ValueError as e:
        raise ValueError(f"coordinates: {e}") from None
    name = id_to_name.get(class_id, f"<class id {class_id}>")
    box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
    return name, box


def _read_labels(
    label_path: Path, width: int, height: int, id_to_name: dict[int, str], problems: list[Problem]
) -> list[RawObject]:
    objects: list[RawObject] = []
    for line_number, text in enumerate(read_text_lines(label_path, problems) or [], start=1):
        if not text.strip():
            continue
        location = f"{label_path}:{line_number}"
        try:
            name, box = _parse_line(text, width, height, id_to_name)
        except ValueError as e:
            problems.append(Problem("malformed_line", location, str(e), dropped=True))
            continue
        objects.append(RawObject(name, box, location))
    return objects


def read_yolo(cfg: DatasetConfig) -> DatasetIndex:
    root = Path(cfg.root)
    image_dir = require_dir(root / "images" / cfg.split, "YOLO image")
    label_dir = require_dir(
        resolve_under_root(cfg, cfg.labels_dir or "labels") / cfg.split, "YOLO label"
    )
    id_to_name = _id_to_name(cfg)
    problems: list[Problem] = []
    image_paths = sorted(
        p for p in image_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    raw_images = []
    for image_path in image_paths:
        label_path = label_dir / f"{image_path.stem}.txt"
        size = probe_image(image_path, str(label_path), problems)
        if size is None:
            continue
        if label_path.is_file():
            objects = _read_labels(label_path, *size, id_to_name, problems)
            source = label_path
        else:  # a background image: YOLO gives it no label file
            objects, source = [], image_path
        raw_images.append(RawImage(image_path, size[0], size[1], objects, str(source)))
    image_stems = {p.stem for p in image_paths}
    for label_path in sorted(label_dir.glob("*.txt")):
        if label_path.stem not in image_stems:
            message = f"no image {label_path.stem}.* in {image_dir}"
            problems.append(Problem("missing_image", str(label_path), message, dropped=True))
    class_names = cfg.classes or mapped_names((id_to_name[k] for k in sorted(id_to_name)), cfg)
    return assemble_index(raw_images, class_names, cfg, [], problems)
