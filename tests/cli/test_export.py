"""`liafkd export`: the student alone as ONNX / TorchScript, equal to PyTorch's outputs."""

import json
import warnings

import numpy as np
import pytest
import torch
import yaml

from liafkd.cli.main import main
from liafkd.config import ModelConfig
from liafkd.engine.build import build_student
from liafkd.export import (
    DenseStudent,
    level_counts,
    load_student,
    postprocess,
    select_detections,
)

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the `export` extra")


def student_checkpoint(runs) -> str:
    return f"{yaml.safe_load(runs['liaf'].read_text())['output_dir']}/final.pt"


@pytest.fixture(scope="module")
def exported(tiny_distill_runs, tmp_path_factory):
    """{(format, nms): path} of the tiny LIAF-KD student exported four ways."""
    out = tmp_path_factory.mktemp("export")
    paths = {}
    for fmt, suffix in (("onnx", "onnx"), ("torchscript", "pt")):
        for nms in ("outside", "inside"):
            path = out / f"student_{nms}.{suffix}"
            argv = ["export", student_checkpoint(tiny_distill_runs), "--format", fmt]
            argv += ["--nms", nms, "--out", str(path), "--config", str(tiny_distill_runs["liaf"])]
            assert main(argv + ["--score-thr", "0.01"]) == 0
            paths[fmt, nms] = path
    return paths


def images(*shape) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))


