from pathlib import Path

import numpy as np
import pytest
from dataset_fixtures import make_yolo, write_image, write_text, write_truncated_image
from hypothesis import given, settings
from hypothesis import strategies as st

from liafkd.config import DatasetConfig, load_dataset_config
from liafkd.data.formats import DatasetError, read_dataset

REPO = Path(__file__).resolve().parents[2]


def yolo_cfg(root: Path, **kw) -> DatasetConfig:
    kw.setdefault("names_file", "names.yaml")
    return DatasetConfig(format="yolo", root=str(root), **kw)


def test_normalised_boxes_become_absolute_xyxy(tmp_path):
    root = make_yolo(tmp_path, {"a": "1 0.5 0.5 0.2 0.4\n\n0 0.1 0.2 0.2 0.2\n"}, ["cat", "dog"])
    index = read_dataset(yolo_cfg(root))
    assert index.class_names == ["cat", "dog"]
    (record,) = index.records
    assert (record.width, record.height) == (100, 50)  # read from the image header
    np.testing.assert_allclose(record.boxes_xyxy, [[40, 15, 60, 35], [0, 5, 20, 15]], atol=1e-4)
    assert record.labels.tolist() == [1, 0]
    assert index.problems == []


def test_names_as_mapping_and_classes_subset(tmp_path):
    root = make_yolo(
        tmp_path, {"a": "7 0.5 0.5 0.2 0.4\n3 0.5 0.5 0.2 0.4\n"}, {3: "cat", 7: "dog"}
    )
    assert read_dataset(yolo_cfg(root)).records[0].labels.tolist() == [1, 0]
    index = read_dataset(yolo_cfg(root, classes=["dog"]))
    assert index.records[0].labels.tolist() == [0]
    assert [p.kind for p in index.problems] == ["unknown_class"]


def test_classes_name_ids_without_names_file(tmp_path):
    root = make_yolo(tmp_path, {"a": "1 0.5 0.5 0.2 0.4\n"}, ["x"])
    index = read_dataset(yolo_cfg(root, names_file=None, classes=["cat", "dog"]))
    assert index.records[0].labels.tolist() == [1]
    with pytest.raises(DatasetError, match="names_file"):
        read_dataset(yolo_cfg(root, names_file=None))


def test_bad_names_file(tmp_path):
    root = make_yolo(tmp_path, {"a": ""}, ["cat"])
    write_text(root / "names.yaml", "names: 3\n")
    with pytest.raises(DatasetError, match="names.yaml"):
        read_dataset(yolo_cfg(root))


def test_malformed_lines_are_reported_with_line_numbers(tmp_path):
    text = "0 0.5 0.5 0.2\nx 0.5 0.5 0.2 0.2\n0 0.5 nan 0.2 0.2\n9 0.5 0.5 0.2 0.2\n0 .5 .5 .2 .2\n"
    root = make_yolo(tmp_path, {"a": text}, ["cat"])
    index = read_dataset(yolo_cfg(root))
    assert index.records[0].num_instances == 1
    label = root / "labels" / "train" / "a.txt"
    found = [(p.kind, p.location) for p in index.problems]
    assert found == [
        ("malformed_line", f"{label}:1"),
        ("malformed_line", f"{label}:2"),
        ("malformed_line", f"{label}:3"),
        ("unknown_class", f"{label}:4"),
    ]
    assert "expected 5 fields" in index.problems[0].message
    assert "class id" in index.problems[1].message


def test_box_outside_is_clipped(tmp_path):
    root = make_yolo(tmp_path, {"a": "0 0.95 0.5 0.2 0.2\n0 1.5 0.5 0.2 0.2\n"}, ["cat"])
    index = read_dataset(yolo_cfg(root))
    np.testing.assert_allclose(index.records[0].boxes_xyxy, [[85, 20, 100, 30]], atol=1e-4)
    assert [(p.kind, p.dropped) for p in index.problems] == [
        ("box_outside_image", False),
        ("box_outside_image", True),
    ]


def test_label_without_image_and_image_without_label(tmp_path):
    root = make_yolo(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n", "b": "0 0.5 0.5 0.2 0.2\n"}, ["cat"])
    (root / "images" / "train" / "b.png").unlink()
    write_image(root / "images" / "train" / "c.jpg")
    write_truncated_image(root / "images" / "train" / "d.png")
    index = read_dataset(yolo_cfg(root))
    assert [Path(r.file_name).name for r in index.records] == ["a.png", "c.jpg"]
    assert index.records[1].num_instances == 0
    found = {p.kind: Path(p.location).name for p in index.problems}
    assert found == {"unreadable_image": "d.png", "no_objects": "c.jpg", "missing_image": "b.txt"}


def test_labels_dir_option(tmp_path):
    root = make_yolo(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n"}, ["cat"])
    (root / "labels").rename(root / "elsewhere")
    index = read_dataset(yolo_cfg(root, labels_dir="elsewhere"))
    assert index.records[0].num_instances == 1
    with pytest.raises(DatasetError, match="label folder not found"):
        read_dataset(yolo_cfg(root))


@pytest.mark.parametrize("split", ["train", "val"])
def test_coco128_reads_all_images(shared_data, split):
    cfg = load_dataset_config(REPO / "configs" / "datasets" / f"coco128_{split}.yaml")
    assert Path(cfg.root) == (shared_data / "coco128").resolve()
    index = read_dataset(cfg)
    assert len(index.records) == 128
    assert len(index.class_names) == 80 and index.class_names[0] == "person"
    empty = [Path(r.file_name).stem for r in index.records if r.num_instances == 0]
    dropped = [Path(p.location).stem for p in index.problems if p.dropped]
    # train2017: two background images without labels, two label files without images
    if split == "train":
        assert empty == ["000000000250", "000000000508"]
        assert dropped == ["000000000656", "000000000659"]
    else:
        assert empty == [] and dropped == []


@settings(max_examples=30, deadline=None)
@given(  # sides of at least 2 px on the 100x50 image
    boxes=st.lists(
        st.tuples(st.integers(0, 2), st.floats(0.1, 0.9), st.floats(0.1, 0.9),
                  st.floats(0.02, 0.2), st.floats(0.04, 0.2)),
        max_size=6,
    )
)  # fmt: skip
def test_yolo_boxes_property(tmp_path_factory, boxes):
    root = tmp_path_factory.mktemp("yolo")
    text = "".join(f"{c} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n" for c, cx, cy, w, h in boxes)
    index = read_dataset(yolo_cfg(make_yolo(root, {"a": text}, ["x", "y", "z"])))
    (record,) = index.records
    expected = [[(cx - w / 2) * 100, (cy - h / 2) * 50, (cx + w / 2) * 100, (cy + h / 2) * 50]
                for _, cx, cy, w, h in boxes]  # fmt: skip
    np.testing.assert_allclose(
        record.boxes_xyxy.reshape(-1, 4), np.reshape(expected, (-1, 4)), atol=1e-3
    )
    assert record.labels.tolist() == [c for c, *_ in boxes]
    assert [p.kind for p in index.problems] == ([] if boxes else ["no_objects"])
