"""Weak spots made clear: float TIFFs refused, reversed boxes named as such, one image
per stem in every reader, a UTF-8 BOM read as text, a label file of only bad lines
dropped by YOLO as by KITTI."""

import json
from pathlib import Path

import numpy as np
import pytest
from dataset_fixtures import (
    kitti_line,
    make_kitti,
    make_voc,
    make_yolo,
    voc_xml,
    write_dataset_yaml,
    write_image,
    write_text,
)
from PIL import Image

from liafkd.cli.main import main
from liafkd.config import DatasetConfig
from liafkd.data.formats import read_dataset

BOM = "\ufeff"


def kinds(index) -> list[tuple[str, str]]:
    return [(p.kind, Path(p.location.split(":")[0].split("#")[0]).name) for p in index.problems]


@pytest.mark.parametrize("values", [np.linspace(0, 1, 48 * 64), np.linspace(0, 255, 48 * 64)])
def test_float_tiff_is_refused_by_data_check_not_decoded_black(tmp_path, values):
    root = make_kitti(tmp_path / "k", {n: [kitti_line("Car", (2, 2, 30, 30))] for n in "ab"})
    image = root / "training" / "image_2" / "a.png"
    image.unlink()
    Image.fromarray(values.reshape(48, 64).astype(np.float32)).save(image.with_suffix(".tif"))
    config = write_dataset_yaml(tmp_path / "ds.yaml", format="kitti", root=str(root))
    out = tmp_path / "summary.json"
    assert main(["data", "check", str(config), "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["images"] == 1
    [problem] = summary["problems"]["unreadable_image"]
    assert problem["location"].endswith("a.tif") and problem["dropped"]
    assert "floating-point pixels (mode F)" in problem["message"]


def test_reversed_boxes_are_reported_as_reversed_in_every_format(tmp_path):
    voc = make_voc(
        tmp_path / "voc",
        {"a": voc_xml([("cat", 30, 5, 10, 20), ("cat", 5, 30, 20, 10), ("cat", 5, 5, 5, 20)])},
    )
    found = kinds(read_dataset(DatasetConfig(format="voc", root=str(voc))))
    assert found == [("reversed_box", "a.xml")] * 2 + [("zero_area_box", "a.xml")] + [
        ("no_objects", "a.xml")
    ]
    kitti = make_kitti(tmp_path / "kitti", {"000000": [kitti_line("Car", (60, 5, 10, 30))]})
    index = read_dataset(DatasetConfig(format="kitti", root=str(kitti)))
    assert ("reversed_box", "000000.txt") in kinds(index)
    write_image(tmp_path / "coco" / "x.png")
    coco = {
        "images": [{"id": 1, "file_name": "x.png", "width": 64, "height": 48}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [30, 5, -10, 9]}],
        "categories": [{"id": 1, "name": "cat"}],
    }
    write_text(tmp_path / "coco" / "ann.json", json.dumps(coco))
    index = read_dataset(
        DatasetConfig(format="coco", root=str(tmp_path / "coco"), ann_file="ann.json")
    )
    assert [p.kind for p in index.problems] == ["reversed_box", "no_objects"]
    assert "x2 < x1" in index.problems[0].message


def _twin(folder: Path, stem: str) -> None:
    """A second image for `stem`, with another extension."""
    write_image(folder / f"{stem}.png")
    write_image(folder / f"{stem}.jpg")


def test_two_images_for_one_stem_are_refused_alike_by_every_reader(tmp_path):
    yolo = make_yolo(tmp_path / "yolo", {"a": "0 .5 .5 .2 .2\n", "b": "0 .5 .5 .2 .2\n"}, ["cat"])
    _twin(yolo / "images" / "train", "a")
    voc = make_voc(tmp_path / "voc", {s: voc_xml([("cat", 1, 1, 20, 20)]) for s in "ab"})
    _twin(voc / "JPEGImages", "a")
    kitti = make_kitti(tmp_path / "kitti", {s: [kitti_line("Car", (2, 2, 30, 30))] for s in "ab"})
    _twin(kitti / "training" / "image_2", "a")
    configs = [
        DatasetConfig(format="yolo", root=str(yolo), names_file="names.yaml"),
        DatasetConfig(format="voc", root=str(voc)),
        DatasetConfig(format="kitti", root=str(kitti)),
    ]
    for cfg in configs:
        index = read_dataset(cfg)
        assert [Path(r.file_name).stem for r in index.records] == ["b"], cfg.format
        [problem] = index.problems
        assert problem.kind == "ambiguous_image" and problem.dropped
        assert "a.jpg" in problem.message and "a.png" in problem.message


def test_a_utf8_bom_is_read_as_text(tmp_path):
    # a CSV of boxes
    write_image(tmp_path / "csv" / "x.png")
    write_text(
        tmp_path / "csv" / "boxes.csv",
        BOM + "filename,class,xmin,ymin,xmax,ymax\nx.png,cat,1,1,20,20\n",
    )
    index = read_dataset(
        DatasetConfig(format="csv", root=str(tmp_path / "csv"), ann_file="boxes.csv")
    )
    assert index.records[0].num_instances == 1 and not index.problems
    # a split file, a split CSV, and a YOLO label file
    voc = make_voc(tmp_path / "voc", {s: voc_xml([("cat", 1, 1, 20, 20)]) for s in "ab"})
    write_text(voc / "ImageSets" / "Main" / "train.txt", BOM + "a\nb\n")
    write_text(voc / "pick.csv", BOM + "filename\nb.jpg\n")
    for split, stems in (("train", ["a", "b"]), ("pick.csv", ["b"])):
        index = read_dataset(DatasetConfig(format="voc", root=str(voc), split=split))
        assert [Path(r.file_name).stem for r in index.records] == stems and not index.problems
    yolo = make_yolo(tmp_path / "yolo", {"a": BOM + "0 .5 .5 .2 .2\n"}, ["cat"])
    index = read_dataset(DatasetConfig(format="yolo", root=str(yolo), names_file="names.yaml"))
    assert index.records[0].num_instances == 1 and not index.problems


def test_a_label_file_of_only_bad_lines_drops_the_image_in_yolo_as_in_kitti(tmp_path):
    yolo = make_yolo(
        tmp_path / "yolo",
        {"bad": "0 .5 .5\ncat .5 .5 .2 .2\n", "good": "0 .5 .5 .2 .2\nnonsense\n", "empty": ""},
        ["cat"],
    )
    index = read_dataset(DatasetConfig(format="yolo", root=str(yolo), names_file="names.yaml"))
    assert sorted(Path(r.file_name).stem for r in index.records) == ["empty", "good"]
    unusable = [p for p in index.problems if p.kind == "unusable_labels"]
    assert [Path(p.location).name for p in unusable] == ["bad.txt"] and unusable[0].dropped
    kitti = make_kitti(
        tmp_path / "kitti", {"bad": ["Car 0 0", "x"], "good": [kitti_line("Car", (2, 2, 30, 30))]}
    )
    index = read_dataset(DatasetConfig(format="kitti", root=str(kitti)))
    assert [Path(r.file_name).stem for r in index.records] == ["good"]
    assert [Path(p.location).name for p in index.problems if p.kind == "unusable_labels"] == [
        "bad.txt"
    ]
