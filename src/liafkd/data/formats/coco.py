"""COCO JSON: `ann_file` (relative to root) with images, annotations, categories.

An image's `file_name` is looked up at root/<file_name>, root/images/<split>/<file_name>,
root/<split>/<file_name> and root/images/<file_name>, first found wins (an absolute
file_name is used as is). Categories match `classes` by name (after `class_map`);
without `classes`, the categories sorted by id. Bbox xywh becomes xyxy. Attribute
"iscrowd", plus "truncated", "occluded", "alpha", "difficult" when annotations carry
them (as `liafkd data convert --to coco` writes them). Image ids are kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from liafkd.config import DatasetConfig
from liafkd.data.formats.common import (
    ATTR_DTYPES,
    TEXT_ENCODING,
    RawImage,
    RawObject,
    assemble_index,
    image_size,
    is_finite_number,
    mapped_names,
    probe_image,
    resolve_under_root,
)
from liafkd.data.formats.layout import SPLIT_KEYS, is_split_list, layout_error, select_stems
from liafkd.data.records import DatasetIndex, Problem

EXTRA_ATTRS = ("truncated", "occluded", "alpha", "difficult")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _invalid(problems: list[Problem], location: str, message: str) -> None:
    problems.append(Problem("invalid_json", location, message, dropped=True))


def _load_json(path: Path, problems: list[Problem]) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding=TEXT_ENCODING))
    except json.JSONDecodeError as e:
        _invalid(problems, f"{path}:{e.lineno}", f"cannot parse JSON: {e.msg} (column {e.colno})")
        return None
    except (OSError, UnicodeDecodeError) as e:
        _invalid(problems, str(path), f"cannot read: {e}")
        return None
    if not isinstance(data, dict):
        _invalid(problems, str(path), "the top level must be an object")
        return None
    return data


def _section(data: dict[str, Any], key: str, path: Path, problems: list[Problem]) -> list[Any]:
    value = data.get(key)
    if isinstance(value, list):
        return value
    _invalid(problems, f"{path}#{key}", f"`{key}` must be a list, got {type(value).__name__}")
    return []


def _read_categories(items: list[Any], path: Path, problems: list[Problem]) -> dict[int, str]:
    categories: dict[int, str] = {}
    for i, item in enumerate(items):
        location = f"{path}#categories[{i}]"
        if not isinstance(item, dict) or not _is_int(item.get("id")):
            _invalid(problems, location, "a category needs an integer `id`")
        elif not isinstance(item.get("name"), str):
            _invalid(problems, location, "a category needs a string `name`")
        elif item["id"] in categories:
            _invalid(problems, location, f"duplicate category id {item['id']}")
        else:
            categories[item["id"]] = item["name"]
    return categories


KEYS = [
    "ann_file (the JSON, relative to root)",
    "images_dir (the image folder, searched first)",
    SPLIT_KEYS + " (a list or ratio keeps those images of the JSON)",
]


def _image_folders(cfg: DatasetConfig) -> list[Path]:
    root = Path(cfg.root)
    folders = [resolve_under_root(cfg, cfg.images_dir)] if cfg.images_dir else []
    if isinstance(cfg.split, str) and not is_split_list(cfg.split):
        folders += [root, root / "images" / cfg.split, root / cfg.split, root / "images"]
    else:
        folders += [root, root / "images"]
    return folders


def _find_image_file(cfg: DatasetConfig, file_name: str) -> Path | None:
    for folder in _image_folders(cfg):
        candidate = folder / file_name
        if candidate.is_file():
            return candidate
    return None


def _read_image(
    item: Any, location: str, cfg: DatasetConfig, problems: list[Problem]
) -> RawImage | None:
    if not isinstance(item, dict) or not _is_int(item.get("id")):
        _invalid(problems, location, "an image needs an integer `id`")
        return None
    file_name = item.get("file_name")
    if not isinstance(file_name, str) or not file_name:
        _invalid(problems, location, "an image needs a string `file_name`")
        return None
    image_path = _find_image_file(cfg, file_name)
    where = ", ".join(str(f) for f in _image_folders(cfg))
    searched = f"{file_name} in {where} (images_dir names the image folder)"
    header_size = probe_image(image_path, location, problems, searched)
    if header_size is None:
        return None
    width, height = item.get("width"), item.get("height")
    given = _is_int(width) and _is_int(height) and width > 0 and height > 0
    declared = (width, height) if given else None
    width, height = image_size(declared, header_size, location, problems)
    return RawImage(image_path, width, height, [], location, image_id=item["id"])


def _annotation_attrs(item: dict[str, Any]) -> dict[str, float]:
    """iscrowd and the extra attributes, ValueError when one has the wrong type."""
    iscrowd = item.get("iscrowd", 0)
    if iscrowd not in (0, 1) or not isinstance(iscrowd, int):
        raise ValueError(f"`iscrowd` must be 0 or 1, got {iscrowd!r}")
    attrs = {"iscrowd": float(iscrowd)}
    for name in EXTRA_ATTRS:
        if name in item:
            if not is_finite_number(item[name]) and not isinstance(item[name], bool):
                raise ValueError(f"`{name}` must be a number, got {item[name]!r}")
            attrs[name] = float(item[name])
    return attrs


def _parse_annotation(item: Any, categories: dict[int, str]) -> tuple[int, RawObject]:
    """(image id, object); ValueError with what is wrong."""
    if not isinstance(item, dict):
        raise ValueError("an annotation must be an object")
    if not _is_int(item.get("image_id")):
        raise ValueError(f"`image_id` must be an integer, got {item.get('image_id')!r}")
    if not _is_int(item.get("category_id")):
        raise ValueError(f"`category_id` must be an integer, got {item.get('category_id')!r}")
    bbox = item.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_finite_number(v) for v in bbox)):
        raise ValueError(f"`bbox` must be 4 finite numbers [x, y, w, h], got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    name = categories.get(item["category_id"], f"<category id {item['category_id']}>")
    return item["image_id"], RawObject(name, (x, y, x + w, y + h), "", _annotation_attrs(item))


def _attach_annotations(
    items: list[Any],
    images: dict[int, RawImage],
    known_image_ids: set[int],
    categories: dict[int, str],
    path: Path,
    problems: list[Problem],
) -> set[str]:
    """Adds each annotation to its image; returns the attribute names seen."""
    seen_attrs = {"iscrowd"}
    for i, item in enumerate(items):
        annotation_id = item.get("id") if isinstance(item, dict) else None
        location = f"{path}#annotations[{i}]" + (
            f" (id {annotation_id})" if annotation_id is not None else ""
        )
        try:
            image_id, obj = _parse_annotation(item, categories)
        except ValueError as e:
            _invalid(problems, location, str(e))
            continue
        if image_id not in known_image_ids:
            _invalid(problems, location, f"`image_id` {image_id} is not in `images`")
            continue
        if image_id not in images:  # the image itself was dropped and reported
            continue
        obj.location = location
        seen_attrs.update(obj.attrs)
        images[image_id].objects.append(obj)
    return seen_attrs


def read_coco(cfg: DatasetConfig) -> DatasetIndex:
    tree = [
        f"{cfg.ann_file or '<ann_file>.json'}    images, annotations, categories",
        f"{cfg.images_dir or 'images/<split>'}/<file_name>    (or the root, <split>/, images/)",
    ]
    if not cfg.ann_file:
        raise layout_error(
            cfg, Path(cfg.root), "an annotation file: format coco needs `ann_file`", tree, KEYS
        )
    path = resolve_under_root(cfg, cfg.ann_file)
    if not path.is_file():
        raise layout_error(cfg, path, "COCO annotation file", tree, KEYS)
    problems: list[Problem] = []
    data = _load_json(path, problems)
    if data is None:
        return assemble_index([], cfg.classes or [], cfg, [], problems)
    categories = _read_categories(_section(data, "categories", path, problems), path, problems)
    images: dict[int, RawImage] = {}
    known_image_ids: set[int] = set()
    for i, item in enumerate(_section(data, "images", path, problems)):
        location = f"{path}#images[{i}]"
        image_id = item.get("id") if isinstance(item, dict) else None
        if _is_int(image_id) and image_id in known_image_ids:
            _invalid(problems, location, f"duplicate image id {image_id}")
            continue
        raw = _read_image(item, location, cfg, problems)
        if raw is not None:
            images[raw.image_id] = raw
        if _is_int(image_id):
            known_image_ids.add(image_id)
    if not isinstance(cfg.split, str) or is_split_list(cfg.split):  # a list or ratio
        stems = {i: Path(raw.image_path).stem for i, raw in images.items()}
        keep = set(select_stems(cfg, lambda: list(stems.values()), lambda name: []))
        images = {i: raw for i, raw in images.items() if stems[i] in keep}
    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        annotations = _section(data, "annotations", path, problems)
    seen_attrs = _attach_annotations(
        annotations, images, known_image_ids, categories, path, problems
    )
    class_names = cfg.classes or mapped_names((categories[k] for k in sorted(categories)), cfg)
    attr_names = [name for name in ATTR_DTYPES if name in seen_attrs]
    return assemble_index(list(images.values()), class_names, cfg, attr_names, problems)


def dataset_category_ids(cfg: DatasetConfig) -> dict[int, str]:
    """The annotation file's own category ids -> class names (after `class_map`), for
    results files that use them; {} when the file has none readable."""
    path = resolve_under_root(cfg, cfg.ann_file or "")
    problems: list[Problem] = []
    data = _load_json(path, problems) if path.is_file() else None
    if data is None:
        return {}
    categories = _read_categories(_section(data, "categories", path, problems), path, problems)
    return {cid: cfg.class_map.get(name, name) for cid, name in categories.items()}
