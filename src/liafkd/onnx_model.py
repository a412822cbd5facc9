"""An exported ONNX student as a detector: what `liafkd predict model.onnx` runs.

`liafkd export --format onnx` writes the model's description (class names,
preprocessing, post-processing: strides, score threshold, NMS IoU, max detections,
reg_max, ...) into the ONNX file's `metadata_props` under the key "liafkd" (JSON). That is
all needed to decode the outputs: no liafkd config or checkpoint. `OnnxDetector` runs the
graph in onnxruntime and applies the post-processing the graph leaves out, giving the
detections `GFL.predict` gives for the same input.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from liafkd.config import ConfigError
from liafkd.export import METADATA_KEY, clip_boxes, postprocess_dense


def _session(path: Path, threads: int | None):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError(
            f"{path}: running an ONNX model needs onnxruntime: "
            'python3 -m pip install onnxruntime (or liafkd\'s extra: pip install -e ".[export]")'
        ) from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own error types
        raise ConfigError(f"{path}: onnxruntime cannot load it: {e}") from None


def read_description(path: str | Path, session: Any) -> dict[str, Any]:
    """The export's description: from the model's metadata, else from the `.onnx.json`
    file an older liafkd wrote beside it."""
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if raw is not None:
        return json.loads(raw)
    beside = Path(f"{path}.json")
    if beside.is_file():
        return json.loads(beside.read_text())
    raise ConfigError(
        f"{path}: no liafkd metadata in the model (metadata_props['{METADATA_KEY}']) and no "
        f"{beside.name} beside it: export it with `liafkd export CKPT --format onnx`"
    )


class OnnxDetector(nn.Module):
    """`predict(images, image_sizes)` of an exported student, run by onnxruntime.
    Holds no parameters; `to()`, `eval()` and `train()` change nothing that matters."""

    def __init__(
        self,
        session: Any,
        description: dict[str, Any],
        score_thr: float | None = None,
    ) -> None:
        super().__init__()
        self.session = session
        self.description = description
        self.post = dict(description["postprocess"])
        self.nms = description.get("nms", "outside")
        self.graph_score_thr = float(self.post["score_thr"])
        # exports before liafkd took the valid size as an input clip to the padded input
        self.takes_image_size = "image_size" in {i.name for i in session.get_inputs()}
        if score_thr is not None:
            self.post["score_thr"] = score_thr

    def predict(
        self, images: Tensor, image_sizes: Sequence[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        batch = images.detach().float().cpu().numpy()
        if self.nms == "outside":
            scores, boxes = self.session.run(["scores", "boxes"], {"images": batch})
            return postprocess_dense(
                torch.from_numpy(scores),
                torch.from_numpy(boxes),
                tuple(images.shape[-2:]),
                image_sizes,
                strides=self.post["strides"],
                score_thr=float(self.post["score_thr"]),
                nms_iou=float(self.post["nms_iou"]),
                max_dets=int(self.post["max_dets"]),
                pre_nms_topk=int(self.post.get("pre_nms_topk_per_level", 1000)),
            )
        detections = []
        for i, (height, width) in enumerate(image_sizes):  # the graph takes one image
            feed = {"images": batch[i : i + 1]}
            if self.takes_image_size:
                feed["image_size"] = np.array([height, width], dtype=np.int64)
            boxes, scores, labels = (
                torch.from_numpy(out)
                for out in self.session.run(["boxes", "scores", "labels"], feed)
            )
            keep = scores >= float(self.post["score_thr"])
            detections.append(
                {
                    "boxes": clip_boxes(boxes[keep], height, width),
                    "scores": scores[keep],
                    "labels": labels[keep],
                }
            )
        return detections


def load_onnx_detector(
    path: str | Path, score_thr: float | None = None, threads: int | None = None
) -> tuple[OnnxDetector, dict[str, Any]]:
    """The detector of an exported ONNX file and a checkpoint-like `meta` (class names,
    the preprocessing as `augment`), read from the file's own metadata."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    session = _session(path, threads or torch.get_num_threads())
    description = read_description(path, session)
    if score_thr is not None and description.get("nms") == "inside":
        graph_thr = float(description["postprocess"]["score_thr"])
        if score_thr < graph_thr:
            print(
                f"note: {path} applies its score threshold {graph_thr} inside the graph "
                f"(exported with --nms inside); --score-thr {score_thr} cannot go below it"
            )
    meta = {
        "class_names": list(description["class_names"]),
        "augment": dict(description["preprocess"]),
    }
    return OnnxDetector(session, description, score_thr), meta
