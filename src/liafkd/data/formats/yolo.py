"""YOLO txt: images in root/images/<split>/, one label file per image in
<labels_dir>/<split>/<stem>.txt (labels_dir defaults to root/labels), each line
`class cx cy w h` normalised to [0, 1]. `images_dir` / `annotations_dir` name other
folders; a list-file or ratio `split` picks files from images/ and labels/. An image
without a label file has no objects; a label file without an image is reported as missing_image.

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
    one_image,
    parse_finite,
    probe_image,
    read_text_lines,
    resolve_under_root,
    unusable_label_file,
)
from liafkd.data.formats.layout import SPLIT_KEYS, is_split_list, require_folder, select_stems
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
) -> list[RawObject] | None:
    """The file's objects; None (the image dropped, reported) when every line is bad."""
    objects: list[RawObject] = []
    malformed = 0
    for line_number, text in enumerate(read_text_lines(label_path, problems) or [], start=1):
        if not text.strip():
            continue
        location = f"{label_path}:{line_number}"
        try:
            name, box = _parse_line(text, width, height, id_to_name)
        except ValueError as e:
            problems.append(Problem("malformed_line", location, str(e), dropped=True))
            malformed += 1
            continue
        objects.append(RawObject(name, box, location))
    if unusable_label_file(label_path, malformed, objects, problems):
        return None
    return objects


KEYS = [
    "images_dir (default images/<split>)",
    "annotations_dir (default labels/<split>; labels_dir moves the labels root)",
    SPLIT_KEYS,
    "names_file or classes (the class names)",
]


def _folders(cfg: DatasetConfig) -> tuple[Path, Path, list[str]]:
    """The image and label folders of the split, and the tree for error messages. A
    named split is a subfolder (images/train, labels/train); a list or ratio split
    picks files from images/ and labels/ (or images_dir, annotations_dir)."""
    named = isinstance(cfg.split, str) and not is_split_list(cfg.split)
    sub = f"/{cfg.split}" if named else ""
    images = cfg.images_dir or f"images{sub}"
    labels = cfg.annotations_dir or f"{cfg.labels_dir or 'labels'}{sub}"
    tree = [
        f"{images}/<name>.jpg    (or .png, ...)",
        f"{labels}/<name>.txt    `class cx cy w h` a line, normalised to [0, 1]",
        f"{cfg.names_file or 'data.yaml'}    names: [...] (the names_file key), or classes: [...]",
    ]
    return resolve_under_root(cfg, images), resolve_under_root(cfg, labels), tree


def read_yolo(cfg: DatasetConfig) -> DatasetIndex:
    image_dir, label_dir, tree = _folders(cfg)
    require_folder(cfg, image_dir, "YOLO image", tree, KEYS)
    require_folder(cfg, label_dir, "YOLO label", tree, KEYS)
    id_to_name = _id_to_name(cfg)
    problems: list[Problem] = []
    all_images = sorted(
        p for p in image_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    by_stem: dict[str, list[Path]] = {}
    for path in all_images:
        by_stem.setdefault(path.stem, []).append(path)
    stems = select_stems(cfg, lambda: list(by_stem), lambda name: list(by_stem))
    for stem in stems:
        if stem not in by_stem:
            message = f"the split names {stem}, and there is no {stem}.* in {image_dir}"
            problems.append(Problem("missing_image", stem, message, dropped=True))
    raw_images = []
    for stem in (stem for stem in stems if stem in by_stem):
        label_path = label_dir / f"{stem}.txt"
        usable, image_path = one_image(by_stem[stem], stem, str(label_path), problems)
        if not usable or image_path is None:
            continue
        size = probe_image(image_path, str(label_path), problems)
        if size is None:
            continue
        if label_path.is_file():
            objects = _read_labels(label_path, *size, id_to_name, problems)
            if objects is None:
                continue
            source = label_path
        else:  # a background image: YOLO gives it no label file
            objects, source = [], image_path
        raw_images.append(RawImage(image_path, size[0], size[1], objects, str(source)))
    chosen = set(stems) if not isinstance(cfg.split, str) or is_split_list(cfg.split) else None
    for label_path in sorted(label_dir.glob("*.txt")):
        if chosen is not None and label_path.stem not in chosen:
            continue  # another split's label, in a shared folder
        if label_path.stem not in by_stem:
            message = f"no image {label_path.stem}.* in {image_dir}"
            problems.append(Problem("missing_image", str(label_path), message, dropped=True))
    class_names = cfg.classes or mapped_names((id_to_name[k] for k in sorted(id_to_name)), cfg)
    return assemble_index(raw_images, class_names, cfg, [], problems)
