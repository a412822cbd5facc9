"""Export a trained student to ONNX and check it in onnxruntime on real validation images.

    python benchmarks/onnx_check.py RUN/final.pt CONFIG.yaml [--out RESULT.json]

Runs `liafkd export` (post-processing outside the graph), feeds the config's first
validation batches through PyTorch and onnxruntime, and writes the max abs differences of
the scores and boxes before NMS, the detections after `postprocess`, and the latencies.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from liafkd.cli.main import main as liafkd_main
from liafkd.config import load_config
from liafkd.data.dataset import build_loader
from liafkd.engine.build import load_index
from liafkd.export import DenseStudent, load_student, postprocess


def run(checkpoint: str, config: str, out: Path, batches: int) -> dict:
    onnx_path = out.with_suffix(".onnx")
    args = ["export", checkpoint, "--format", "onnx", "--out", str(onnx_path), "--config", config]
    assert liafkd_main(args) == 0
    cfg = load_config(config)
    index = load_index(cfg.data.val, "data.val")
    loader = build_loader(index, cfg.data.augment, cfg.data.batch_size, False, 0, 0)
    detector, _ = load_student(checkpoint)
    dense = DenseStudent(detector).eval()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    score_diff = box_diff = 0.0
    same_detections = True
    torch_s = onnx_s = 0.0
    images_seen = 0
    for step, (images, _targets, sizes) in enumerate(loader):
        if step == batches:
            break
        tic = time.perf_counter()
        with torch.no_grad():
            scores, boxes = dense(images)
            ours = detector.predict(images, sizes)
        torch_s += time.perf_counter() - tic
        tic = time.perf_counter()
        onnx_scores, onnx_boxes = session.run(["scores", "boxes"], {"images": images.numpy()})
        onnx_s += time.perf_counter() - tic
        score_diff = max(score_diff, float(np.abs(onnx_scores - scores.numpy()).max()))
        box_diff = max(box_diff, float(np.abs(onnx_boxes - boxes.numpy()).max()))
        theirs = postprocess(
            torch.from_numpy(onnx_scores),
            torch.from_numpy(onnx_boxes),
            tuple(images.shape[-2:]),
            sizes,
            detector.cfg,
        )
        for a, b in zip(ours, theirs, strict=True):
            same_detections &= a["labels"].tolist() == b["labels"].tolist()
            same_detections &= bool(torch.allclose(a["boxes"], b["boxes"], atol=1e-3))
        images_seen += images.shape[0]
    return {
        "checkpoint": checkpoint,
        "config": config,
        "onnx": str(onnx_path),
        "images": images_seen,
        "max_abs_diff_scores_before_nms": score_diff,
        "max_abs_diff_boxes_before_nms": box_diff,
        "same_detections_after_nms": bool(same_detections),
        "pytorch_s_per_image": torch_s / max(1, images_seen),
        "onnxruntime_s_per_image": onnx_s / max(1, images_seen),
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__},
        "machine": platform.processor() or platform.machine(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("config")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/onnx_check.json"))
    parser.add_argument("--batches", type=int, default=4)
    a = parser.parse_args()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    result = run(a.checkpoint, a.config, a.out, a.batches)
    a.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
