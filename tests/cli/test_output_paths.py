"""No command writes over one of its inputs, a run's files or a folder: every output is
checked before any work (these checkpoints are not even valid: the refusal comes first)."""

import pytest
import yaml
from PIL import Image

from liafkd.cli.main import main
from liafkd.outputs import Input, Output, OutputPathError, check_outputs


def tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A run folder (final.pt, metrics.jsonl, checkpoints/), a folder of two images, a
    KITTI dataset with its YAML."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("final.pt", "best.pt", "checkpoints/epoch_1.pt"):
        (run / name).write_bytes(b"weights " + name.encode())
    (run / "metrics.jsonl").write_text('{"type": "epoch"}\n')
    images = tmp_path / "images"
    images.mkdir()
    for stem in ("000001", "000002"):
        Image.new("RGB", (32, 24)).save(images / f"{stem}.png")
    kitti = tmp_path / "kitti"
    for sub in ("training/image_2", "training/label_2", "ImageSets"):
        (kitti / sub).mkdir(parents=True)
    Image.new("RGB", (32, 24)).save(kitti / "training/image_2/000000.png")
    (kitti / "training/label_2/000000.txt").write_text("Car 0 0 0 1 1 20 20 1.5 1.6 3.9 1 1 10 0\n")
    (kitti / "ImageSets/train.txt").write_text("000000\n")
    dataset = tmp_path / "ds.yaml"
    dataset.write_text(yaml.safe_dump({"format": "kitti", "root": str(kitti), "split": "train"}))
    return tmp_path


def refused(capsys, *args):
    code = main(list(args))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "nothing written" in err
    return err


def test_predict_never_writes_over_its_checkpoint_images_or_a_run(work, capsys):
    before = tree(work)
    ckpt, images = str(work / "run/final.pt"), str(work / "images")
    assert "is the checkpoint" in refused(capsys, "predict", ckpt, images, "--out", ckpt)
    image = str(work / "images/000001.png")
    assert "is the image" in refused(capsys, "predict", ckpt, image, "--out", image)
    err = refused(capsys, "predict", ckpt, images, "--out", str(work / "run/metrics.jsonl"))
    assert "one of the run's own files" in err
    err = refused(capsys, "predict", ckpt, images, "--out", str(work / "run/checkpoints/p.json"))
    assert "one of the run's own files" in err
    assert tree(work) == before


def test_predict_never_draws_into_an_input_folder(work, capsys):
    before = tree(work)
    ckpt, images = str(work / "run/final.pt"), str(work / "images")
    for draw in (images, str(work / "images/drawn")):
        err = refused(capsys, "predict", ckpt, images, "--draw", draw)
        assert "writes one file per input image" in err
    image = str(work / "images/000001.png")  # an image given as a file: not beside it
    assert "one file per input image" in refused(capsys, "predict", ckpt, image, "--draw", images)
    err = refused(capsys, "predict", ckpt, images, "--format", "kitti", "--out", images)
    assert "one file per input image" in err
    assert tree(work) == before


def test_predict_and_convert_check_file_or_folder_before_the_work(work, capsys):
    ckpt, images = str(work / "run/final.pt"), str(work / "images")
    (work / "afile").write_text("")
    (work / "adir").mkdir()
    assert "is a folder" in refused(capsys, "predict", ckpt, images, "--out", "adir")
    err = refused(capsys, "predict", ckpt, images, "--format", "kitti", "--out", "afile")
    assert "is a file" in err
    assert "is a file, not a folder" in refused(
        capsys, "predict", ckpt, images, "--out", "afile/p.json"
    )
    ds = str(work / "ds.yaml")
    assert "is a folder" in refused(capsys, "data", "convert", ds, "--to", "coco", "--out", "adir")
    assert "is the dataset config" in refused(
        capsys, "data", "convert", ds, "--to", "coco", "--out", ds
    )
    label = str(work / "kitti/training/label_2/000000.txt")
    err = refused(capsys, "data", "convert", ds, "--to", "coco", "--out", label)
    assert "is a file of the dataset" in err
    assert "is a folder" in refused(capsys, "data", "check", ds, "--json", "adir")
    # a new file inside the dataset folder is fine (the JSON moves with the images)
    out = work / "kitti" / "coco.json"
    assert main(["data", "convert", ds, "--to", "coco", "--out", str(out)]) == 0
    assert out.is_file()


def test_eval_never_writes_over_a_runs_log_or_its_inputs(work, tiny_config, capsys):
    before = tree(work / "run")
    cfg = str(tiny_config("exp"))
    ckpt = str(work / "run/best.pt")
    eval_ = ("eval", cfg, "--checkpoint", ckpt)
    err = refused(capsys, *eval_, "--out", str(work / "run/metrics.jsonl"))
    assert "one of the run's own files" in err
    assert "is the config" in refused(capsys, *eval_, "--out", cfg)
    assert "is a folder" in refused(capsys, *eval_, "--json", str(work / "images"))
    err = refused(capsys, *eval_, "--out", "same.json", "--json", "same.json")
    assert "--json and --out name the same path" in err
    results = work / "results.json"
    results.write_text("[]")
    err = refused(
        capsys, "eval", "--dataset", str(work / "ds.yaml"), "--results", str(results),
        "--json", str(results),
    )  # fmt: skip
    assert "is the results" in err
    assert tree(work / "run") == before and results.read_text() == "[]"


def test_export_import_and_kitti_eval_never_write_over_their_inputs(work, tiny_config, capsys):
    cfg = str(tiny_config("exp"))
    before = tree(work)
    ckpt = str(work / "run/final.pt")
    assert "is the checkpoint" in refused(capsys, "export", ckpt, "--out", ckpt)
    assert "one of the run's own files" in refused(
        capsys, "export", ckpt, "--out", str(work / "run/best.pt")
    )
    assert "is the config" in refused(capsys, "import-mmdet", ckpt, "--config", cfg, "--out", cfg)
    labels = work / "kitti/training/label_2"
    err = refused(
        capsys, "kitti-eval", "--labels", str(labels), "--results", str(labels),
        "--json", str(labels / "000000.txt"),
    )  # fmt: skip
    assert "is a file of the dataset" in err
    assert tree(work) == before


def test_the_guard_lets_ordinary_outputs_through(work):
    ckpt = work / "run/final.pt"
    inputs = [Input(ckpt, "checkpoint"), Input(work / "images", "image folder", images=True)]
    check_outputs(
        [
            Output(work / "predictions.json", "--out"),
            Output(work / "run/eval/detections.json", "--out"),  # eval's default, beside it
            Output(work / "drawn", "--draw", folder=True, per_image=True),
            Output(work / "new/deeper/out.json", "--json"),
        ],
        inputs,
    )
    with pytest.raises(OutputPathError) as both:
        check_outputs([Output(ckpt, "--out"), Output(work / "images", "--json")], inputs)
    assert str(both.value).startswith("nothing written:") and str(both.value).count("\n") == 2
