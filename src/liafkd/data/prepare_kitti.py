"""`liafkd data prepare kitti`: KITTI object 2D as users download it (the official
`data_object_image_2.zip` and `data_object_label_2.zip`) into the layout the KITTI reader
reads, with the standard train/val split:

    DIR/training/image_2/<frame>.png, DIR/training/label_2/<frame>.txt,
    DIR/testing/image_2/<frame>.png,
    DIR/ImageSets/train.txt (3,712 frames), val.txt (3,769), trainval.txt (7,481)

The split is the one KITTI 2D validation results are reported on (Chen et al., 3DOP /
MV3D; the lists OpenPCDet ships in data/kitti/ImageSets), shipped in liafkd/data/kitti_splits.
"""

from __future__ import annotations

import shutil
import zipfile
from importlib import resources
from pathlib import Path, PurePosixPath

from liafkd.data.destination import (
    DataFolderError,
    check_destination,
    read_marker,
    write_marker,
)

ZIPS = ("data_object_image_2.zip", "data_object_label_2.zip")
# what is taken from the zips; anything else in them is left out
MEMBER_FOLDERS = {("training", "image_2"), ("training", "label_2"), ("testing", "image_2")}
SPLITS = ("train", "val")
MAX_LISTED = 10


def standard_split(name: str) -> list[str]:
    """The frame ids of the standard `train` or `val` list."""
    text = resources.files("liafkd.data").joinpath("kitti_splits", f"{name}.txt").read_text()
    return text.split()


def member_path(name: str, zip_path: Path) -> PurePosixPath | None:
    """The member's path when it is a file of MEMBER_FOLDERS (directly inside), else None."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise DataFolderError(f"{zip_path}: holds an unsafe path: {name}")
    if len(path.parts) != 3 or tuple(path.parts[:2]) not in MEMBER_FOLDERS:
        return None
    return path


def unpack(zip_path: Path, dest: Path) -> int:
    """Write the zip's training/ and testing/ files into `dest`; returns how many."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataFolderError(f"{zip_path}: not a readable zip file: {e}") from None
    written = 0
    with archive:
        for info in archive.infolist():
            path = None if info.is_dir() else member_path(info.filename, zip_path)
            if path is None:
                continue
            out = dest.joinpath(*path.parts)
            out.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, out.open("wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
            written += 1
    if not written:
        raise DataFolderError(
            f"{zip_path}: no training/image_2, training/label_2 or testing/image_2 files in it "
            "(is it KITTI's object data?)"
        )
    return written


def missing_frames(dest: Path, frames: list[str]) -> list[str]:
    """The frames without both their image and their label under dest/training."""
    training = dest / "training"
    return [
        frame
        for frame in frames
        if not (training / "image_2" / f"{frame}.png").is_file()
        or not (training / "label_2" / f"{frame}.txt").is_file()
    ]


def write_splits(dest: Path) -> dict[str, list[str]]:
    lists = {name: standard_split(name) for name in SPLITS}
    lists["trainval"] = sorted(lists["train"] + lists["val"])
    image_sets = dest / "ImageSets"
    image_sets.mkdir(parents=True, exist_ok=True)
    for name, frames in lists.items():
        (image_sets / f"{name}.txt").write_text("".join(f"{frame}\n" for frame in frames))
    return lists


def find_zips(zips: Path) -> list[Path]:
    paths = [zips / name for name in ZIPS]
    absent = [path.name for path in paths if not path.is_file()]
    if absent:
        raise DataFolderError(
            f"{zips}: {' and '.join(absent)} not found. Download KITTI's 'left color images "
            "of object data set' and 'training labels of object data set' from "
            "https://www.cvlibs.net/datasets/kitti/eval_object.php?obj_benchmark=2d "
            "(registration needed) and keep their names."
        )
    return paths


def prepare_kitti(zips: Path, dest: Path) -> dict[str, int]:
    """Unpack the official zips of folder `zips` into `dest` and write the standard split.
    Returns the frames per list. Raises DataFolderError when a listed frame is missing."""
    paths = find_zips(zips)
    if dest.resolve() == zips.resolve():
        raise DataFolderError(f"--to {dest} is the zips' own folder: give another one")
    check_destination(dest, "liafkd data prepare kitti")
    marker = read_marker(dest)
    if marker is not None and marker.get("dataset") == "kitti" and marker.get("complete"):
        print(f"{dest} already holds KITTI prepared by liafkd; nothing written")
        return {name: len(standard_split(name)) for name in SPLITS}
    dest.mkdir(parents=True, exist_ok=True)
    record = {"dataset": "kitti", "zips": [str(p.resolve()) for p in paths], "complete": False}
    write_marker(dest, record)
    for path in paths:
        print(f"unpacking {path} ...", flush=True)
        print(f"  {unpack(path, dest)} files")
    lists = write_splits(dest)
    absent = missing_frames(dest, lists["trainval"])
    if absent:
        shown = ", ".join(absent[:MAX_LISTED]) + (", ..." if len(absent) > MAX_LISTED else "")
        raise DataFolderError(
            f"{len(absent)} of the standard split's {len(lists['trainval'])} frames have no "
            f"image or no label under {dest / 'training'} ({shown}): are the zips complete? "
            f"{dest / 'ImageSets'} lists them all, so the reader would report each one"
        )
    write_marker(dest, {**record, "complete": True})
    return {name: len(frames) for name, frames in lists.items()}
