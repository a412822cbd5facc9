"""The CLI starts at once: building the parser (every `--help`) imports neither torch,
torchvision nor pydantic, and the commands that need no model (`kitti-eval`,
`data check`, `data convert`, `eval --results`) run without importing torch or
torchvision. Each case runs in a fresh interpreter: this test process has long since
imported torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

HEAVY = ("torch", "torchvision")

RUN_COMMAND = """
import json, sys
from liafkd.cli.main import main
code = main(json.loads(sys.argv[1]))
loaded = [m for m in ("torch", "torchvision", "pydantic") if m in sys.modules]
print("@@" + json.dumps({"code": code, "loaded": loaded}))
"""

EVERY_HELP = """
import contextlib, io, json, sys
from liafkd.cli.main import build_parser
parser = build_parser()
commands = [[]] + [[c] for c in parser._subparsers._group_actions[0].choices]
commands += [["data", "check"], ["data", "convert"], ["data", "synth"]]
for words in commands:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        parser.parse_args(words + ["--help"])
loaded = [m for m in ("torch", "torchvision", "pydantic", "pycocotools") if m in sys.modules]
print("@@" + json.dumps({"commands": len(commands), "loaded": loaded}))
"""


def fresh_python(code: str, *args: str, cwd: Path | None = None) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("@@")]
    assert lines, f"no result; stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return json.loads(lines[-1][2:])


def liafkd_fresh(argv: list[str], cwd: Path | None = None) -> dict:
    return fresh_python(RUN_COMMAND, json.dumps(argv), cwd=cwd)


def test_every_help_imports_no_torch_and_no_pydantic():
    result = fresh_python(EVERY_HELP)
    assert result["commands"] >= 13
    assert result["loaded"] == []


def kitti_line(name: str, box: tuple[float, ...], score: float | None = None) -> str:
    x1, y1, x2, y2 = box
    line = f"{name} 0.00 0 -1.57 {x1} {y1} {x2} {y2} 1.5 1.6 3.9 1.0 1.7 20.0 -1.5"
    return line if score is None else f"{line} {score}"


@pytest.fixture
def kitti_root(tmp_path: Path) -> Path:
    """A KITTI tree of two 200x100 images, one car each."""
    root = tmp_path / "kitti"
    for stem in ("000000", "000001"):
        (root / "training" / "image_2").mkdir(parents=True, exist_ok=True)
        (root / "training" / "label_2").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (200, 100)).save(root / "training" / "image_2" / f"{stem}.png")
        line = kitti_line("Car", (10.0, 20.0, 110.0, 80.0))
        (root / "training" / "label_2" / f"{stem}.txt").write_text(line + "\n")
    (tmp_path / "kitti.yaml").write_text("format: kitti\nroot: kitti\n")
    return root


def test_kitti_eval_without_torch(kitti_root, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    for stem in ("000000", "000001"):
        line = kitti_line("Car", (10.0, 20.0, 110.0, 80.0), 0.9)
        (results / f"{stem}.txt").write_text(line + "\n")
    labels = str(kitti_root / "training" / "label_2")
    run = liafkd_fresh(["kitti-eval", "--labels", labels, "--results", str(results)])
    assert run["code"] == 0
    assert not set(HEAVY) & set(run["loaded"])


def test_data_check_and_convert_without_torch(kitti_root, tmp_path):
    config = str(tmp_path / "kitti.yaml")
    run = liafkd_fresh(["data", "check", config, "--json", str(tmp_path / "check.json")])
    assert run["code"] == 0
    assert not set(HEAVY) & set(run["loaded"])
    out = tmp_path / "coco.json"
    run = liafkd_fresh(["data", "convert", config, "--to", "coco", "--out", str(out)])
    assert run["code"] == 0
    assert not set(HEAVY) & set(run["loaded"])
    assert len(json.loads(out.read_text())["images"]) == 2


def test_eval_results_without_torch(kitti_root, tmp_path):
    dets = [
        {"image_id": image_id, "category_id": 1, "bbox": [10, 20, 100, 60], "score": 0.9}
        for image_id in (0, 1)
    ]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    argv = ["eval", "--dataset", str(tmp_path / "kitti.yaml"), "--results"]
    run = liafkd_fresh(argv + [str(tmp_path / "dets.json")])
    assert run["code"] == 0
    assert not set(HEAVY) & set(run["loaded"])


def test_errors_of_unloaded_modules_still_exit_2(tmp_path):
    """main() maps liafkd's errors to exit codes without importing their modules."""
    run = liafkd_fresh(["data", "check", str(tmp_path / "missing.yaml")])
    assert run["code"] == 2
    assert not set(HEAVY) & set(run["loaded"])
