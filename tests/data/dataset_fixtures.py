"""Builders for tiny hand-written datasets in each format, written under tmp_path."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import yaml
from PIL import Image


def write_image(path: Path, width: int = 64, height: int = 48) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 120, 150)).save(path)
    return path


def write_truncated_image(path: Path) -> Path:
    """A PNG cut off inside its header: PIL cannot even read the size."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48)).save(buffer, "PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue()[:16])
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def voc_xml(
    objects: list[tuple[str, float, float, float, float]],
    width: int | None = 64,
    height: int | None = 48,
    difficult: tuple[int, ...] = (),
) -> str:
    """A VOC annotation; objects are (name, xmin, ymin, xmax, ymax)."""
    size = "" if width is None else f"<size><width>{width}</width><height>{height}</height></size>"
    parts = [f"<annotation><filename>x.jpg</filename>{size}"]
    for i, (name, x1, y1, x2, y2) in enumerate(objects):
        parts.append(
            f"<object><name>{name}</name><difficult>{int(i in difficult)}</difficult>"
            f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax>"
            "</bndbox></object>"
        )
    parts.append("</annotation>")
    return "".join(parts)


def make_voc(root: Path, annotations: dict[str, str], split: str = "train") -> Path:
    """VOC tree with one 64x48 image per annotation stem."""
    for stem, xml in annotations.items():
        write_text(root / "Annotations" / f"{stem}.xml", xml)
        write_image(root / "JPEGImages" / f"{stem}.jpg")
    write_text(root / "ImageSets" / "Main" / f"{split}.txt", "\n".join(annotations) + "\n")
    return root


def make_yolo(root: Path, labels: dict[str, str], names: Any, split: str = "train") -> Path:
    """YOLO tree with one 100x50 image per label stem and a names.yaml."""
    for stem, text in labels.items():
        write_image(root / "images" / split / f"{stem}.png", 100, 50)
        write_text(root / "labels" / split / f"{stem}.txt", text)
    write_text(root / "names.yaml", yaml.safe_dump({"names": names}))
    return root


def kitti_line(
    name: str, box: tuple[float, float, float, float], truncated: float = 0.0, occluded: int = 0
) -> str:
    x1, y1, x2, y2 = box
    return (
        f"{name} {truncated:.2f} {occluded} -1.57 {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f} "
        "1.50 1.60 3.90 1.00 1.70 20.00 -1.50"
    )


def make_kitti(root: Path, labels: dict[str, list[str]], split: str | None = None) -> Path:
    """KITTI tree with one 120x40 PNG per label stem; a split file when split is given."""
    for stem, lines in labels.items():
        write_image(root / "training" / "image_2" / f"{stem}.png", 120, 40)
        write_text(root / "training" / "label_2" / f"{stem}.txt", "\n".join(lines) + "\n")
    if split is not None:
        write_text(root / "ImageSets" / f"{split}.txt", "\n".join(labels) + "\n")
    return root


def write_coco(root: Path, data: dict[str, Any], name: str = "ann.json") -> Path:
    return write_text(root / name, json.dumps(data))


def write_dataset_yaml(path: Path, **fields: Any) -> Path:
    return write_text(path, yaml.safe_dump(fields))
