"""COCO results: `--category-ids auto` cites only ids the results use, and a box with a
negative width or height is refused naming the entry."""

import json

import numpy as np
import pytest

from liafkd.data.records import DatasetIndex, ImageRecord
from liafkd.evaluation.coco import evaluate_coco, to_class_order

# the annotation file's ids: 1 = b, 2 = a, 3 = c; liafkd's class order: a, b, c
DATASET_IDS = {1: "b", 2: "a", 3: "c"}
CLASSES = ["a", "b", "c"]


def det(category_id: int, bbox=(2, 2, 20, 20)) -> dict:
    return {"image_id": 1, "category_id": category_id, "bbox": list(bbox), "score": 0.9}


def test_auto_cites_an_id_the_results_use():
    with pytest.raises(ValueError) as caught:
        to_class_order([det(3), det(2), det(2)], DATASET_IDS, CLASSES)
    message = str(caught.value)
    # id 1 differs too, but the results never use it
    assert "category_id 2, used 2 time(s) in the results, is a by the annotation file" in message
    assert "category_id 1" not in message


def test_auto_accepts_ids_that_name_the_same_class_either_way():
    dets = [det(3), det(3)]
    assert to_class_order(dets, DATASET_IDS, CLASSES) == (dets, "order")


@pytest.mark.parametrize("mode, expected", [("dataset", [2, 1]), ("order", [1, 2]), ("auto", None)])
def test_explicit_modes_translate_or_keep(mode, expected):
    dets = [det(1), det(2)]
    if expected is None:
        with pytest.raises(ValueError, match="category_id 1, used 1 time"):
            to_class_order(dets, DATASET_IDS, CLASSES, mode)
        return
    translated, _ = to_class_order(dets, DATASET_IDS, CLASSES, mode)
    assert [d["category_id"] for d in translated] == expected


def _index() -> DatasetIndex:
    record = ImageRecord(
        image_id=1,
        file_name="/x.png",
        width=64,
        height=48,
        boxes_xyxy=np.asarray([[2, 2, 22, 22]], np.float32),
        labels=np.asarray([0], np.int64),
    )
    return DatasetIndex([record], ["a"])


@pytest.mark.parametrize("bbox", [(22, 2, -20, 20), (2, 22, 20, -20), (0, 0, -1, -1)])
def test_negative_box_sides_are_refused_naming_the_entry(bbox):
    dets = [det(1), det(1, bbox)]
    with pytest.raises(ValueError, match=r"detections\[1\]: `bbox` .* negative width or height"):
        evaluate_coco(_index(), dets)


def test_zero_sides_and_normal_boxes_still_evaluate():
    metrics = evaluate_coco(_index(), [det(1, (2, 2, 20, 20)), det(1, (5, 5, 0, 0))])
    assert metrics["AP"] == pytest.approx(1.0)
    json.dumps(metrics)


def test_result_files_with_a_utf8_bom_are_read(tmp_path):
    from liafkd.evaluation.coco import load_detections
    from liafkd.evaluation.kitti import parse_label_file

    coco = tmp_path / "dets.json"
    coco.write_text("\ufeff" + json.dumps([det(1)]), encoding="utf-8")
    assert load_detections(coco) == [det(1)]
    kitti = tmp_path / "000001.txt"
    line = "Car -1 -1 -10 1.0 2.0 30.0 40.0 -1 -1 -1 -1000 -1000 -1000 -10 0.9"
    kitti.write_text("\ufeff" + line + "\n", encoding="utf-8")
    frame = parse_label_file(kitti)
    assert frame.names.tolist() == ["Car"] and frame.score.tolist() == [0.9]
