"""Image ids are unique whatever the file names: one rule (liafkd.data.image_ids) for
every reader, `predict` and `data convert`."""

import json
from pathlib import Path

from dataset_fixtures import (
    kitti_line,
    make_kitti,
    make_voc,
    make_yolo,
    voc_xml,
    write_dataset_yaml,
)
from hypothesis import given
from hypothesis import strategies as st

from liafkd.cli.main import main
from liafkd.cli.predict import image_records
from liafkd.config import DatasetConfig
from liafkd.data.formats import read_dataset
from liafkd.data.image_ids import MAX_NUMERIC_ID, assign_image_ids, stem_number

# digits (ASCII and not), letters and leading zeros: names that look alike
STEM_ALPHABET = "0123456789²³١٢ab_"
stems = st.lists(st.text(STEM_ALPHABET, min_size=1, max_size=6), max_size=20)


@given(stems)
def test_ids_are_unique_and_keep_lone_ascii_numbers(names):
    ids = assign_image_ids(names)
    assert len(ids) == len(names) and len(set(ids)) == len(ids)
    assert all(isinstance(i, int) and 0 <= i for i in ids)
    numbers = [stem_number(n) for n in names]
    for name, number, image_id in zip(names, numbers, ids, strict=True):
        if number is not None and numbers.count(number) == 1:
            assert image_id == int(name)
        else:  # a name, or a number shared: after every kept number
            kept = [n for n in numbers if n is not None and numbers.count(n) == 1]
            assert image_id > max(kept, default=0)


@given(
    st.lists(st.text(STEM_ALPHABET, min_size=1, max_size=6), max_size=20, unique=True), st.randoms()
)
def test_ids_do_not_depend_on_the_listing_order(names, rng):
    shuffled = list(names)
    rng.shuffle(shuffled)
    by_name = dict(zip(names, assign_image_ids(names), strict=True))
    assert assign_image_ids(shuffled) == [by_name[name] for name in shuffled]


def test_hand_checked_ids():
    # KITTI stems keep their numbers, 000000 included
    assert assign_image_ids(["000000", "000007", "000011"]) == [0, 7, 11]
    # one stray name renumbers nothing; names follow the largest number, sorted
    assert assign_image_ids(["000003", "cam_b", "000001", "a"]) == [3, 5, 1, 4]
    # 000001 and 1 share a number: both are names (sorted: "000001" < "1")
    assert assign_image_ids(["cam_b", "000001", "1"]) == [3, 1, 2]
    # non-ASCII digits pass str.isdigit but are names; a too-long number too
    assert assign_image_ids(["²³", "5"]) == [6, 5]
    assert stem_number("²³") is None and stem_number(str(MAX_NUMERIC_ID + 1)) is None
    assert assign_image_ids([]) == []


def _kitti_root(tmp_path: Path, names: list[str]) -> Path:
    labels = {name: [kitti_line("Car", (10, 5, 60, 30))] for name in names}
    return make_kitti(tmp_path / "kitti", labels, split="train")


def test_kitti_reader_ids_unique_for_mixed_names(tmp_path):
    root = _kitti_root(tmp_path, ["cam_b", "000001", "1", "²³", "000009"])
    index = read_dataset(DatasetConfig(format="kitti", root=str(root)))
    ids = {Path(r.file_name).stem: r.image_id for r in index.records}
    assert ids == {"000009": 9, "000001": 10, "1": 11, "cam_b": 12, "²³": 13}


def test_kitti_reader_keeps_numeric_ids(tmp_path):
    root = _kitti_root(tmp_path, ["000000", "000001", "007480"])
    index = read_dataset(DatasetConfig(format="kitti", root=str(root)))
    assert [r.image_id for r in index.records] == [0, 1, 7480]


def test_voc_and_yolo_readers_follow_the_same_rule(tmp_path):
    xml = voc_xml([("cat", 1, 1, 20, 20)])
    voc = make_voc(tmp_path / "voc", {"b": xml, "000002": xml, "a": xml})
    index = read_dataset(DatasetConfig(format="voc", root=str(voc)))
    assert [r.image_id for r in index.records] == [4, 2, 3]
    yolo = make_yolo(tmp_path / "yolo", {"2": "0 .5 .5 .2 .2\n", "x": ""}, ["cat"])
    cfg = DatasetConfig(format="yolo", root=str(yolo), names_file="names.yaml")
    assert sorted(r.image_id for r in read_dataset(cfg).records) == [2, 3]


def test_convert_writes_unique_ids(tmp_path):
    root = _kitti_root(tmp_path, ["cam_b", "000001", "1"])
    config = write_dataset_yaml(tmp_path / "ds.yaml", format="kitti", root=str(root))
    out = tmp_path / "out" / "ann.json"
    assert main(["data", "convert", str(config), "--to", "coco", "--out", str(out)]) == 0
    coco = json.loads(out.read_text())
    ids = [image["id"] for image in coco["images"]]
    assert sorted(ids) == [1, 2, 3]
    assert {a["image_id"] for a in coco["annotations"]} == set(ids)


def test_predict_records_use_the_readers_ids(tmp_path):
    root = _kitti_root(tmp_path, ["cam_b", "000001", "1", "²³"])
    files = sorted((root / "training" / "image_2").iterdir())
    records = image_records(files)
    by_stem = {Path(r.file_name).stem: r.image_id for r in records}
    index = read_dataset(DatasetConfig(format="kitti", root=str(root)))
    assert by_stem == {Path(r.file_name).stem: r.image_id for r in index.records}
    assert len(set(by_stem.values())) == 4
