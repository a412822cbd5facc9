from pathlib import Path

import numpy as np
import pytest
from dataset_fixtures import write_coco, write_image, write_text, write_truncated_image

from liafkd.config import DatasetConfig
from liafkd.data.formats import DatasetError, read_dataset

CATEGORIES = [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}]


def coco_cfg(root: Path, **kw) -> DatasetConfig:
    kw.setdefault("ann_file", "ann.json")
    return DatasetConfig(format="coco", root=str(root), **kw)


def ann(image_id: int, category_id: int, bbox, **extra) -> dict:
    return {"image_id": image_id, "category_id": category_id, "bbox": bbox, **extra}


def make_coco(root: Path, annotations: list, images: list | None = None, **extra) -> Path:
    if images is None:
        write_image(root / "a.jpg", 64, 48)
        images = [{"id": 7, "file_name": "a.jpg", "width": 64, "height": 48}]
    data = {"images": images, "annotations": annotations, "categories": CATEGORIES, **extra}
    write_coco(root, data)
    return root


def test_reads_xywh_as_xyxy_with_ids_and_iscrowd(tmp_path):
    root = make_coco(tmp_path, [ann(7, 18, [1, 2, 10, 20]), ann(7, 3, [5, 5, 4, 4], iscrowd=1)])
    index = read_dataset(coco_cfg(root))
    assert index.class_names == ["car", "dog"]  # categories sorted by id
    (record,) = index.records
    assert record.image_id == 7 and (record.width, record.height) == (64, 48)
    np.testing.assert_array_equal(record.boxes_xyxy, [[1, 2, 11, 22], [5, 5, 9, 9]])
    assert record.labels.tolist() == [1, 0]
    assert record.attrs["iscrowd"].tolist() == [False, True]
    assert index.problems == []


def test_classes_map_categories_by_name(tmp_path):
    root = make_coco(tmp_path, [ann(7, 18, [1, 2, 10, 20]), ann(7, 3, [5, 5, 4, 4])])
    index = read_dataset(coco_cfg(root, classes=["Dog"], class_map={"dog": "Dog"}))
    assert index.records[0].labels.tolist() == [0]
    (problem,) = index.problems
    assert problem.kind == "unknown_class" and "'car'" in problem.message
    assert problem.location.endswith("ann.json#annotations[1]")


@pytest.mark.parametrize("folder", ["", "images/val2017", "val2017", "images"])
def test_file_name_resolution(tmp_path, folder):
    write_image(tmp_path / folder / "b.png", 30, 20)
    images = [{"id": 1, "file_name": "b.png"}]  # no width/height: read from the header
    root = make_coco(tmp_path, [ann(1, 3, [1, 1, 5, 5])], images=images)
    (record,) = read_dataset(coco_cfg(root, split="val2017")).records
    assert record.file_name == str((tmp_path / folder / "b.png").resolve())
    assert (record.width, record.height) == (30, 20)


def test_invalid_json_is_a_problem_with_line(tmp_path):
    write_text(tmp_path / "ann.json", '{"images": [\n  {"id": 1,}\n]}')
    index = read_dataset(coco_cfg(tmp_path))
    assert index.records == []
    (problem,) = index.problems
    assert problem.kind == "invalid_json" and problem.location.endswith("ann.json:2")


def test_missing_fields_and_wrong_types(tmp_path):
    write_image(tmp_path / "a.jpg", 64, 48)
    images = [
        {"id": 7, "file_name": "a.jpg", "width": 64, "height": 48},
        {"file_name": "a.jpg"},
        {"id": 8, "file_name": 3},
        {"id": 7, "file_name": "a.jpg"},
    ]
    annotations = [
        ann(7, 18, [1, 2, 10, 20]),
        ann(7, 18, [1, 2, 10]),
        ann(7, 18, ["1", 2, 10, 20]),
        ann(7, 99, [1, 2, 10, 20]),
        ann(5, 18, [1, 2, 10, 20]),
        ann("7", 18, [1, 2, 10, 20]),
        ann(7, 18, [1, 2, 10, 20], iscrowd=2),
        ann(7, 18, [1, 2, 10, 20], occluded="x"),
        "not an object",
    ]
    root = make_coco(tmp_path, annotations, images=images)
    index = read_dataset(coco_cfg(root))
    assert [r.num_instances for r in index.records] == [1]
    found = sorted((p.location.split("#")[1], p.kind) for p in index.problems)
    assert found == sorted(
        (where, kind)
        for kind, where in [
            ("invalid_json", "images[1]"),
            ("invalid_json", "images[2]"),
            ("invalid_json", "images[3]"),
            ("invalid_json", "annotations[1]"),
            ("invalid_json", "annotations[2]"),
            ("unknown_class", "annotations[3]"),
            ("invalid_json", "annotations[4]"),
            ("invalid_json", "annotations[5]"),
            ("invalid_json", "annotations[6]"),
            ("invalid_json", "annotations[7]"),
            ("invalid_json", "annotations[8]"),
        ]
    )
    assert all(p.dropped for p in index.problems)
    messages = {p.location.split("#")[1]: p.message for p in index.problems}
    assert "integer `id`" in messages["images[1]"]
    assert "duplicate image id 7" in messages["images[3]"]
    assert "`bbox`" in messages["annotations[1]"]
    assert "not in `images`" in messages["annotations[4]"]
    assert "`iscrowd`" in messages["annotations[6]"]


def test_sections_of_wrong_type(tmp_path):
    write_coco(tmp_path, {"images": {}, "annotations": 3, "categories": []})
    index = read_dataset(coco_cfg(tmp_path))
    assert [p.location.split("#")[1] for p in index.problems] == ["images", "annotations"]
    write_text(tmp_path / "ann.json", "[1, 2]")
    assert read_dataset(coco_cfg(tmp_path)).problems[0].message == "the top level must be an object"


def test_missing_and_unreadable_images(tmp_path):
    write_truncated_image(tmp_path / "cut.png")
    images = [{"id": 1, "file_name": "gone.jpg"}, {"id": 2, "file_name": "cut.png"}]
    root = make_coco(tmp_path, [ann(1, 3, [1, 1, 5, 5]), ann(2, 3, [1, 1, 5, 5])], images=images)
    index = read_dataset(coco_cfg(root))
    assert index.records == []
    assert [p.kind for p in index.problems] == ["missing_image", "unreadable_image"]
    assert "gone.jpg" in index.problems[0].message
    assert index.problems[1].location.endswith("cut.png")


def test_box_outside_and_zero_area(tmp_path):
    root = make_coco(tmp_path, [ann(7, 3, [50, 40, 30, 30]), ann(7, 3, [5, 5, 0, 10])])
    index = read_dataset(coco_cfg(root))
    np.testing.assert_array_equal(index.records[0].boxes_xyxy, [[50, 40, 64, 48]])
    assert [p.kind for p in index.problems] == ["box_outside_image", "zero_area_box"]


def test_ann_file_required_and_present(tmp_path):
    with pytest.raises(DatasetError, match="needs `ann_file`"):
        read_dataset(DatasetConfig(format="coco", root=str(tmp_path)))
    with pytest.raises(DatasetError, match="annotation file not found"):
        read_dataset(coco_cfg(tmp_path, ann_file="nope.json"))
    with pytest.raises(DatasetError, match="dataset root not found"):
        read_dataset(coco_cfg(tmp_path / "nope"))
