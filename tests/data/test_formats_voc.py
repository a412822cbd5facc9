from pathlib import Path

import numpy as np
import pytest
from dataset_fixtures import make_voc, voc_xml, write_text, write_truncated_image

from liafkd.config import DatasetConfig, load_dataset_config
from liafkd.data.formats import DatasetError, enforce_policy, read_dataset

REPO = Path(__file__).resolve().parents[2]


def voc_cfg(root: Path, **kw) -> DatasetConfig:
    return DatasetConfig(format="voc", root=str(root), **kw)


def kinds(index) -> list[str]:
    return [p.kind for p in index.problems]


def test_reads_boxes_labels_and_difficult(tmp_path):
    xml = voc_xml([("dog", 1, 2, 30, 40), ("cat", 10, 5, 20, 15)], difficult=(1,))
    index = read_dataset(voc_cfg(make_voc(tmp_path, {"a": xml})))
    assert index.class_names == ["cat", "dog"]  # sorted names found
    (record,) = index.records
    assert (record.width, record.height) == (64, 48)
    assert record.file_name == str((tmp_path / "JPEGImages" / "a.jpg").resolve())
    np.testing.assert_array_equal(record.boxes_xyxy, [[1, 2, 30, 40], [10, 5, 20, 15]])
    assert record.boxes_xyxy.dtype == np.float32 and record.labels.dtype == np.int64
    assert record.labels.tolist() == [1, 0]
    assert record.attrs["difficult"].tolist() == [False, True]
    assert index.problems == []


def test_classes_order_and_class_map(tmp_path):
    xml = voc_xml([("Dog", 1, 2, 30, 40), ("cat", 10, 5, 20, 15)])
    cfg = voc_cfg(make_voc(tmp_path, {"a": xml}), classes=["dog", "cat"], class_map={"Dog": "dog"})
    assert read_dataset(cfg).records[0].labels.tolist() == [0, 1]


def test_unknown_class_is_dropped_and_named(tmp_path):
    xml = voc_xml([("dog", 1, 2, 30, 40), ("horse", 10, 5, 20, 15)])
    index = read_dataset(voc_cfg(make_voc(tmp_path, {"a": xml}), classes=["dog"]))
    assert index.records[0].labels.tolist() == [0]
    (problem,) = index.problems
    assert problem.kind == "unknown_class" and problem.dropped
    assert problem.location.endswith("a.xml#object 2") and "horse" in problem.message


def test_invalid_xml_drops_only_that_image(tmp_path):
    root = make_voc(tmp_path, {"good": voc_xml([("dog", 1, 2, 30, 40)]), "bad": "<annotation>"})
    write_text(root / "Annotations" / "bad.xml", "<annotation>\n<object>\n</annotation>")
    index = read_dataset(voc_cfg(root))
    assert [Path(r.file_name).stem for r in index.records] == ["good"]
    (problem,) = index.problems
    assert problem.kind == "invalid_xml" and problem.dropped
    assert problem.location == f"{root / 'Annotations' / 'bad.xml'}:3"


def test_bad_object_fields_name_the_object(tmp_path):
    xml = voc_xml([("dog", 1, 2, 30, 40), ("dog", "abc", 2, 30, 40)]).replace(
        "<name>dog</name>", "", 1
    )
    index = read_dataset(voc_cfg(make_voc(tmp_path, {"a": xml})))
    assert index.records[0].num_instances == 0
    messages = {p.location.rsplit("#", 1)[1]: p.message for p in index.problems if p.dropped}
    assert "missing <name>" in messages["object 1"]
    assert "xmin" in messages["object 2"] and "abc" in messages["object 2"]
    assert kinds(index) == ["invalid_xml", "invalid_xml", "no_objects"]


def test_boxes_outside_clipped_or_dropped_and_zero_area_dropped(tmp_path):
    xml = voc_xml(
        [("dog", -10, 2, 30, 60), ("dog", 70, 2, 90, 40), ("dog", 5, 5, 5, 30), ("dog", 1, 1, 9, 9)]
    )
    index = read_dataset(voc_cfg(make_voc(tmp_path, {"a": xml})))
    np.testing.assert_array_equal(index.records[0].boxes_xyxy, [[0, 2, 30, 48], [1, 1, 9, 9]])
    found = [(p.kind, p.dropped, p.location.rsplit("#", 1)[1]) for p in index.problems]
    assert found == [
        ("box_outside_image", False, "object 1"),
        ("box_outside_image", True, "object 2"),
        ("zero_area_box", True, "object 3"),
    ]