def load_torchscript(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 deprecates TorchScript
        return torch.jit.load(str(path))


def test_onnx_scores_and_boxes_match_pytorch_before_nms(exported, tiny_distill_runs):
    detector, _ = load_student(student_checkpoint(tiny_distill_runs))
    session = ort.InferenceSession(
        str(exported["onnx", "outside"]), providers=["CPUExecutionProvider"]
    )
    for shape in ((2, 3, 96, 160), (1, 3, 128, 64)):  # dynamic batch and image size
        x = images(*shape)
        with torch.no_grad():
            scores, boxes = DenseStudent(detector)(x)
        onnx_scores, onnx_boxes = session.run(["scores", "boxes"], {"images": x.numpy()})
        assert onnx_scores.shape == tuple(scores.shape)
        assert onnx_boxes.shape == (shape[0], sum(level_counts(shape[2:], detector.strides)), 4)
        assert np.abs(onnx_scores - scores.numpy()).max() < 1e-4
        assert np.abs(onnx_boxes - boxes.numpy()).max() < 1e-4


def test_description_written_beside_the_model(exported):
    description = json.loads(exported["onnx", "outside"].with_suffix(".onnx.json").read_text())
    assert description["class_names"] == ["Car", "Pedestrian", "Cyclist"]
    assert description["preprocess"]["image_size"] == [96, 160]
    assert description["postprocess"]["score_thr"] == 0.01
    assert list(description["outputs"]) == ["scores", "boxes"]


def assert_same_detections(ours, theirs) -> None:
    boxes, scores, labels = (torch.as_tensor(np.asarray(v)) for v in ours)
    assert labels.tolist() == theirs["labels"].tolist()
    torch.testing.assert_close(scores, theirs["scores"], atol=1e-5, rtol=0)
    torch.testing.assert_close(boxes, theirs["boxes"], atol=1e-3, rtol=0)


def test_onnx_outputs_postprocessed_equal_predict(exported, tiny_distill_runs):
    detector, _ = load_student(student_checkpoint(tiny_distill_runs), score_thr=0.01)
    session = ort.InferenceSession(
        str(exported["onnx", "outside"]), providers=["CPUExecutionProvider"]
    )
    x = images(2, 3, 96, 160)
    sizes = [(96, 150), (80, 160)]  # valid regions of padded images
    scores, boxes = (torch.from_numpy(a) for a in session.run(None, {"images": x.numpy()}))
    ours = postprocess(scores, boxes, (96, 160), sizes, detector.cfg)
    theirs = detector.predict(x, sizes)
    assert all(len(t["scores"]) > 0 for t in theirs)
    for mine, ref in zip(ours, theirs, strict=True):
        assert_same_detections((mine["boxes"], mine["scores"], mine["labels"]), ref)


def test_nms_inside_onnx_and_torchscript_equal_predict(exported, tiny_distill_runs):
    detector, _ = load_student(student_checkpoint(tiny_distill_runs), score_thr=0.01)
    session = ort.InferenceSession(
        str(exported["onnx", "inside"]), providers=["CPUExecutionProvider"]
    )
    scripted = load_torchscript(exported["torchscript", "inside"])
    # (input shape, the image's valid size): unpadded, and padded after resizing
    for shape, size in (
        ((1, 3, 96, 160), (96, 160)),
        ((1, 3, 64, 128), (64, 128)),
        ((1, 3, 96, 160), (70, 137)),
        ((1, 3, 128, 96), (128, 75)),
    ):
        x = images(*shape)
        (reference,) = detector.predict(x, [size])
        assert len(reference["scores"]) > 0
        image_size = torch.tensor(size)
        assert_same_detections(
            session.run(None, {"images": x.numpy(), "image_size": image_size.numpy()}),
            reference,
        )
        with torch.no_grad():
            assert_same_detections(scripted(x, image_size), reference)


def test_onnx_input_and_output_names_are_the_documented_ones(exported):
    names = {}
    for nms in ("outside", "inside"):
        session = ort.InferenceSession(
            str(exported["onnx", nms]), providers=["CPUExecutionProvider"]
        )
        names[nms] = (
            [(i.name, i.type) for i in session.get_inputs()],
            [o.name for o in session.get_outputs()],
        )
    assert names["outside"] == ([("images", "tensor(float)")], ["scores", "boxes"])
    assert names["inside"] == (
        [("images", "tensor(float)"), ("image_size", "tensor(int64)")],
        ["boxes", "scores", "labels"],
    )


def test_torchscript_dense_equals_pytorch(exported, tiny_distill_runs):
    detector, _ = load_student(student_checkpoint(tiny_distill_runs))
    scripted = load_torchscript(exported["torchscript", "outside"])
    x = images(2, 3, 64, 96)
    with torch.no_grad():
        for ours, theirs in zip(scripted(x), DenseStudent(detector)(x), strict=True):
            torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_export_refuses_a_file_without_a_model(tmp_path, capsys):
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, path)
    assert main(["export", str(path), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "not a liafkd model checkpoint" in capsys.readouterr().err


def test_export_refuses_a_non_gfl_student(tmp_path, capsys):
    model_cfg = ModelConfig(
        type="retinanet", depth=18, width=8, fpn_channels=16, head_channels=16, head_convs=1
    )
    path = tmp_path / "retinanet.pt"
    meta = {"class_names": ["a"], "model_cfg": model_cfg.model_dump(mode="json")}
    torch.save({"model": build_student(model_cfg, 1).state_dict(), "meta": meta}, path)
    assert main(["export", str(path), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "export supports GFL students; this checkpoint holds a TorchvisionRetinaNet" in (
        capsys.readouterr().err
    )


def test_level_counts_of_a_96x160_input():
    # strides 8..128: 12x20 + 6x10 + 3x5 + 2x3 + 1x2
    assert level_counts((96, 160), (8, 16, 32, 64, 128)) == [240, 60, 15, 6, 2]


def test_select_detections_threshold_topk_clip_and_classwise_nms():
    # level 0: three locations, two classes; level 1: one location
    scores = [
        torch.tensor([[0.9, 0.0], [0.8, 0.7], [0.02, 0.6]]),
        torch.tensor([[0.5, 0.0]]),
    ]
    boxes = [
        torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [-5.0, 20.0, 30.0, 60.0]]),
        torch.tensor([[50.0, 50.0, 60.0, 60.0]]),
    ]
    kept_boxes, kept_scores, labels = select_detections(
        scores, boxes, (40, 25), score_thr=0.05, nms_iou=0.5, max_dets=10, pre_nms_topk=4
    )
    # class 0: 0.9 suppresses 0.8 (IoU 81/119); class 1: 0.7 and 0.6 do not overlap;
    # the level-1 box lies outside the 25x40 image and clips to a zero-area box
    assert kept_scores.tolist() == pytest.approx([0.9, 0.7, 0.6, 0.5])
    assert labels.tolist() == [0, 1, 1, 0]
    assert kept_boxes[2].tolist() == [0.0, 20.0, 25.0, 40.0]
    assert kept_boxes[3].tolist() == [25.0, 40.0, 25.0, 40.0]
    # per-level top-k: only the best 2 pairs of level 0 (0.9, 0.8) reach NMS
    _, top_scores, _ = select_detections(
        scores, boxes, (40, 25), score_thr=0.05, nms_iou=0.5, max_dets=10, pre_nms_topk=2
    )
    assert top_scores.tolist() == pytest.approx([0.9, 0.5])
    _, best_scores, _ = select_detections(
        scores, boxes, (40, 25), score_thr=0.05, nms_iou=0.5, max_dets=2, pre_nms_topk=4
    )
    assert best_scores.tolist() == pytest.approx([0.9, 0.7])


def test_postprocess_checks_the_location_count():
    with pytest.raises(ValueError, match="322 locations, but a 96x160 input has 323"):
        postprocess(
            torch.zeros(1, 322, 3), torch.zeros(1, 322, 4), (96, 160), [(96, 160)], ModelConfig()
        )


def test_export_without_config_uses_the_preprocessing_the_checkpoint_recorded(
    tiny_distill_runs, tmp_path, capsys
):
    out = tmp_path / "student.onnx"
    assert main(["export", student_checkpoint(tiny_distill_runs), "--out", str(out)]) == 0
    assert "assuming the default preprocessing" not in capsys.readouterr().out
    description = json.loads(out.with_suffix(".onnx.json").read_text())
    assert description["preprocess"]["image_size"] == [96, 160]
