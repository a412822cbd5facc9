"""Every kind of bad input has one defined outcome.

Under the default `drop` policy the offending box or image is skipped (a box reaching
past the border is clipped; an annotation's size that is not the image's gives way to
the image's), counted in `index.problems` and summarised when the run loads the data;
under `policy: strict` loading stops with a DatasetError that names the file (and line,
object or JSON key). Images without objects are kept and only reported (strict accepts
them). What no policy can skip stops the command with a message and exit code 2: an
empty dataset, a config with a wrong type or unknown key, a checkpoint of another
architecture, and an image whose header reads but whose pixels do not (found only when
loading it).
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from dataset_fixtures import (
    kitti_line,
    make_kitti,
    make_voc,
    make_yolo,
    voc_xml,
    write_coco,
    write_image,
    write_truncated_image,
)

from liafkd.cli.main import main
from liafkd.config import DatasetConfig, load_config
from liafkd.data.formats import DatasetError
from liafkd.engine.build import build_student, load_index

GOOD_KITTI = kitti_line("Car", (10, 10, 50, 30))  # on the 120x40 KITTI images


def kitti(root: Path, lines: dict[str, list[str]]) -> DatasetConfig:
    make_kitti(root, lines)
    return DatasetConfig(format="kitti", root=str(root))


def truncated_image(root: Path) -> DatasetConfig:
    make_voc(root, {"a": voc_xml([("dog", 1, 1, 20, 20)]), "b": voc_xml([("dog", 1, 1, 20, 20)])})
    write_truncated_image(root / "JPEGImages" / "b.jpg")
    return DatasetConfig(format="voc", root=str(root))


def missing_image(root: Path) -> DatasetConfig:
    cfg = kitti(root, {"000000": [GOOD_KITTI], "000001": [GOOD_KITTI]})
    (root / "training" / "image_2" / "000001.png").unlink()
    return cfg


def malformed_yolo_line(root: Path) -> DatasetConfig:
    make_yolo(root, {"a": "0 0.5 0.5 0.2 0.2\n0 0.5 x 0.2 0.2\n"}, ["car"])
    return DatasetConfig(format="yolo", root=str(root), names_file="names.yaml")


def voc(root: Path, xml: str) -> DatasetConfig:
    make_voc(root, {"a": xml})
    return DatasetConfig(format="voc", root=str(root))


def invalid_xml(root: Path) -> DatasetConfig:
    make_voc(root, {"a": voc_xml([("dog", 1, 1, 20, 20)]), "b": "<annotation><object>"})
    return DatasetConfig(format="voc", root=str(root))


def coco(root: Path, annotations: list) -> DatasetConfig:
    write_image(root / "a.jpg", 64, 48)
    good = {"image_id": 7, "category_id": 1, "bbox": [1, 1, 10, 10]}
    data = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 64, "height": 48}],
        "annotations": [good, *annotations],
        "categories": [{"id": 1, "name": "dog"}],
    }
    write_coco(root, data)
    return DatasetConfig(format="coco", root=str(root), ann_file="ann.json")


@dataclass
class Case:
    build: Callable[[Path], DatasetConfig]
    kind: str
    location: str  # regex on Problem.location: the file and line / object / key
    dropped: bool  # the box or image is left out (else kept, e.g. clipped)
    images: int  # images left in the index


CASES = {
    "truncated image": Case(truncated_image, "unreadable_image", r"JPEGImages/b\.jpg$", True, 1),
    "missing image": Case(missing_image, "missing_image", r"label_2/000001\.txt$", True, 1),
    "malformed KITTI line": Case(
        lambda r: kitti(r, {"000000": [GOOD_KITTI, "Car 0 0 -1 10 10"]}),
        "malformed_line",
        r"label_2/000000\.txt:2$",
        True,
        1,
    ),
    "malformed YOLO line": Case(
        malformed_yolo_line, "malformed_line", r"labels/train/a\.txt:2$", True, 1
    ),
    "invalid XML": Case(invalid_xml, "invalid_xml", r"Annotations/b\.xml", True, 1),
    "COCO missing field": Case(
        lambda r: coco(r, [{"image_id": 7, "bbox": [1, 1, 5, 5]}]),
        "invalid_json",
        r"ann\.json#annotations\[1\]$",
        True,
        1,
    ),
    "COCO wrong type": Case(
        lambda r: coco(r, [{"image_id": 7, "category_id": 1, "bbox": "1 1 5 5"}]),
        "invalid_json",
        r"ann\.json#annotations\[1\]$",
        True,
        1,
    ),
    "unknown class": Case(
        lambda r: kitti(r, {"000000": [GOOD_KITTI, kitti_line("Zeppelin", (1, 1, 9, 9))]}),
        "unknown_class",
        r"000000\.txt:2$",
        True,
        1,
    ),
    "box partly outside (clipped)": Case(
        lambda r: kitti(r, {"000000": [GOOD_KITTI, kitti_line("Car", (100, 10, 150, 30))]}),
        "box_outside_image",
        r"000000\.txt:2$",
        False,
        1,
    ),
    "box wholly outside": Case(
        lambda r: kitti(r, {"000000": [GOOD_KITTI, kitti_line("Car", (200, 10, 250, 30))]}),
        "box_outside_image",
        r"000000\.txt:2$",
        True,
        1,
    ),
    "declared size not the image's": Case(
        lambda r: voc(r, voc_xml([("dog", 1, 1, 20, 20)], width=640, height=480)),
        "size_mismatch",
        r"Annotations/a\.xml$",
        False,
        1,
    ),
    "zero-area box": Case(
        lambda r: kitti(r, {"000000": [GOOD_KITTI, kitti_line("Car", (10, 10, 10, 30))]}),
        "zero_area_box",
        r"000000\.txt:2$",
        True,
        1,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_a_counted_skip_or_a_strict_error(name, tmp_path, capsys):
    case = CASES[name]
    cfg = case.build(tmp_path / "data")

    index = load_index(cfg, "data.train")
    (problem,) = [p for p in index.problems if p.kind == case.kind]
    assert re.search(case.location, problem.location), problem
    assert problem.dropped == case.dropped
    assert len(index.records) == case.images
    assert f"{case.kind} 1" in capsys.readouterr().out  # the run reports the count

    with pytest.raises(DatasetError) as err:
        load_index(cfg.model_copy(update={"policy": "strict"}), "data.train")
    listed = [line for line in str(err.value).splitlines() if f"[{case.kind}]" in line]
    assert len(listed) == 1 and re.search(case.location, listed[0].split(": [")[0])


def test_clipped_box_keeps_the_part_inside(tmp_path):
    index = load_index(CASES["box partly outside (clipped)"].build(tmp_path), "data.train")
    assert index.records[0].boxes_xyxy.tolist()[1] == [100, 10, 120, 30]


def test_size_of_the_image_not_of_the_annotation_is_used(tmp_path):
    index = load_index(CASES["declared size not the image's"].build(tmp_path), "data.train")
    assert (index.records[0].width, index.records[0].height) == (64, 48)


def test_images_without_objects_are_kept_and_reported_even_under_strict(tmp_path, capsys):
    cfg = kitti(
        tmp_path, {"000000": [GOOD_KITTI], "000001": [kitti_line("DontCare", (1, 1, 9, 9))]}
    )
    for policy in ("drop", "strict"):
        index = load_index(cfg.model_copy(update={"policy": policy}), "data.train")
        assert [r.num_instances for r in index.records] == [1, 0]
        (problem,) = index.problems
        assert problem.kind == "no_objects" and problem.location.endswith("000001.txt")
    assert "no_objects 1" in capsys.readouterr().out


def test_empty_dataset_stops_with_root_and_split(tmp_path):
    (tmp_path / "training" / "label_2").mkdir(parents=True)
    (tmp_path / "training" / "image_2").mkdir(parents=True)
    cfg = DatasetConfig(format="kitti", root=str(tmp_path), split="train")
    with pytest.raises(
        DatasetError, match=rf"data\.val: the dataset at {tmp_path} \(split train\)"
    ):
        load_index(cfg, "data.val")


def test_dataset_with_only_bad_images_is_empty_and_says_why(tmp_path):
    make_voc(tmp_path, {"a": "<annotation>"})
    with pytest.raises(DatasetError, match=r"no usable image \(1 data problems\)"):
        load_index(DatasetConfig(format="voc", root=str(tmp_path)), "data.train")


# ----------------------------------------------- through the commands: exit code 2


def edit(path: Path, change: Callable[[dict], None]) -> Path:
    raw = yaml.safe_load(path.read_text())
    change(raw)
    path.write_text(yaml.safe_dump(raw))
    return path


def test_train_on_an_empty_dataset_exits_2_with_the_reason(tiny_config, tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "training" / "label_2").mkdir(parents=True)
    (empty / "training" / "image_2").mkdir(parents=True)

    def point_train_at_empty(raw):
        raw["data"]["train"] = {"format": "kitti", "root": str(empty)}

    cfg = edit(tiny_config("empty"), point_train_at_empty)
    assert main(["train", str(cfg)]) == 2
    assert "data.train: the dataset at" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda raw: raw["train"].update(seed="one"), r"train\.seed: .*integer"),
        (lambda raw: raw["train"].update(epoch=3), r"train\.epoch: unknown key"),
    ],
)
def test_config_with_wrong_type_or_unknown_key_exits_2(tiny_config, capsys, change, message):
    cfg = edit(tiny_config("bad"), change)
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and str(cfg) in err


def test_eval_of_another_architecture_lists_mismatched_keys(tiny_config, tmp_path, capsys):
    cfg = tiny_config("arch")
    model = load_config(cfg).model.model_copy(update={"fpn_channels": 24, "head_convs": 2})
    state = build_student(model, 3).state_dict()
    checkpoint = tmp_path / "other.pt"
    torch.save(
        {"model": state, "meta": {"class_names": ["Car", "Pedestrian", "Cyclist"]}}, checkpoint
    )
    assert main(["eval", str(cfg), "--checkpoint", str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert f"{checkpoint}: the checkpoint does not match this architecture" in err
    assert "unexpected keys" in err and "shape mismatches" in err
    assert re.search(r"neck\.\S+: checkpoint \(24, ", err)


def test_undecodable_pixels_stop_a_strict_training_naming_the_file(tiny_config, capsys):
    """The reader checks image headers only (decoding every image would cost minutes on
    a large set; `liafkd data check` decodes them all); under `policy: strict` pixels
    that do not decode stop the run when a DataLoader worker meets them, naming the
    file (under `drop` the image is dropped: tests/data/test_images.py)."""

    def strict_with_a_worker(raw):
        raw["data"].update(num_workers=1)
        raw["data"]["train"]["policy"] = "strict"

    cfg = edit(tiny_config("pixels"), strict_with_a_worker)
    index = load_index(load_config(cfg).data.train, "data.train")
    broken = Path(index.records[0].file_name)
    broken.write_bytes(broken.read_bytes()[:200])  # header intact, pixel data cut
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert str(broken) in err and "cannot read image" in err
