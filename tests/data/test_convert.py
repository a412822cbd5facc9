import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from dataset_fixtures import make_voc, voc_xml, write_dataset_yaml, write_image
from hypothesis import given, settings
from hypothesis import strategies as st

from liafkd.cli.main import main
from liafkd.config import DatasetConfig
from liafkd.data.convert import to_coco_dict
from liafkd.data.formats import read_dataset
from liafkd.data.records import DatasetIndex, ImageRecord


def test_to_coco_dict_hand_checked():
    record = ImageRecord(
        image_id=4,
        file_name="/data/a.jpg",
        width=64,
        height=48,
        boxes_xyxy=np.asarray([[1, 2, 11, 22], [0.5, 0, 3, 4]], np.float32),
        labels=np.asarray([1, 0], np.int64),
        attrs={"difficult": np.asarray([False, True]), "occluded": np.asarray([0, 2])},
    )
    coco = to_coco_dict(DatasetIndex([record], ["cat", "dog"]))
    assert coco["images"] == [{"id": 4, "file_name": "/data/a.jpg", "width": 64, "height": 48}]
    assert coco["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    first, second = coco["annotations"]
    assert first == {
        "id": 1,
        "image_id": 4,
        "category_id": 2,
        "bbox": [1.0, 2.0, 10.0, 20.0],
        "area": 200.0,
        "iscrowd": 0,
        "difficult": False,
        "occluded": 0,
    }
    assert second["bbox"] == [0.5, 0.0, 2.5, 4.0] and second["difficult"] is True
    assert second["occluded"] == 2 and second["id"] == 2
    json.dumps(coco)


def test_convert_cli_round_trip(tmp_path, capsys):
    xml = voc_xml([("dog", 1, 2, 30, 40), ("cat", 10, 5, 20, 15)], difficult=(1,))
    make_voc(tmp_path / "voc", {"a": xml, "b": voc_xml([("cat", 3, 3, 9, 9)])})
    config = write_dataset_yaml(tmp_path / "ds.yaml", format="voc", root="voc")
    out = tmp_path / "out" / "coco.json"
    assert main(["data", "convert", str(config), "--to", "coco", "--out", str(out)]) == 0
    assert "2 images, 3 annotations, 2 categories" in capsys.readouterr().out
    original = read_dataset(DatasetConfig(format="voc", root=str(tmp_path / "voc")))
    files = [image["file_name"] for image in json.loads(out.read_text())["images"]]
    assert files == ["../voc/JPEGImages/a.jpg", "../voc/JPEGImages/b.jpg"]  # relative
    back = read_dataset(DatasetConfig(format="coco", root=str(out.parent), ann_file="coco.json"))
    assert back.class_names == original.class_names
    for a, b in zip(original.records, back.records, strict=True):
        assert Path(a.file_name).resolve() == Path(b.file_name).resolve()
        np.testing.assert_array_equal(a.boxes_xyxy, b.boxes_xyxy)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.attrs["difficult"], b.attrs["difficult"])


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("img")


def image_of_size(folder: Path, width: int, height: int) -> str:
    """An image of that size (readers take an image's size from its header)."""
    path = folder / f"{width}x{height}.png"
    if not path.is_file():
        write_image(path, width, height)
    return str(path)


@st.composite
def random_index(draw, folder: Path) -> DatasetIndex:
    num_classes = draw(st.integers(1, 4))
    records = []
    for image_id in range(1, draw(st.integers(1, 4)) + 1):
        width, height = draw(st.integers(8, 600)), draw(st.integers(8, 600))
        boxes, labels = [], []
        for _ in range(draw(st.integers(0, 5))):
            fractions = draw(st.lists(st.floats(0, 1), min_size=4, max_size=4))
            x1, y1 = fractions[0] * (width - 2), fractions[1] * (height - 2)
            x2 = x1 + 1.5 + fractions[2] * (width - x1 - 1.5)
            y2 = y1 + 1.5 + fractions[3] * (height - y1 - 1.5)
            boxes.append([x1, y1, x2, y2])
            labels.append(draw(st.integers(0, num_classes - 1)))
        n = len(labels)
        attrs = {
            "iscrowd": np.asarray(draw(st.lists(st.booleans(), min_size=n, max_size=n)), bool),
            "occluded": np.asarray(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))),
        }
        records.append(
            ImageRecord(
                image_id=image_id,
                file_name=image_of_size(folder, width, height),
                width=width,
                height=height,
                boxes_xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
                labels=np.asarray(labels, np.int64),
                attrs=attrs,
            )
        )
    return DatasetIndex(records, [f"class{i}" for i in range(num_classes)])


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_coco_json_round_trip_property(image_folder, data):
    index = data.draw(random_index(image_folder))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ann.json"
        path.write_text(json.dumps(to_coco_dict(index)))
        back = read_dataset(DatasetConfig(format="coco", root=folder, ann_file="ann.json"))
    assert back.class_names == index.class_names
    assert [p.kind for p in back.problems if p.kind != "no_objects"] == []
    assert [r.image_id for r in back.records] == [r.image_id for r in index.records]
    for a, b in zip(index.records, back.records, strict=True):
        assert (a.width, a.height) == (b.width, b.height)
        np.testing.assert_allclose(b.boxes_xyxy, a.boxes_xyxy, atol=1e-3)
        np.testing.assert_array_equal(b.labels, a.labels)
        np.testing.assert_array_equal(b.attrs["iscrowd"], a.attrs["iscrowd"])
        # a dataset without any annotation has no extra attribute to read back
        occluded = b.attrs.get("occluded", np.zeros(0, np.int64))
        np.testing.assert_array_equal(occluded, a.attrs["occluded"])
