"""Pascal VOC: root/Annotations/<stem>.xml, root/JPEGImages/<stem>.jpg, split
root/ImageSets/Main/<split>.txt. `annotations_dir` and `images_dir` name other folders
(a tutorial's annotations/ and images/), and `split` may also be a list file or a ratio
(see liafkd.data.formats.layout). Boxes are taken as written (no 1-pixel shift).
Classes default to the sorted names found. Attribute: "difficult"."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from liafkd.config import DatasetConfig
from liafkd.data.formats.common import (
    RawImage,
    RawObject,
    assemble_index,
    find_images,
    image_size,
    mapped_names,
    one_image,
    parse_finite,
    probe_image,
    read_split_stems,
)
from liafkd.data.formats.layout import SPLIT_KEYS, layout_error, require_folder, select_stems
from liafkd.data.records import DatasetIndex, Problem

ATTR_NAMES = ["difficult"]


KEYS = [
    "annotations_dir (default Annotations)",
    "images_dir (default JPEGImages)",
    SPLIT_KEYS,
]


def _tree(cfg: DatasetConfig) -> list[str]:
    split = cfg.split if isinstance(cfg.split, str) else "<split>"
    return [
        f"{cfg.annotations_dir or 'Annotations'}/<name>.xml   one XML per image",
        f"{cfg.images_dir or 'JPEGImages'}/<name>.jpg    (or .png, ...)",
        f"ImageSets/Main/{split}.txt   the split's names, one a line",
    ]


def _split_stems(cfg: DatasetConfig, annotations: Path) -> list[str]:
    root = Path(cfg.root)

    def named(split: str) -> list[str]:
        split_file = root / "ImageSets" / "Main" / f"{split}.txt"
        if not split_file.is_file():
            folder = split_file.parent
            found = sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []
            raise layout_error(
                cfg, split_file, "split file", _tree(cfg), KEYS, f" (available: {found})"
            )
        return read_split_stems(split_file, lambda stem: (annotations / f"{stem}.xml").is_file())

    def every() -> list[str]:
        return [p.stem for p in annotations.glob("*.xml")]

    return select_stems(cfg, every, named)


def _text(element: ET.Element, path: str) -> str:
    found = element.find(path)
    if found is None or found.text is None or not found.text.strip():
        raise ValueError(f"missing <{path}>")
    return found.text.strip()


def _parse_object(element: ET.Element) -> tuple[str, tuple[float, float, float, float], bool]:
    name = _text(element, "name")
    box = element.find("bndbox")
    if box is None:
        raise ValueError("missing <bndbox>")
    coords = []
    for key in ("xmin", "ymin", "xmax", "ymax"):
        text = _text(box, key)
        try:
            coords.append(parse_finite(text))
        except ValueError:
            raise ValueError(f"<bndbox><{key}> is not a number: {text!r}") from None
    difficult_node = element.find("difficult")
    difficult_text = (difficult_node.text or "0").strip() if difficult_node is not None else "0"
    if difficult_text not in ("0", "1"):
        raise ValueError(f"<difficult> must be 0 or 1, got {difficult_text!r}")
    return name, (coords[0], coords[1], coords[2], coords[3]), difficult_text == "1"


def _declared_size(root_element: ET.Element) -> tuple[int, int] | None:
    """(width, height) from <size>, None when missing, zero or not a number."""
    try:
        width = int(float(_text(root_element, "size/width")))
        height = int(float(_text(root_element, "size/height")))
    except (ValueError, OverflowError):  # not a number, nan, inf
        return None
    return (width, height) if width > 0 and height > 0 else None


def _image_candidates(image_dir: Path, stem: str, root_element: ET.Element) -> list[Path]:
    """The images named after the annotation's stem, else the one its <filename> names."""
    found = find_images(image_dir, stem)
    if not found:
        filename = root_element.findtext("filename")
        if filename and (image_dir / filename.strip()).is_file():
            found = [image_dir / filename.strip()]
    return found


def _read_annotation(xml_path: Path, image_dir: Path, problems: list[Problem]) -> RawImage | None:
    location = str(xml_path)
    try:
        root_element = ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        line = e.position[0]
        problems.append(
            Problem("invalid_xml", f"{location}:{line}", f"cannot parse XML: {e}", dropped=True)
        )
        return None
    stem = xml_path.stem
    candidates = _image_candidates(image_dir, stem, root_element)
    usable, image_path = one_image(candidates, stem, location, problems)
    if not usable:
        return None
    header_size = probe_image(image_path, location, problems, f"{image_dir}/{stem}.*")
    if header_size is None:
        return None
    width, height = image_size(_declared_size(root_element), header_size, location, problems)
    objects = []
    for number, element in enumerate(root_element.findall("object"), start=1):
        object_location = f"{location}#object {number}"
        try:
            name, box, difficult = _parse_object(element)
        except ValueError as e:
            problems.append(Problem("invalid_xml", object_location, str(e), dropped=True))
            continue
        objects.append(RawObject(name, box, object_location, {"difficult": difficult}))
    return RawImage(image_path, width, height, objects, location)


def read_voc(cfg: DatasetConfig) -> DatasetIndex:
    root = Path(cfg.root)
    tree = _tree(cfg)
    annotation_dir = require_folder(
        cfg, root / (cfg.annotations_dir or "Annotations"), "VOC annotation (XML)", tree, KEYS
    )
    image_dir = require_folder(
        cfg, root / (cfg.images_dir or "JPEGImages"), "VOC image", tree, KEYS
    )
    problems: list[Problem] = []
    raw_images = []
    for stem in _split_stems(cfg, annotation_dir):
        xml_path = annotation_dir / f"{stem}.xml"
        if not xml_path.is_file():
            problems.append(
                Problem("missing_label", str(xml_path), "annotation file not found", dropped=True)
            )
            continue
        raw = _read_annotation(xml_path, image_dir, problems)
        if raw is not None:
            raw_images.append(raw)
    class_names = cfg.classes or sorted(
        mapped_names((obj.name for raw in raw_images for obj in raw.objects), cfg)
    )
    return assemble_index(raw_images, class_names, cfg, ATTR_NAMES, problems)
