"""Datasets laid out as users have them (popular tutorials' trees): other folder names,
splits given as CSV/TXT lists or a seeded ratio, the one-row-per-box CSV format, and
errors that show the tree a format expects with the keys that change it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from liafkd.config import DatasetConfig, SplitRatio, load_config, load_dataset_config
from liafkd.data.formats import DatasetError, read_dataset

CSV_HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax\n"


def voc_xml(name: str, boxes: list[tuple[str, int, int, int, int]]) -> str:
    objects = "".join(
        f"<object><name>{c}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
        f"<xmax>{x}</xmax><ymax>{y}</ymax></bndbox></object>"
        for c, a, b, x, y in boxes
    )
    return (
        f"<annotation><filename>{name}</filename><size><width>64</width>"
        f"<height>48</height></size>{objects}</annotation>"
    )


def tutorial_layout(root: Path, count: int = 8) -> Path:
    """images/ + annotations/ (VOC XML) + train.csv / val.csv listing the files, one row
    per box, as many tutorials ship their datasets."""
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    rows = {"train": [], "val": []}
    for i in range(count):
        name = f"photo_{i:03d}.jpg"
        Image.new("RGB", (64, 48), (40 * (i % 5), 90, 150)).save(root / "images" / name)
        boxes = [("cell", 4 + i, 6, 30 + i, 40), ("cell", 34, 8, 60, 30)]
        (root / "annotations" / f"photo_{i:03d}.xml").write_text(voc_xml(name, boxes))
        side = "val" if i % 4 == 3 else "train"
        rows[side] += [f"{name},64,48,{c},{a},{b},{x},{y}\n" for c, a, b, x, y in boxes]
    for side, lines in rows.items():
        (root / f"{side}.csv").write_text(CSV_HEADER + "".join(lines))
    return root


def voc(root: Path, split, **keys) -> DatasetConfig:
    return DatasetConfig(
        format="voc",
        root=str(root),
        split=split,
        images_dir="images",
        annotations_dir="annotations",
        **keys,
    )


def stems(index) -> list[str]:
    return sorted(Path(r.file_name).stem for r in index.records)


def test_tutorial_layout_with_csv_splits(tmp_path):
    root = tutorial_layout(tmp_path / "cells")
    train = read_dataset(voc(root, "train.csv"))
    val = read_dataset(voc(root, "val.csv"))
    assert len(train.records) == 6 and len(val.records) == 2
    assert not set(stems(train)) & set(stems(val))
    assert train.class_names == ["cell"] and not train.problems
    assert sum(r.num_instances for r in train.records) == 12


def test_txt_split_with_extensions_and_folders(tmp_path):
    root = tutorial_layout(tmp_path / "cells")
    (root / "mine.txt").write_text("images/photo_000.jpg\nphoto_001\n\nphoto_002.jpg\n")
    assert stems(read_dataset(voc(root, "mine.txt"))) == ["photo_000", "photo_001", "photo_002"]


def test_ratio_split_parts_are_disjoint_and_seeded(tmp_path):
    root = tutorial_layout(tmp_path / "cells")
    train = read_dataset(voc(root, SplitRatio(ratio=0.75, seed=0, part="train")))
    val = read_dataset(voc(root, SplitRatio(ratio=0.75, seed=0, part="val")))
    assert (len(train.records), len(val.records)) == (6, 2)
    assert sorted(stems(train) + stems(val)) == [f"photo_{i:03d}" for i in range(8)]
    again = read_dataset(voc(root, SplitRatio(ratio=0.75, seed=0, part="val")))
    other = read_dataset(voc(root, SplitRatio(ratio=0.75, seed=1, part="val")))
    assert stems(again) == stems(val) and stems(other) != stems(val)


def test_ratio_split_within_a_split_stays_inside_it(tmp_path):
    """A tuning split carved from the training set never touches the validation set."""
    root = tutorial_layout(tmp_path / "cells")  # train.csv: 6 photos, val.csv: 2
    carve = {"ratio": 0.5, "seed": 4, "within": "train.csv"}
    tune_train = read_dataset(voc(root, SplitRatio(**carve, part="train")))
    tune_val = read_dataset(voc(root, SplitRatio(**carve, part="val")))
    assert (len(tune_train.records), len(tune_val.records)) == (3, 3)
    assert sorted(stems(tune_train) + stems(tune_val)) == stems(
        read_dataset(voc(root, "train.csv"))
    )
    assert not set(stems(tune_val)) & {"photo_003", "photo_007"}  # val.csv's photos


def test_experiment_config_gives_train_and_val_their_ratio_parts(tmp_path, tiny_config):
    root = tutorial_layout(tmp_path / "cells")
    raw = yaml.safe_load(tiny_config().read_text())
    block = {"format": "voc", "root": str(root), "images_dir": "images"}
    block |= {"annotations_dir": "annotations", "split": {"ratio": 0.75, "seed": 3}}
    raw["data"]["train"], raw["data"]["val"] = dict(block), dict(block)
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(tmp_path / "exp.yaml")
    assert (cfg.data.train.split.part, cfg.data.val.split.part) == ("train", "val")
    train, val = read_dataset(cfg.data.train), read_dataset(cfg.data.val)
    assert not set(stems(train)) & set(stems(val)) and len(train.records) == 6


def test_csv_format(tmp_path):
    root = tmp_path / "csvset"
    (root / "images").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        Image.new("RGB", (64, 48)).save(root / "images" / name)
    (root / "train_labels.csv").write_text(
        CSV_HEADER
        + "a.jpg,64,48,dog,1,2,30,40\n"
        + "a.jpg,64,48,cat,10,12,50,44\n"
        + "b.jpg,64,48,,,,,\n"  # an image without objects
        + "c.jpg,64,48,dog,1,2,x,40\n"  # a bad box, reported
    )
    (root / "set.yaml").write_text(
        "format: csv\nroot: .\nann_file: train_labels.csv\nimages_dir: images\n"
    )
    index = read_dataset(load_dataset_config(root / "set.yaml"))
    assert index.class_names == ["cat", "dog"]
    counts = {Path(r.file_name).name: r.num_instances for r in index.records}
    assert counts == {"a.jpg": 2, "b.jpg": 0, "c.jpg": 0}
    assert any(p.kind == "malformed_line" and p.location.endswith(":5") for p in index.problems)
    a = next(r for r in index.records if r.file_name.endswith("a.jpg"))
    assert a.boxes_xyxy.tolist()[0] == [1, 2, 30, 40]


def test_csv_header_without_box_columns_is_refused(tmp_path):
    (tmp_path / "labels.csv").write_text("filename,label\na.jpg,dog\n")
    cfg = DatasetConfig(format="csv", root=str(tmp_path), ann_file="labels.csv")
    with pytest.raises(DatasetError, match=r"lacks \['xmin', 'ymin', 'xmax', 'ymax'\]"):
        read_dataset(cfg)


@pytest.mark.parametrize(
    ("cfg", "tree", "keys"),
    [
        (
            {"format": "voc"},
            ["Annotations/<name>.xml", "JPEGImages/<name>.jpg", "ImageSets/Main/train.txt"],
            ["annotations_dir", "images_dir", "split"],
        ),
        (
            {"format": "yolo", "classes": ["cell"]},
            ["images/train/<name>.jpg", "labels/train/<name>.txt"],
            ["images_dir", "annotations_dir", "labels_dir", "split", "names_file"],
        ),
        ({"format": "coco"}, ["<ann_file>.json", "images/<split>"], ["ann_file", "images_dir"]),
        ({"format": "csv"}, ["filename,width,height,class,xmin"], ["ann_file", "images_dir"]),
    ],
)
def test_missing_layout_shows_the_expected_tree_and_keys(tmp_path, cfg, tree, keys):
    tutorial_layout(tmp_path / "cells")
    with pytest.raises(DatasetError) as error:
        read_dataset(DatasetConfig(root=str(tmp_path / "cells"), **cfg))
    message = str(error.value)
    assert f"A `format: {cfg['format']}` dataset is read as:" in message
    for part in tree + keys:
        assert part in message, part


def test_yolo_folders_by_key_and_a_csv_split(tmp_path):
    """Roboflow-style train/images + train/labels, the split a CSV of names."""
    root = tmp_path / "yolo"
    for folder in ("train/images", "train/labels"):
        (root / folder).mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (100, 50)).save(root / "train" / "images" / f"{i}.png")
        (root / "train" / "labels" / f"{i}.txt").write_text("0 0.5 0.5 0.2 0.4\n")
    (root / "picked.csv").write_text("filename\n0.png\n2.png\n")
    cfg = DatasetConfig(
        format="yolo",
        root=str(root),
        images_dir="train/images",
        annotations_dir="train/labels",
        classes=["cell"],
    )
    assert len(read_dataset(cfg).records) == 4  # a split name: every image of the folder
    picked = read_dataset(cfg.model_copy(update={"split": "picked.csv"}))
    assert stems(picked) == ["0", "2"] and not picked.problems


def test_coco_images_dir_and_list_split(tmp_path):
    root = tmp_path / "coco"
    (root / "pics").mkdir(parents=True)
    images, annotations = [], []
    for i in range(3):
        Image.new("RGB", (64, 48)).save(root / "pics" / f"p{i}.jpg")
        images.append({"id": i + 1, "file_name": f"p{i}.jpg", "width": 64, "height": 48})
        annotations.append(
            {"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [1, 1, 20, 20]}
        )
    data = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "x"}]}
    (root / "ann.json").write_text(json.dumps(data))
    (root / "val.txt").write_text("p1.jpg\n")
    cfg = DatasetConfig(format="coco", root=str(root), ann_file="ann.json", images_dir="pics")
    assert len(read_dataset(cfg).records) == 3
    val = read_dataset(cfg.model_copy(update={"split": "val.txt"}))
    assert stems(val) == ["p1"] and val.records[0].num_instances == 1
