"""`liafkd predict`: COCO results JSON, KITTI result files and drawn images."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from liafkd.cli.main import main
from liafkd.cli.predict import image_ids


def run_paths(config: Path) -> tuple[str, Path]:
    raw = yaml.safe_load(config.read_text())
    return f"{raw['output_dir']}/final.pt", Path(raw["data"]["val"]["root"])


def val_images(synth_root: Path) -> list[Path]:
    stems = (synth_root / "ImageSets" / "val.txt").read_text().split()
    return [synth_root / "training" / "image_2" / f"{stem}.png" for stem in stems]


def test_predict_coco_equals_eval_detections(tiny_distill_runs, tmp_path):
    """The same images, preprocessing and ids (KITTI stems) as `liafkd eval` on the
    validation split: the same detections."""
    config = tiny_distill_runs["liaf"]
    checkpoint, synth_root = run_paths(config)
    evaluated = tmp_path / "eval.json"
    low_threshold = ["--set", "model.score_thr=0.01"]  # a 2-epoch student scores low
    argv = ["eval", str(config), "--checkpoint", checkpoint, "--out", str(evaluated)]
    assert main(argv + low_threshold) == 0
    out = tmp_path / "pred.json"
    files = [str(p) for p in val_images(synth_root)]
    argv = ["predict", checkpoint, *files, "--config", str(config), "--out", str(out)]
    assert main(argv + ["--score-thr", "0.01"]) == 0

    predicted = json.loads(out.read_text())
    expected = json.loads(evaluated.read_text())
    assert len(predicted) == len(expected) > 0
    key = lambda d: (d["image_id"], -d["score"])  # noqa: E731
    for ours, theirs in zip(sorted(predicted, key=key), sorted(expected, key=key), strict=True):
        assert (ours["image_id"], ours["category_id"]) == (
            theirs["image_id"],
            theirs["category_id"],
        )
        assert ours["score"] == pytest.approx(theirs["score"], abs=1e-5)
        assert ours["bbox"] == pytest.approx(theirs["bbox"], abs=1e-3)
    table = json.loads((tmp_path / "pred_images.json").read_text())
    assert [(t["id"], Path(t["file_name"]).name) for t in table] == [
        (int(Path(f).stem), Path(f).name) for f in files
    ]
    assert {t["width"] for t in table} == {160}


def test_predict_kitti_files_and_drawings(tiny_distill_runs, tmp_path):
    checkpoint, synth_root = run_paths(tiny_distill_runs["liaf"])
    folder = tmp_path / "images"
    folder.mkdir()
    for path in val_images(synth_root):
        shutil.copy(path, folder / f"frame_{path.name}")
    kitti, drawn = tmp_path / "kitti", tmp_path / "drawn"
    argv = ["predict", checkpoint, str(folder), "--format", "kitti", "--out", str(kitti)]
    argv += ["--score-thr", "0.01", "--draw", str(drawn), "--draw-thr", "0.0"]
    assert main(argv) == 0

    stems = sorted(p.stem for p in folder.iterdir())
    assert sorted(p.stem for p in kitti.glob("*.txt")) == stems
    lines = [line.split() for p in kitti.glob("*.txt") for line in p.read_text().splitlines()]
    assert lines and all(len(fields) == 16 for fields in lines)
    assert {fields[0] for fields in lines} <= {"Car", "Pedestrian", "Cyclist"}
    assert all(float(fields[15]) >= 0.01 for fields in lines)
    for stem in stems:
        original = np.asarray(Image.open(folder / f"{stem}.png").convert("RGB"))
        picture = np.asarray(Image.open(drawn / f"{stem}.png"))
        assert picture.shape == original.shape
        assert (picture != original).any()  # boxes drawn


def test_predict_reports_bad_inputs(tiny_distill_runs, tmp_path, capsys):
    checkpoint, synth_root = run_paths(tiny_distill_runs["liaf"])
    missing = tmp_path / "nothing.png"
    assert main(["predict", checkpoint, str(missing)]) == 2
    assert f"{missing}: no such file or folder" in capsys.readouterr().err

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", checkpoint, str(empty)]) == 2
    assert f"{empty}: no image files" in capsys.readouterr().err

    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    assert main(["predict", checkpoint, str(broken)]) == 2
    assert f"{broken}: cannot read image" in capsys.readouterr().err

    first = val_images(synth_root)[0]
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(first, other / first.name)
    argv = ["predict", checkpoint, str(first), str(other / first.name), "--format", "kitti"]
    assert main(argv + ["--out", str(tmp_path / "k")]) == 2
    assert f"stems repeat: {first.stem}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("names", "ids"),
    [
        (["000007.png", "000011.png"], [7, 11]),  # KITTI stems: their numbers
        (["b.png", "a.jpg"], [2, 1]),  # names: numbered from 1 in sorted order
        (["1.png", "x/001.png"], [2, 1]),  # numbers that collide are names
        (["000000.png", "zz.png", "000004.png"], [0, 5, 4]),  # a stray name renumbers none
        (["²³.png", "7.png"], [8, 7]),  # non-ASCII digits are a name, not int("²³")
    ],
)
def test_image_ids(names, ids):
    assert image_ids([Path(name) for name in names]) == ids
