"""`liafkd demo` end to end on a tiny recipe: the shipped teacher (sha256 checked), the
picture OUT/compare.png as a readable PNG of the size its layout gives, the closing
text; and the shipped teacher refused when its file is not the one shipped."""

import json
import shutil

import pytest
from PIL import Image

from liafkd.cli.main import main
from liafkd.compare_figure import figure_size_px
from liafkd.engine import demo


def test_figure_size_of_the_layout():
    # 3.2 in per panel, 2.2 in per image row plus 2.8 in for the chart, at 100 dpi
    assert figure_size_px(3, 4) == (1280, 940)
    assert figure_size_px(2, 4) == (1280, 720)


def test_teacher_trained_on_other_images_than_the_demo():
    data = demo.shipped_teacher_config()["data"]
    seeds = {data[split]["synth_seed"] for split in ("train", "val")}
    assert demo.DEMO_SYNTH_SEED not in seeds
    student = demo.student_config("liaf", demo.Path("/o"), demo.Recipe(), {"config": "c"})
    assert student["data"]["val"]["synth_seed"] == demo.DEMO_SYNTH_SEED


def test_train_teacher_writes_only_under_the_demo_folder(tmp_path):
    raw = demo.teacher_training_config(tmp_path)
    assert raw["output_dir"] == str(tmp_path / "teacher")
    for split in ("train", "val"):
        assert raw["data"][split]["root"] == str(tmp_path / "data" / "teacher-synthetic")
    shipped = demo.shipped_teacher_config()
    assert raw["model"] == shipped["model"] and raw["train"] == shipped["train"]


def test_shipped_teacher_matches_its_sha256():
    assert demo.verify_shipped_teacher() == demo.TEACHER_WEIGHTS


def test_shipped_teacher_files_are_one_run():
    # SHA256SUMS, the log and the config beside final.pt describe that file's run
    sums = (demo.ASSET_DIR / "SHA256SUMS").read_text().split()
    assert sums == [demo.TEACHER_SHA256, "final.pt"]
    log = [json.loads(line) for line in (demo.ASSET_DIR / "metrics.jsonl").open()]
    epochs = [r for r in log if r["type"] == "epoch"]
    assert epochs[-1]["epoch"] == demo.shipped_teacher_config()["train"]["schedule"]["epochs"]
    summary = json.loads((demo.ASSET_DIR / "summary.json").read_text())
    assert summary["final"]["AP"] == epochs[-1]["val"]["AP"]


def test_a_changed_teacher_file_is_refused(tmp_path):
    copy = tmp_path / "final.pt"
    shutil.copyfile(demo.TEACHER_WEIGHTS, copy)
    with copy.open("ab") as f:
        f.write(b"\0")
    with pytest.raises(demo.DemoError, match=f"{copy}: sha256 [0-9a-f]{{64}} is not the shipped"):
        demo.verify_shipped_teacher(copy)
    with pytest.raises(demo.DemoError, match="shipped teacher is missing"):
        demo.verify_shipped_teacher(tmp_path / "absent.pt")


@pytest.mark.slow
def test_tiny_demo_writes_the_picture_and_says_where(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--images", "8", "--epochs", "1", "--threads", "1"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    picture = out / "compare.png"
    with Image.open(picture) as image:
        image.load()  # decodes every pixel: a truncated file fails here
        assert image.format == "PNG"
        shown = min(3, 2)  # 8 images: 6 train, 2 val
        assert image.size == figure_size_px(shown, 4)  # ground truth, teacher, none, liaf
    flat = " ".join(text.split())
    assert f"picture {picture}" in flat
    assert f"results {out / 'demo_results.json'}" in flat
    assert "Next, distil your own detector on your own data" in flat
    rows = json.loads((out / "demo_results.json").read_text())["rows"]
    assert [r["run"] for r in rows] == ["teacher", "student_none", "student_liaf"]
    assert rows[0]["AP"] > 0  # the shipped teacher detects on the demo's images
