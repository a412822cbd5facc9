"""A full disk while writing a checkpoint or a file: one clear message, the old file
untouched, no temporary file left behind."""

import errno
import os

import pytest
import torch
import yaml

from liafkd.cli.main import main
from liafkd.engine import checkpoint
from liafkd.engine.checkpoint import load_checkpoint, save_atomic
from liafkd.outputs import DiskFullError, write_text_atomic

FULL = OSError(errno.ENOSPC, "No space left on device")


def half_written_then(error):
    """A torch.save that writes some bytes, then fails as a full disk makes it fail."""

    def save(obj, handle):
        handle.write(b"PK\x03\x04 partial")
        raise error

    return save


@pytest.mark.parametrize(
    "error",
    [FULL, RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")],
    ids=["ENOSPC", "torch-zip-writer"],
)
def test_a_checkpoint_write_on_a_full_disk(tmp_path, monkeypatch, error):
    path = tmp_path / "final.pt"
    save_atomic({"model": {"w": torch.ones(2)}}, path)
    monkeypatch.setattr(checkpoint.torch, "save", half_written_then(error))
    with pytest.raises(DiskFullError, match="no space left on the device, nothing written"):
        save_atomic({"model": {"w": torch.zeros(2)}}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["final.pt"]  # no .tmp left
    assert load_checkpoint(path)["model"]["w"].tolist() == [1.0, 1.0]  # the old one


def test_other_write_errors_stay_themselves_and_leave_no_tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint.torch, "save", half_written_then(ValueError("not a tensor")))
    with pytest.raises(ValueError, match="not a tensor"):
        save_atomic({}, tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []


def test_a_text_file_on_a_full_disk(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    write_text_atomic(path, "old")

    def fsync(fd):
        raise FULL

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(DiskFullError, match=f"{path}: no space left on the device"):
        write_text_atomic(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_data_convert_on_a_full_disk_exits_1_with_the_message(tmp_path, monkeypatch, capsys):
    from PIL import Image

    kitti = tmp_path / "kitti"
    for sub in ("training/image_2", "training/label_2", "ImageSets"):
        (kitti / sub).mkdir(parents=True)
    Image.new("RGB", (32, 24)).save(kitti / "training/image_2/000000.png")
    (kitti / "training/label_2/000000.txt").write_text("Car 0 0 0 1 1 20 20 1 1 1 1 1 9 0\n")
    (kitti / "ImageSets/train.txt").write_text("000000\n")
    ds = tmp_path / "ds.yaml"
    ds.write_text(yaml.safe_dump({"format": "kitti", "root": str(kitti), "split": "train"}))
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(FULL))
    out = tmp_path / "out" / "coco.json"
    assert main(["data", "convert", str(ds), "--to", "coco", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no space left on the device, nothing written" in err and "Traceback" not in err
    assert list((tmp_path / "out").iterdir()) == []


def test_training_stops_cleanly_when_a_checkpoint_cannot_be_written(
    tiny_config, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(checkpoint.torch, "save", half_written_then(FULL))
    cfg = tiny_config("run", max_steps=1, checkpoint_steps=1)
    assert main(["train", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "no space left on the device, nothing written" in err and "Traceback" not in err
    leftovers = [p.name for p in (tmp_path / "run").rglob("*") if ".tmp-" in p.name]
    assert leftovers == []
    assert not (tmp_path / "run" / ".liafkd.lock").exists()
