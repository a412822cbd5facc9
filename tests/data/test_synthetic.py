import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from liafkd.cli.data import add_synth_parser
from liafkd.config import ConfigError, DatasetConfig
from liafkd.data.synthetic import (
    CLASS_NAMES,
    META_FILE,
    SceneObject,
    draw_sprite,
    ensure_synthetic,
    generate_synthetic,
    label_lines,
    occlusion_level,
    render_scene,
)

SIZE = (96, 160)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _labels(root: Path) -> list[list[str]]:
    return [
        line.split()
        for f in sorted((root / "training" / "label_2").glob("*.txt"))
        for line in f.read_text().splitlines()
    ]


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "set"
    generate_synthetic(root, 24, seed=5)
    return root


def _plain_canvas(height: int = 100, width: int = 200) -> np.ndarray:
    return np.full((height, width, 3), (110.0, 130.0, 150.0), np.float32)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    generate_synthetic(tmp_path / "a", 4, seed=3, size=SIZE)
    generate_synthetic(tmp_path / "b", 4, seed=3, size=SIZE)
    generate_synthetic(tmp_path / "c", 4, seed=4, size=SIZE)
    a, b, c = (_digest(tmp_path / n) for n in "abc")
    assert a == b
    pngs = [k for k in a if k.endswith(".png")]
    assert len(pngs) == 4
    assert all(a[k] != c[k] for k in pngs)


def test_parallel_workers_write_the_same_bytes(tmp_path):
    generate_synthetic(tmp_path / "serial", 6, seed=3, size=SIZE)
    generate_synthetic(tmp_path / "parallel", 6, seed=3, size=SIZE, workers=2)
    assert _digest(tmp_path / "serial") == _digest(tmp_path / "parallel")


def test_layout_and_splits(small_set):
    images = sorted((small_set / "training" / "image_2").glob("*.png"))
    assert [p.stem for p in images] == [f"{i:06d}" for i in range(24)]
    train = (small_set / "ImageSets" / "train.txt").read_text().split()
    val = (small_set / "ImageSets" / "val.txt").read_text().split()
    assert len(val) == 6 and len(train) == 18
    assert sorted(train + val) == [p.stem for p in images]
    assert (small_set / META_FILE).is_file()


def test_labels_have_15_fields_and_boxes_inside(small_set):
    rows = _labels(small_set)
    assert rows
    for fields in rows:
        assert len(fields) == 15
        x1, y1, x2, y2 = map(float, fields[4:8])
        assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 192
        if fields[0] != "DontCare":
            assert fields[0] in CLASS_NAMES
            assert 0.0 <= float(fields[1]) <= 1.0
            assert int(fields[2]) in (0, 1, 2)


def test_class_size_and_difficulty_variety(small_set):
    rows = [r for r in _labels(small_set) if r[0] != "DontCare"]
    assert {r[0] for r in rows} == set(CLASS_NAMES)
    heights = np.array([float(r[7]) - float(r[5]) for r in rows])
    assert heights.min() < 16 and heights.max() > 70
    assert {int(r[2]) for r in rows} == {0, 1, 2}
    assert any(float(r[1]) > 0.1 for r in rows)


def test_difficulty_sidecar_matches_labels(small_set):
    contrasts = []
    for label_file in sorted((small_set / "training" / "label_2").glob("*.txt")):
        rows = [r.split() for r in label_file.read_text().splitlines()]
        rows = [r for r in rows if r[0] != "DontCare"]
        info = json.loads(
            (small_set / "training" / "difficulty" / f"{label_file.stem}.json").read_text()
        )
        assert len(info) == len(rows)
        for row, item in zip(rows, info, strict=True):
            assert int(row[2]) == occlusion_level(item["occlusion"])
            assert float(row[1]) == pytest.approx(item["truncation"], abs=0.005)
            assert float(row[7]) - float(row[5]) == item["height_px"]
            contrasts.append(item["contrast"])
    assert min(contrasts) < 0.5 and max(contrasts) == 1.0


def test_truncation_is_clipped_box_fraction():
    canvas = _plain_canvas()
    car = SceneObject("Car", left=-30, top=20, width=60, height=40, depth_m=10.0, rot_y=0.0)
    (label,) = render_scene(canvas, [car]).objects
    assert label.full_box == (-30, 20, 30, 60)  # the side-view silhouette fills its sprite
    assert label.box == (0.0, 20.0, 30.0, 60.0)
    assert label.truncation == pytest.approx(0.5)
    assert label.occlusion == 0.0


