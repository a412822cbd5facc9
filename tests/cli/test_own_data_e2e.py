"""docs/getting-started.md, "Distil a detector on your own data", end to end: a
tutorial-style dataset (images/ + annotations/ as VOC XML + train.csv / val.csv), the
page's own dataset, teacher and student YAML files, and its commands run in order (data
check, train, doctor, distill with LIAF-KD, FGD and alone, eval, export, predict). The
only change: the YAML files get tiny models, images and schedules merged in (a few steps
each). The README repeats the page's blocks; a test holds them equal."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from PIL import Image

from liafkd.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "getting-started.md"
README = ROOT / "README.md"
MARKERS = ("cells.yaml", "teacher.yaml", "student.yaml", "commands")
# merged into the README's files: sizes for a test
TINY_MODEL = {"width": 8, "fpn_channels": 16, "head_convs": 1, "head_channels": 16}
TINY_TEACHER = {
    "model": TINY_MODEL,
    "data": {"augment": {"image_size": [48, 64]}, "batch_size": 3},
    "train": {"schedule": {"epochs": 1, "warmup_iters": 1}, "val_interval": 1, "device": "cpu"},
}
TINY_STUDENT = {"model": TINY_MODEL, "distill": {"checks": {"teacher_sanity": False}}}


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge(out[key], value) if both else value
    return out


def own_data_block(marker: str, page: Path = PAGE) -> str:
    text = page.read_text()
    found = re.search(rf"<!-- own-data:{re.escape(marker)} -->\n```\w*\n(.*?)```", text, re.S)
    assert found, f"{page.name} lost its own-data:{marker} block"
    return found.group(1)


@pytest.mark.parametrize("marker", MARKERS)
def test_the_readme_repeats_the_tested_walkthrough(marker):
    assert own_data_block(marker, README) == own_data_block(marker)


def cells_layout(root: Path, count: int = 8) -> None:
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    rows = {"train": [], "val": []}
    for i in range(count):
        name = f"{i + 1:04d}.jpg"
        image = Image.new("RGB", (64, 48), (30, 30, 30))
        boxes = [(8 + i, 6, 30 + i, 30), (36, 20, 58, 44)]
        for x1, y1, x2, y2 in boxes:
            image.paste((220, 80, 80), (x1, y1, x2, y2))
        image.save(root / "images" / name)
        objects = "".join(
            f"<object><name>cell</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
            f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
            for a, b, c, d in boxes
        )
        (root / "annotations" / f"{i + 1:04d}.xml").write_text(
            f"<annotation><filename>{name}</filename><size><width>64</width>"
            f"<height>48</height><depth>3</depth></size>{objects}</annotation>"
        )
        side = "val" if i % 4 == 3 else "train"
        rows[side] += [f"{name},64,48,cell,{a},{b},{c},{d}" for a, b, c, d in boxes]
    for side, lines in rows.items():
        header = "filename,width,height,class,xmin,ymin,xmax,ymax\n"
        (root / f"{side}.csv").write_text(header + "\n".join(lines) + "\n")


@pytest.mark.slow
def test_own_data_walkthrough(tmp_path, monkeypatch, capsys):
    for module in ("onnx", "onnxruntime"):  # the commands end with export --format onnx
        pytest.importorskip(module, reason=f"{module} is in the `export` extra")
    cells_layout(tmp_path / "cells")
    (tmp_path / "my").mkdir()
    (tmp_path / "my" / "cells.yaml").write_text(own_data_block("cells.yaml"))
    for name, tiny in (("teacher.yaml", TINY_TEACHER), ("student.yaml", TINY_STUDENT)):
        raw = merge(yaml.safe_load(own_data_block(name)), tiny)  # a 2-step teacher scores ~0
        (tmp_path / "my" / name).write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    commands = [
        shlex.split(line.split("#")[0])
        for line in own_data_block("commands").splitlines()
        if line.startswith("liafkd ")
    ]
    assert [c[1] for c in commands] == [
        "data", "train", "doctor", "distill", "distill", "distill", "eval", "export", "predict"
    ]  # fmt: skip
    for argv in commands:
        code = main(argv[1:])
        assert code == 0, (argv, capsys.readouterr())
    out = capsys.readouterr().out
    assert "all checks passed" in out
    for run in ("teacher", "student_liaf", "student_fgd", "student_none"):
        summary = json.loads((tmp_path / "runs" / "cells" / run / "summary.json").read_text())
        assert summary["final"]["AP"] is not None
    student = tmp_path / "runs" / "cells" / "student_liaf"
    assert (student / "eval" / "detections.json").is_file()
    assert (student / "final.onnx").is_file()
    predictions = json.loads((tmp_path / "preds.json").read_text())
    assert {p["image_id"] for p in predictions} <= set(range(1, 9))
    assert len(list((tmp_path / "drawn").glob("*.png"))) == 8