def test_min_box_size(tmp_path):
    xml = voc_xml([("dog", 1, 1, 4, 30), ("dog", 1, 1, 9, 9)])
    index = read_dataset(voc_cfg(make_voc(tmp_path, {"a": xml}), min_box_size=5))
    assert index.records[0].num_instances == 1
    assert kinds(index) == ["zero_area_box"]


def test_missing_and_unreadable_images_are_dropped(tmp_path):
    xml = voc_xml([("dog", 1, 2, 30, 40)])
    root = make_voc(tmp_path, {"ok": xml, "gone": xml, "cut": xml})
    (root / "JPEGImages" / "gone.jpg").unlink()
    (root / "JPEGImages" / "cut.jpg").unlink()
    write_truncated_image(root / "JPEGImages" / "cut.png")
    index = read_dataset(voc_cfg(root))
    assert [Path(r.file_name).stem for r in index.records] == ["ok"]
    by_kind = {p.kind: p for p in index.problems}
    assert by_kind["missing_image"].location.endswith("gone.xml")
    assert by_kind["unreadable_image"].location.endswith("cut.png")
    assert all(p.dropped for p in index.problems)


def test_size_falls_back_to_image_header(tmp_path):
    xml = voc_xml([("dog", 1, 2, 30, 40)], width=None).replace(
        "<filename>", "<size><width>0</width><height>0</height></size><filename>"
    )
    index = read_dataset(voc_cfg(make_voc(tmp_path, {"a": xml})))
    assert (index.records[0].width, index.records[0].height) == (64, 48)


def test_listed_annotation_missing_and_split_file_missing(tmp_path):
    root = make_voc(tmp_path, {"a": voc_xml([("dog", 1, 2, 30, 40)])})
    write_text(root / "ImageSets" / "Main" / "train.txt", "a\nb\n")
    index = read_dataset(voc_cfg(root))
    assert len(index.records) == 1 and kinds(index) == ["missing_label"]
    with pytest.raises(DatasetError, match=r"val\.txt: split file not found.*train"):
        read_dataset(voc_cfg(root, split="val"))


def test_strict_policy_lists_every_problem(tmp_path):
    xml = voc_xml([("dog", 5, 5, 5, 30), ("dog", 5, 5, 30, 5), ("dog", 1, 1, 9, 9)])
    root = make_voc(tmp_path, {"a": xml})
    index = read_dataset(voc_cfg(root, policy="strict"))
    assert index.records[0].num_instances == 1  # strict still reads everything
    with pytest.raises(DatasetError) as raised:
        enforce_policy(index, voc_cfg(root, policy="strict"))
    assert "2 problem(s)" in str(raised.value)
    assert "#object 1" in str(raised.value) and "#object 2" in str(raised.value)
    enforce_policy(index, voc_cfg(root))  # drop policy: no error


def test_strict_policy_truncates_long_lists(tmp_path):
    xml = voc_xml([("dog", 5, 5, 5, 30)] * 60 + [("dog", 1, 1, 9, 9)])
    root = make_voc(tmp_path, {"a": xml})
    cfg = voc_cfg(root, policy="strict")
    with pytest.raises(DatasetError, match="and 10 more"):
        enforce_policy(read_dataset(cfg), cfg)


def test_report_only_problems_pass_strict(tmp_path):
    root = make_voc(tmp_path, {"a": voc_xml([])})
    cfg = voc_cfg(root, policy="strict", classes=["dog"])
    index = read_dataset(cfg)
    assert kinds(index) == ["no_objects"]
    enforce_policy(index, cfg)


@pytest.mark.parametrize(
    "split, images, instances", [("train", 205, 2804), ("val", 87, 1137), ("test", 72, 945)]
)
def test_bccd_splits(shared_data, split, images, instances):
    cfg = load_dataset_config(REPO / "configs" / "datasets" / f"bccd_{split}.yaml")
    assert Path(cfg.root) == (shared_data / "bccd" / "BCCD").resolve()
    index = read_dataset(cfg)
    assert len(index.records) == images
    assert sum(r.num_instances for r in index.records) == instances
    assert index.class_names == ["RBC", "WBC", "Platelets"]


def test_bccd_trainval_drops_exactly_the_two_zero_area_boxes(shared_data):
    index = read_dataset(load_dataset_config(REPO / "configs/datasets/bccd_trainval.yaml"))
    assert len(index.records) == 292
    assert [(p.kind, p.dropped) for p in index.problems] == [("zero_area_box", True)] * 2
    assert [Path(p.location.split("#")[0]).name for p in index.problems] == [
        "BloodImage_00338.xml",
        "BloodImage_00343.xml",
    ]
    # 4,888 boxes in all: trainval keeps 3,941, test 945, two are dropped
    assert sum(r.num_instances for r in index.records) == 3941