def test_truncation_at_bottom_border():
    canvas = _plain_canvas()
    van = SceneObject("Van", left=50, top=70, width=80, height=40, depth_m=8.0, rot_y=0.0)
    (label,) = render_scene(canvas, [van]).objects
    full = label.full_box
    clipped_area = (full[2] - full[0]) * (100 - full[1])
    expected = 1 - clipped_area / ((full[2] - full[0]) * (full[3] - full[1]))
    assert label.box[3] == 100
    assert label.truncation == pytest.approx(expected)


def test_object_behind_another_is_occluded_and_becomes_dontcare():
    canvas = _plain_canvas()
    near = SceneObject("Van", left=40, top=10, width=100, height=80, depth_m=5.0, rot_y=-1.57)
    hidden = SceneObject("Pedestrian", left=80, top=30, width=12, height=36, depth_m=20.0)
    apart = SceneObject("Pedestrian", left=170, top=40, width=10, height=30, depth_m=15.0)
    labels = render_scene(canvas, [near, hidden, apart])
    by_kind = {lab.obj.kind + str(lab.obj.left): lab for lab in labels.objects}
    assert by_kind["Pedestrian80"].occlusion == 1.0
    assert by_kind["Pedestrian80"].occlusion_level == 2
    assert by_kind["Van40"].occlusion_level == 0
    assert by_kind["Pedestrian170"].occlusion_level == 0
    lines = label_lines(labels)
    assert sum(line.startswith("DontCare") for line in lines) == 1


def test_partial_occlusion_measured_from_pixels():
    canvas = _plain_canvas()
    far = SceneObject("Car", left=20, top=20, width=80, height=40, depth_m=20.0, rot_y=0.0)
    pole = SceneObject("pole", left=50, top=0, width=10, height=100, depth_m=5.0)
    labels = render_scene(canvas, [far, pole])
    (car,) = labels.objects
    silhouette = draw_sprite(far)[..., 3] > 0
    covered = silhouette[:, 30:40].sum()  # the pole spans image columns 50..59
    assert car.occlusion == pytest.approx(covered / silhouette.sum())
    assert 0.05 < car.occlusion < 0.2
    assert car.occlusion_level == occlusion_level(car.occlusion)


def test_occlusion_levels():
    assert [occlusion_level(f) for f in (0.0, 0.09, 0.1, 0.39, 0.4, 1.0)] == [0, 0, 1, 1, 2, 2]


def test_ensure_synthetic_generates_once_and_regenerates_on_change(tmp_path):
    cfg = DatasetConfig(
        format="synthetic", root=str(tmp_path / "s"), synth_images=3, synth_size=SIZE
    )
    root = ensure_synthetic(cfg)
    assert root == tmp_path / "s"
    first = root / "training" / "image_2" / "000000.png"
    stamp = first.stat().st_mtime_ns
    ensure_synthetic(cfg)
    assert first.stat().st_mtime_ns == stamp
    cfg2 = cfg.model_copy(update={"synth_seed": 1})
    ensure_synthetic(cfg2)
    assert '"seed": 1' in (root / META_FILE).read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no staging folders left


def test_ensure_synthetic_refuses_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("user data")
    cfg = DatasetConfig(format="synthetic", root=str(tmp_path), synth_images=2, synth_size=SIZE)
    with pytest.raises(ConfigError, match="other files"):
        ensure_synthetic(cfg)
    assert (tmp_path / "mine.txt").read_text() == "user data"


def test_cli_writes_set_and_grid(tmp_path):
    parser = argparse.ArgumentParser()
    add_synth_parser(parser.add_subparsers())
    out, grid = tmp_path / "set", tmp_path / "grid.png"
    args = parser.parse_args(
        [
            "synth",
            "--out",
            str(out),
            "--images",
            "3",
            "--height",
            "96",
            "--width",
            "160",
            "--grid",
            str(grid),
        ]
    )
    assert args.func(args) == 0
    assert len(list((out / "training" / "label_2").glob("*.txt"))) == 3
    assert grid.stat().st_size > 0


def test_registered_as_liafkd_data_synth(tmp_path):
    from liafkd.cli.main import main

    out = tmp_path / "set"
    assert (
        main(
            ["data", "synth", "--out", str(out), "--images", "2", "--height", "64", "--width", "96"]
        )
        == 0
    )
    assert (out / META_FILE).is_file()
