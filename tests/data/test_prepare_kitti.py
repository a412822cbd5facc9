"""`liafkd data prepare kitti` on zips built here in the official layout (KITTI's own
images need registration): the reader then finds the standard 3,712 / 3,769 split."""

import io
import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from liafkd.cli.main import main
from liafkd.config import DatasetConfig
from liafkd.data import prepare_kitti
from liafkd.data.destination import MARKER
from liafkd.data.formats import read_dataset
from liafkd.data.prepare_kitti import ZIPS, standard_split

LABEL = "Car 0.00 0 -1.58 10.00 20.00 60.00 50.00 1.50 1.60 3.90 1.00 1.50 10.00 -1.50\n"


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (80, 64), (90, 120, 150)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_zips(folder: Path, frames: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    image = png_bytes()
    with zipfile.ZipFile(folder / ZIPS[0], "w", zipfile.ZIP_STORED) as images:
        for frame in frames:
            images.writestr(f"training/image_2/{frame}.png", image)
        images.writestr("testing/image_2/000000.png", image)
        images.writestr("readme.txt", "not taken")
    with zipfile.ZipFile(folder / ZIPS[1], "w", zipfile.ZIP_STORED) as labels:
        for frame in frames:
            labels.writestr(f"training/label_2/{frame}.txt", LABEL)
    return folder


def kitti_split(root: Path, split: str) -> DatasetConfig:
    return DatasetConfig(format="kitti", root=str(root), split=split)


def test_the_shipped_split_is_the_standard_one():
    train, val = standard_split("train"), standard_split("val")
    assert (len(train), len(val)) == (3712, 3769)
    assert not set(train) & set(val)
    assert sorted(train + val) == [f"{i:06d}" for i in range(7481)]


@pytest.fixture
def small_split(monkeypatch):
    """The standard lists' first frames, so a test's zips need 6 frames, not 7,481."""
    lists = {"train": ["000000", "000003", "000007"], "val": ["000001", "000002"]}
    assert all(set(frames) <= set(standard_split(name)) for name, frames in lists.items())
    monkeypatch.setattr(prepare_kitti, "standard_split", lists.__getitem__)
    return lists


def test_the_official_zips_become_the_readers_layout_with_the_split(tmp_path, capsys, small_split):
    zips = write_zips(tmp_path / "downloads", ["000000", "000001", "000002", "000003", "000007"])
    dest = tmp_path / "kitti"
    assert main(["data", "prepare", "kitti", "--zips", str(zips), "--to", str(dest)]) == 0
    assert "train 3, val 2 frames" in capsys.readouterr().out
    image_sets = dest / "ImageSets"
    assert (image_sets / "val.txt").read_text() == "000001\n000002\n"
    assert (image_sets / "trainval.txt").read_text().split() == [
        "000000",
        "000001",
        "000002",
        "000003",
        "000007",
    ]
    assert (dest / "testing/image_2/000000.png").is_file()
    assert not (dest / "readme.txt").exists()
    assert json.loads((dest / MARKER).read_text())["complete"] is True

    val = read_dataset(kitti_split(dest, "val"))
    assert len(val.records) == 2 and not val.problems
    assert val.class_names == ["Car", "Pedestrian", "Cyclist"]
    record = val.records[0]
    assert record.file_name.endswith("training/image_2/000001.png")  # val's first frame
    assert record.boxes_xyxy.tolist() == [[10.0, 20.0, 60.0, 50.0]]
    assert record.labels.tolist() == [0]

    assert main(["data", "prepare", "kitti", "--zips", str(zips), "--to", str(dest)]) == 0
    assert "already holds KITTI" in capsys.readouterr().out


def test_frames_of_the_standard_split_missing_from_the_zips_are_named(tmp_path, capsys):
    zips = write_zips(tmp_path / "downloads", ["000000", "000001", "000003"])
    dest = tmp_path / "kitti"
    assert main(["data", "prepare", "kitti", "--zips", str(zips), "--to", str(dest)]) == 2
    err = capsys.readouterr().err
    assert "error: 7478 of the standard split's 7481 frames" in err
    assert "(000002, 000004, 000005," in err
    assert (dest / "training/label_2/000003.txt").read_text() == LABEL
    assert json.loads((dest / MARKER).read_text())["complete"] is False
    train = read_dataset(kitti_split(dest, "train"))  # 000000 and 000003 are train frames
    assert [r.file_name.rsplit("/", 1)[1] for r in train.records] == ["000000.png", "000003.png"]


def test_a_missing_zip_is_named_with_where_to_get_it(tmp_path, capsys):
    zips = tmp_path / "downloads"
    zips.mkdir()
    (zips / ZIPS[0]).write_bytes(b"")
    assert main(["data", "prepare", "kitti", "--zips", str(zips), "--to", str(tmp_path / "k")]) == 2
    err = capsys.readouterr().err
    assert f"{ZIPS[1]} not found" in err and "cvlibs.net" in err
    assert not (tmp_path / "k").exists()


def test_a_folder_liafkd_did_not_write_is_refused_untouched(tmp_path, capsys):
    zips = write_zips(tmp_path / "downloads", ["000000"])
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("a user's file")
    assert main(["data", "prepare", "kitti", "--zips", str(zips), "--to", str(dest)]) == 2
    assert "was not written by `liafkd data prepare kitti`" in capsys.readouterr().err
    assert [p.name for p in dest.iterdir()] == ["notes.txt"]


def test_a_file_that_is_no_zip_is_named(tmp_path, capsys):
    zips = write_zips(tmp_path / "downloads", ["000000"])
    (zips / ZIPS[1]).write_text("an HTML error page")
    assert main(["data", "prepare", "kitti", "--zips", str(zips), "--to", str(tmp_path / "k")]) == 2
    assert f"{zips / ZIPS[1]}: not a readable zip file" in capsys.readouterr().err
