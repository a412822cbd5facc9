"""Fuzzing the KITTI, YOLO, VOC and COCO readers with hypothesis.

Whatever an annotation file holds (random bytes, random text, lines of plausible
tokens, arbitrary JSON), a reader returns a DatasetIndex: every problem is recorded
with a location inside the dataset, and every record it keeps is usable (finite boxes
inside the image, at least min_box_size wide, labels in range, attributes aligned).
The size a record declares is the image's own, so the loader cannot stop on it later.
The line parsers raise nothing but ValueError.
"""

import json
import tempfile
from pathlib import Path

import numpy as np
from dataset_fixtures import write_image, write_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from liafkd.config import DatasetConfig
from liafkd.data.formats import read_dataset
from liafkd.data.formats.kitti import parse_kitti_line
from liafkd.data.records import DatasetIndex

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NUMBERS = st.one_of(
    st.integers(-5, 200),
    st.integers(-(10**40), 10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-5, 200),
)
SIZES = st.sampled_from([0, -1, 48, 64, 100, 120, 640, 10**20, 10**40])  # some the real ones
NUMBER_TEXT = st.one_of(
    NUMBERS.map(str),
    SIZES.map(str),
    st.sampled_from(["nan", "-inf", "1e999", "0x10", "1_0", "", "--1", "48.0"]),
)
KITTI_NAMES = st.sampled_from(["Car", "Pedestrian", "Cyclist", "Van", "DontCare", "Zeppelin", "ü"])


def kitti_lines() -> st.SearchStrategy[str]:
    plausible = st.builds(
        lambda name, values: " ".join([name, *values]),
        KITTI_NAMES,
        st.lists(NUMBER_TEXT, min_size=13, max_size=16),
    )
    return st.lists(st.one_of(plausible, st.text(max_size=60)), max_size=6).map("\n".join)


def yolo_lines() -> st.SearchStrategy[str]:
    plausible = st.lists(NUMBER_TEXT, min_size=4, max_size=6).map(" ".join)
    return st.lists(st.one_of(plausible, st.text(max_size=40)), max_size=6).map("\n".join)


BOX_TAGS = ("xmin", "ymin", "xmax", "ymax")


def voc_documents() -> st.SearchStrategy[str]:
    field = st.one_of(NUMBER_TEXT, st.text(alphabet="ab<>&;1 ", max_size=6))
    obj = st.builds(
        lambda name, box, difficult: (
            f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>"
            + "".join(f"<{k}>{v}</{k}>" for k, v in zip(BOX_TAGS, box, strict=True))
            + "</bndbox></object>"
        ),
        st.sampled_from(["dog", "cat", "", "dog "]),
        st.lists(field, min_size=4, max_size=4),
        st.sampled_from(["0", "1", "2", "x"]),
    )
    size = st.builds(
        lambda w, h: f"<size><width>{w}</width><height>{h}</height></size>", field, field
    )
    document = st.builds(
        lambda size, objects: f"<annotation>{size}{''.join(objects)}</annotation>",
        st.one_of(st.just(""), size),
        st.lists(obj, max_size=4),
    )
    return st.one_of(document, st.text(max_size=80))


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def coco_documents() -> st.SearchStrategy:
    value = st.one_of(JSON, st.integers(0, 3))
    annotation = st.one_of(
        st.fixed_dictionaries(
            {
                "image_id": st.one_of(st.just(7), value),
                "category_id": st.one_of(st.sampled_from([1, 2, 9]), value),
                "bbox": st.one_of(st.lists(NUMBERS, min_size=3, max_size=5), value),
            },
            optional={"iscrowd": value, "truncated": value, "occluded": value, "id": value},
        ),
        value,
    )
    image = st.one_of(
        st.fixed_dictionaries(
            {"id": st.one_of(st.just(7), value), "file_name": st.one_of(st.just("a.png"), value)},
            optional={"width": st.one_of(SIZES, NUMBERS), "height": st.one_of(SIZES, NUMBERS)},
        ),
        value,
    )
    category = st.one_of(
        st.fixed_dictionaries(
            {"id": st.one_of(st.sampled_from([1, 2]), value), "name": st.sampled_from(["a", "b"])}
        ),
        value,
    )
    document = st.fixed_dictionaries(
        {},
        optional={
            "images": st.one_of(st.lists(image, max_size=3), value),
            "annotations": st.one_of(st.lists(annotation, max_size=5), value),
            "categories": st.one_of(st.lists(category, max_size=3), value),
        },
    )
    return st.one_of(document, JSON)


