"""Write a `DatasetIndex` in another format (COCO JSON for now)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from liafkd.data.records import DatasetIndex, ImageRecord
from liafkd.outputs import write_text_atomic

# Enough for sub-pixel exactness while keeping float32 noise out of the JSON.
DECIMALS = 4


def _annotation(record: ImageRecord, i: int, annotation_id: int) -> dict[str, Any]:
    x1, y1, x2, y2 = (float(v) for v in record.boxes_xyxy[i])
    width, height = x2 - x1, y2 - y1
    annotation: dict[str, Any] = {
        "id": annotation_id,
        "image_id": record.image_id,
        "category_id": int(record.labels[i]) + 1,
        "bbox": [round(v, DECIMALS) for v in (x1, y1, width, height)],
        "area": round(width * height, DECIMALS),
        "iscrowd": int(bool(record.attrs["iscrowd"][i])) if "iscrowd" in record.attrs else 0,
    }
    for name, values in record.attrs.items():
        if name != "iscrowd":
            annotation[name] = values[i].item()
    return annotation


def relative_file_name(file_name: str, folder: Path) -> str:
    """`file_name` relative to `folder` with forward slashes (absolute when no relative
    path exists, e.g. another Windows drive)."""
    try:
        return Path(os.path.relpath(Path(file_name).resolve(), folder.resolve())).as_posix()
    except ValueError:
        return file_name


def to_coco_dict(index: DatasetIndex, relative_to: Path | None = None) -> dict[str, Any]:
    """COCO JSON of the index: category ids are 1-based in class order, annotation
    ids count from 1, file names absolute (or relative to `relative_to`), and
    per-instance attributes other than iscrowd (truncated, occluded, alpha, difficult)
    are extra annotation fields. Ignore boxes are left out."""
    images = [
        {
            "id": r.image_id,
            "file_name": r.file_name
            if relative_to is None
            else relative_file_name(r.file_name, relative_to),
            "width": r.width,
            "height": r.height,
        }
        for r in index.records
    ]
    annotations: list[dict[str, Any]] = []
    for record in index.records:
        for i in range(record.num_instances):
            annotations.append(_annotation(record, i, len(annotations) + 1))
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(index.class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_coco_json(index: DatasetIndex, out_path: str | Path) -> Path:
    """The index as COCO JSON at `out_path`, image file names relative to its folder
    (the file and the images can move together; read it back with `format: coco`,
    `root:` that folder)."""
    out_path = Path(out_path)
    write_text_atomic(out_path, json.dumps(to_coco_dict(index, relative_to=out_path.parent)))
    return out_path
