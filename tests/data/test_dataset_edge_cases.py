"""Datasets that used to train or score silently wrong (issue 17)."""

import json

import pytest
import yaml
from dataset_fixtures import (
    kitti_line,
    make_kitti,
    make_voc,
    voc_xml,
    write_coco,
    write_dataset_yaml,
    write_image,
    write_text,
)

from liafkd.cli.main import main
from liafkd.config import DatasetConfig
from liafkd.data.formats import read_dataset


def test_an_all_negative_training_set_is_refused_with_a_true_message(tiny_config, tmp_path, capsys):
    root = make_kitti(
        tmp_path / "neg", {f"00000{i}": [kitti_line("Van", (2, 2, 30, 30))] for i in range(3)}
    )
    raw = yaml.safe_load(tiny_config("neg").read_text())
    raw["data"]["train"] = {
        "format": "kitti",
        "root": str(root),
        "classes": ["Car", "Pedestrian", "Cyclist"],
    }
    cfg = tmp_path / "neg.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"data.train: none of the 3 image(s) at {root}" in err
    assert "negatives alone" in err and "empty" not in err and "Traceback" not in err


def test_kitti_image_with_every_label_line_malformed_is_dropped(tmp_path):
    good = kitti_line("Car", (2, 2, 30, 30))
    root = make_kitti(
        tmp_path,
        {"000000": ["Car 0 0", "Car x y"], "000001": [good, "Car 0 0"], "000002": [good]},
    )
    index = read_dataset(DatasetConfig(format="kitti", root=str(root)))
    assert sorted(r.image_id for r in index.records) == [1, 2]
    [unusable] = [p for p in index.problems if p.kind == "unusable_labels"]
    assert unusable.location.endswith("000000.txt") and unusable.dropped
    assert "every label line (2) is malformed" in unusable.message
    assert sum(p.kind == "malformed_line" for p in index.problems) == 3


def test_voc_split_lines_with_spaces_in_names(tmp_path):
    xml = voc_xml([("cell", 2, 2, 20, 20)])
    root = make_voc(tmp_path, {"my image": xml, "plain": xml})
    write_text(root / "ImageSets" / "Main" / "train.txt", "my image\nplain  1\nno such file\n")
    index = read_dataset(DatasetConfig(format="voc", root=str(root)))
    assert sorted(r.file_name.rsplit("/", 1)[1] for r in index.records) == [
        "my image.jpg",
        "plain.jpg",
    ]
    [missing] = [p for p in index.problems if p.kind == "missing_label"]
    assert missing.location.endswith("Annotations/no such file.xml")


def coco_results_case(tmp_path):
    """File ids 1 = b, 2 = a; the config orders the classes [a, b]: class order 1 = a."""
    write_image(tmp_path / "x.jpg", 64, 48)
    data = {
        "images": [{"id": 1, "file_name": "x.jpg", "width": 64, "height": 48}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [2, 2, 20, 20],
                "area": 400,
                "iscrowd": 0,
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 2,
                "bbox": [30, 10, 20, 30],
                "area": 600,
                "iscrowd": 0,
            },
        ],
        "categories": [{"id": 1, "name": "b"}, {"id": 2, "name": "a"}],
    }
    write_coco(tmp_path, data)
    config = write_dataset_yaml(
        tmp_path / "ds.yaml",
        format="coco",
        root=str(tmp_path),
        ann_file="ann.json",
        classes=["a", "b"],
    )
    results = tmp_path / "dets.json"
    dets = [
        {"image_id": 1, "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in data["annotations"]
    ]
    results.write_text(json.dumps(dets))  # the annotation file's own ids
    return config, results


def test_eval_results_in_the_annotation_files_ids_are_not_scored_zero_silently(tmp_path, capsys):
    config, results = coco_results_case(tmp_path)
    out = tmp_path / "m.json"
    base = ["eval", "--dataset", str(config), "--results", str(results), "--json", str(out)]
    assert main(base) == 2  # ids 1, 2 fit both conventions, which differ here
    err = capsys.readouterr().err
    assert "category_id 1, used 1 time(s) in the results, is b by the annotation file, a by" in err
    assert "--category-ids" in err
    assert main([*base, "--category-ids", "dataset"]) == 0
    assert json.loads(out.read_text())["AP"] == pytest.approx(1.0)
    assert main([*base, "--category-ids", "order"]) == 0  # as asked: the classes swapped
    assert json.loads(out.read_text())["AP"] == pytest.approx(0.0)


def test_eval_results_with_ids_only_the_annotation_file_has_are_translated(tmp_path, capsys):
    config, results = coco_results_case(tmp_path)
    ann = json.loads((tmp_path / "ann.json").read_text())
    ann["categories"] = [{"id": 17, "name": "b"}, {"id": 42, "name": "a"}]
    for a, cid in zip(ann["annotations"], (17, 42), strict=True):
        a["category_id"] = cid
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    dets = json.loads(results.read_text())
    for d, cid in zip(dets, (17, 42), strict=True):
        d["category_id"] = cid
    results.write_text(json.dumps(dets))
    out = tmp_path / "m.json"
    assert (
        main(["eval", "--dataset", str(config), "--results", str(results), "--json", str(out)]) == 0
    )
    assert "read as the annotation file's own ids" in capsys.readouterr().out
    assert json.loads(out.read_text())["AP"] == pytest.approx(1.0)
