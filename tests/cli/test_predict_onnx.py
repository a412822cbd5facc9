"""`liafkd predict MODEL.onnx`: an exported student run by onnxruntime, decoded from the
file's own metadata, gives the detections of its checkpoint; the plain onnxruntime
snippet of docs/deploy.md runs as written and gives `predict`'s boxes, clipped alike."""

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from liafkd.cli.main import main
from liafkd.config import AugmentConfig, ModelConfig
from liafkd.engine.build import build_student

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the `export` extra")
DEPLOY_PAGE = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
CLASSES = ["cell", "dot"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny random GFL checkpoint (its preprocessing recorded), three images (one of
    the model's input size, two of other shapes, c.png padded after resizing) and its two
    ONNX exports, their .json descriptions deleted: only the metadata inside the files
    remains."""
    root = tmp_path_factory.mktemp("onnx_predict")
    cfg = ModelConfig(type="gfl", depth=18, width=8, fpn_channels=16, head_convs=1)
    cfg = cfg.model_copy(update={"head_channels": 16})
    torch.manual_seed(0)
    meta = {
        "model_cfg": cfg.model_dump(mode="json"),
        "class_names": CLASSES,
        "augment": AugmentConfig(image_size=[96, 160]).model_dump(mode="json"),
    }
    ckpt = root / "final.pt"
    torch.save({"model": build_student(cfg, len(CLASSES)).state_dict(), "meta": meta}, ckpt)
    for name, (h, w) in {"a.png": (96, 160), "b.png": (120, 90), "c.png": (70, 100)}.items():
        y, x = np.mgrid[0:h, 0:w]
        img = np.stack([x * 255 / w, y * 255 / h, np.full_like(x, 128.0)], -1)
        img[h // 4 : h // 2, w // 4 : w // 2] = [250, 30, 30]
        Image.fromarray(img.astype(np.uint8)).save(root / name)
    models = {}
    for nms in ("outside", "inside"):
        out = root / f"{nms}.onnx"
        argv = ["export", str(ckpt), "--nms", nms, "--out", str(out), "--score-thr", "0.001"]
        assert main(argv) == 0
        Path(f"{out}.json").unlink()
        models[nms] = out
    return root, ckpt, models


def predictions(root: Path, model: Path, out: str, *extra: str) -> list[dict]:
    """Detections on the three images: c.png (70x100) resizes to 96x137 and is padded to
    96x160, where clipping boxes to the padded input rather than to the image changes
    which overlapping boxes NMS keeps."""
    images = [str(root / name) for name in ("a.png", "b.png", "c.png")]
    argv = ["predict", str(model), *images]
    assert main(argv + ["--out", str(root / out), *extra]) == 0
    return json.loads((root / out).read_text())


def assert_same(ours: list[dict], reference: list[dict]) -> None:
    assert len(ours) == len(reference) > 0
    for a, b in zip(ours, reference, strict=True):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
        assert a["bbox"] == pytest.approx(b["bbox"], abs=1e-2)


@pytest.mark.parametrize("nms", ["outside", "inside"])
def test_onnx_predict_equals_the_checkpoint(setup, nms):
    root, ckpt, models = setup
    reference = predictions(root, ckpt, "pt.json", "--score-thr", "0.001")
    thr = ["--score-thr", "0.001"] if nms == "outside" else []  # inside: the graph's own
    assert_same(predictions(root, models[nms], f"{nms}.json", *thr), reference)


def test_metadata_holds_the_postprocessing(setup):
    _, _, models = setup
    session = ort.InferenceSession(str(models["outside"]), providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["liafkd"])
    assert meta["class_names"] == CLASSES
    assert meta["preprocess"]["image_size"] == [96, 160]
    post = meta["postprocess"]
    assert post["strides"] == [8, 16, 32, 64, 128] and post["reg_max"] == 16
    assert post["score_thr"] == 0.001 and {"nms_iou", "max_dets"} <= set(post)


def test_a_file_that_is_no_onnx_model_is_named_as_such(tmp_path, capsys):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    Image.new("RGB", (32, 32)).save(tmp_path / "x.png")
    assert main(["predict", str(bad), str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "onnxruntime cannot load it" in err and "pickle" not in err


def test_deploy_snippet_runs_as_written(setup, monkeypatch):
    root, ckpt, models = setup
    code = re.search(
        r"<!-- onnx-snippet:start -->\n```python\n(.*?)```", DEPLOY_PAGE.read_text(), re.S
    ).group(1)
    work = root / "snippet"
    work.mkdir(exist_ok=True)
    (work / "final.onnx").write_bytes(models["inside"].read_bytes())
    # c.png resizes to 96 x 137, padded to 96 x 160: boxes reaching into the padding
    # end outside the photo unless clipped
    Image.open(root / "c.png").save(work / "photo.jpg", format="PNG")  # lossless content
    monkeypatch.chdir(work)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "deploy.md snippet", "exec"), {})
    lines = printed.getvalue().splitlines()
    argv = ["predict", str(models["inside"]), str(root / "c.png")]  # the same graph
    assert main([*argv, "--out", str(root / "c.json")]) == 0
    reference = json.loads((root / "c.json").read_text())
    assert len(lines) == len(reference) > 0
    width, height = Image.open(root / "c.png").size
    assert any(d["bbox"][0] + d["bbox"][2] > width - 0.5 for d in reference)  # clipping matters
    for line, det in zip(lines, reference, strict=True):  # every box, clipped as predict's
        x, y, w, h = det["bbox"]
        name, score, *box = line.replace("[", " ").replace("]", " ").split()
        assert name == CLASSES[det["category_id"] - 1]
        assert float(score) == pytest.approx(det["score"], abs=1e-3)
        assert [float(v) for v in box] == pytest.approx([x, y, x + w, y + h], abs=0.06)
        x1, y1, x2, y2 = (float(v) for v in box)
        assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height
