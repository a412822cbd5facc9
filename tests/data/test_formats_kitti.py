import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from dataset_fixtures import kitti_line, make_kitti, write_text
from hypothesis import given
from hypothesis import strategies as st

from liafkd.config import DatasetConfig
from liafkd.data.formats import read_dataset
from liafkd.data.formats.common import DONT_CARE_LABEL
from liafkd.data.formats.kitti import parse_kitti_label_file, parse_kitti_line

GT_LINE = "Car 0.12 1 -1.57 10.50 5.25 60.00 30.75 1.50 1.60 3.90 1.00 1.70 20.00 -1.50"
DONTCARE_LINE = "DontCare -1 -1 -10 70.00 5.00 90.00 20.00 -1 -1 -1 -1000 -1000 -1000 -10"


def kitti_cfg(root: Path, **kw) -> DatasetConfig:
    return DatasetConfig(format="kitti", root=str(root), **kw)


def test_parse_label_file_fields(tmp_path):
    path = write_text(tmp_path / "000001.txt", f"{GT_LINE}\n\n{DONTCARE_LINE}\n")
    objects = parse_kitti_label_file(path)
    assert len(objects) == 2 and objects.score is None
    assert objects.type_names.tolist() == ["Car", "DontCare"]
    np.testing.assert_allclose(objects.truncated, [0.12, -1])
    assert objects.occluded.tolist() == [1, -1] and objects.occluded.dtype == np.int64
    np.testing.assert_allclose(objects.alpha, [-1.57, -10])
    np.testing.assert_allclose(objects.bbox[0], [10.5, 5.25, 60, 30.75])
    np.testing.assert_allclose(objects.dims[0], [1.5, 1.6, 3.9])
    np.testing.assert_allclose(objects.loc[0], [1.0, 1.7, 20.0])
    np.testing.assert_allclose(objects.rot_y, [-1.5, -10])


def test_parse_result_file_with_scores(tmp_path):
    path = write_text(tmp_path / "r.txt", f"{GT_LINE} 0.9\n{GT_LINE} 0.25\n")
    np.testing.assert_allclose(parse_kitti_label_file(path).score, [0.9, 0.25])
    empty = parse_kitti_label_file(write_text(tmp_path / "e.txt", ""))
    assert len(empty) == 0 and empty.bbox.shape == (0, 4)


@pytest.mark.parametrize(
    "bad, message",
    [
        ("Car 0 0 0 1 2 3", "expected 15 fields"),
        (GT_LINE.replace("10.50", "ten"), "x1 is not a finite number"),
        (GT_LINE.replace(" 1 -1.57", " 7 -1.57"), "occluded"),
        (GT_LINE + " high", "score"),
    ],
)
def test_parse_label_file_names_file_and_line(tmp_path, bad, message):
    path = write_text(tmp_path / "000002.txt", f"{GT_LINE}\n{bad}\n")
    with pytest.raises(ValueError, match=rf"000002\.txt:2: .*{message}"):
        parse_kitti_label_file(path)


def test_mixed_score_columns_are_rejected(tmp_path):
    path = write_text(tmp_path / "r.txt", f"{GT_LINE} 0.9\n{GT_LINE}\n")
    with pytest.raises(ValueError, match=r"r\.txt:2: some lines have a score"):
        parse_kitti_label_file(path)


@given(
    box=st.tuples(*[st.floats(-1e4, 1e4, allow_nan=False) for _ in range(4)]),
    truncated=st.floats(0, 1),
    occluded=st.integers(-1, 3),
    score=st.none() | st.floats(0, 1),
)
def test_parse_line_round_trips_written_values(box, truncated, occluded, score):
    text = kitti_line("Pedestrian", box, truncated, occluded)
    if score is not None:
        text += f" {score:.4f}"
    line = parse_kitti_line(text)
    assert line.type_name == "Pedestrian"
    np.testing.assert_allclose(line.values[3:7], box, atol=0.006)
    assert line.values[1] == occluded
    assert (line.score is None) == (score is None)


def test_reader_classes_ignore_regions_and_attributes(tmp_path):
    lines = [
        kitti_line("Car", (10, 5, 60, 30), 0.25, 2),
        kitti_line("Cyclist", (1, 1, 9, 30)),
        kitti_line("Van", (20, 5, 50, 35)),
        DONTCARE_LINE,
        kitti_line("Tram", (20, 5, 50, 35)),
    ]
    root = make_kitti(tmp_path, {"000000": lines})
    index = read_dataset(kitti_cfg(root, ignore_classes=["Van", "Truck"]))
    assert index.class_names == ["Car", "Pedestrian", "Cyclist"]
    assert index.ignore_class_names == ["Van", "Truck"]
    (record,) = index.records
    assert (record.width, record.height) == (120, 40)
    assert record.labels.tolist() == [0, 2]
    np.testing.assert_allclose(record.boxes_xyxy, [[10, 5, 60, 30], [1, 1, 9, 30]])
    np.testing.assert_allclose(record.attrs["truncated"], [0.25, 0])
    assert record.attrs["occluded"].tolist() == [2, 0]
    assert record.attrs["occluded"].dtype == np.int64
    np.testing.assert_allclose(record.attrs["alpha"], [-1.57, -1.57])
    np.testing.assert_allclose(record.ignore_boxes_xyxy, [[20, 5, 50, 35], [70, 5, 90, 20]])
    assert record.ignore_labels.tolist() == [0, DONT_CARE_LABEL]
    (problem,) = index.problems
    assert problem.kind == "unknown_class" and "Tram" in problem.message
    assert problem.location == f"{root / 'training' / 'label_2' / '000000.txt'}:5"


def test_reader_split_file_malformed_line_missing_image(tmp_path):
    root = make_kitti(
        tmp_path,
        {
            "000000": [kitti_line("Car", (10, 5, 60, 30)), "Car 0 0"],
            "000001": [kitti_line("Car", (10, 5, 60, 30))],
            "000002": [kitti_line("Pedestrian", (10, 5, 60, 30))],
        },
        split="val",
    )
    write_text(root / "ImageSets" / "val.txt", "000000\n000001\n")
    (root / "training" / "image_2" / "000001.png").unlink()
    index = read_dataset(kitti_cfg(root, split="val"))
    assert [Path(r.file_name).stem for r in index.records] == ["000000"]
    found = [(p.kind, Path(p.location).name) for p in index.problems]
    assert found == [("malformed_line", "000000.txt:2"), ("missing_image", "000001.txt")]
    # without ImageSets/, train is every label file
    shutil.rmtree(root / "ImageSets")
    everything = read_dataset(kitti_cfg(root, split="train"))
    assert [Path(r.file_name).stem for r in everything.records] == ["000000", "000002"]


def test_synthetic_generates_then_reads_kitti(tmp_path, monkeypatch):
    calls = []

    def ensure_synthetic(cfg: DatasetConfig, generate: bool = True) -> Path:
        calls.append(cfg)
        return make_kitti(tmp_path / "kitti", {"000000": [kitti_line("Car", (10, 5, 60, 30))]})

    module = types.ModuleType("liafkd.data.synthetic")
    module.ensure_synthetic = ensure_synthetic
    monkeypatch.setitem(sys.modules, "liafkd.data.synthetic", module)
    cfg = DatasetConfig(format="synthetic", root=str(tmp_path / "not_yet"), split="train")
    index = read_dataset(cfg)
    assert calls == [cfg]
    assert index.records[0].labels.tolist() == [0]