def assert_usable(index: DatasetIndex, cfg: DatasetConfig) -> None:
    assert isinstance(index, DatasetIndex)
    for problem in index.problems:
        assert problem.location.startswith(cfg.root), problem
    for record in index.records:
        with Image.open(record.file_name) as image:
            assert image.size == (record.width, record.height)  # what the loader will find
        n = record.num_instances
        for boxes in (record.boxes_xyxy, record.ignore_boxes_xyxy):
            assert boxes.ndim == 2 and boxes.shape[1] == 4
            assert np.isfinite(boxes).all()
            assert (boxes[:, :2] >= 0).all()
            assert (boxes[:, 2] <= record.width).all() and (boxes[:, 3] <= record.height).all()
            sides = boxes[:, 2:] - boxes[:, :2]
            assert (sides >= cfg.min_box_size - 1e-3).all()
        assert record.boxes_xyxy.shape[0] == n
        assert ((record.labels >= 0) & (record.labels < len(index.class_names))).all()
        for values in record.attrs.values():
            assert len(values) == n and np.isfinite(np.asarray(values, np.float64)).all()


def read_fuzzed(cfg: DatasetConfig) -> None:
    assert_usable(read_dataset(cfg), cfg)


@FUZZ
@given(st.text(max_size=120))
def test_kitti_line_parser_raises_only_value_error(text):
    try:
        line = parse_kitti_line(text)
    except ValueError:
        return
    assert len(line.values) == 14 and all(np.isfinite(line.values))


@FUZZ
@given(st.one_of(kitti_lines().map(str.encode), st.binary(max_size=200)))
def test_kitti_reader_survives_any_label_file(content):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_image(root / "training" / "image_2" / "000000.png", 120, 40)
        write_image(root / "training" / "image_2" / "000001.png", 120, 40)
        (root / "training" / "label_2").mkdir(parents=True)
        (root / "training" / "label_2" / "000000.txt").write_bytes(content)
        (root / "training" / "label_2" / "000001.txt").write_text(
            "Car 0 0 0 1 1 50 30 1 1 1 1 1 1 0"
        )
        read_fuzzed(DatasetConfig(format="kitti", root=tmp))


@FUZZ
@given(st.one_of(yolo_lines().map(str.encode), st.binary(max_size=200)))
def test_yolo_reader_survives_any_label_file(content):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_image(root / "images" / "train" / "a.png", 100, 50)
        (root / "labels" / "train").mkdir(parents=True)
        (root / "labels" / "train" / "a.txt").write_bytes(content)
        write_text(root / "names.yaml", "names: [car, bus]\n")
        read_fuzzed(DatasetConfig(format="yolo", root=tmp, names_file="names.yaml"))


@FUZZ
@given(st.one_of(voc_documents().map(str.encode), st.binary(max_size=200)))
def test_voc_reader_survives_any_annotation(content):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_image(root / "JPEGImages" / "a.jpg", 64, 48)
        (root / "Annotations").mkdir()
        (root / "Annotations" / "a.xml").write_bytes(content)
        write_text(root / "ImageSets" / "Main" / "train.txt", "a\n")
        read_fuzzed(DatasetConfig(format="voc", root=tmp, classes=["dog", "cat"]))


@FUZZ
@given(st.one_of(coco_documents().map(json.dumps).map(str.encode), st.binary(max_size=200)))
def test_coco_reader_survives_any_json(content):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_image(root / "a.png", 64, 48)
        (root / "ann.json").write_bytes(content)
        read_fuzzed(DatasetConfig(format="coco", root=tmp, ann_file="ann.json"))
