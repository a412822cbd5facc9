"""The trained student alone, as a deployable graph: ONNX (onnxruntime) or TorchScript.

A liafkd checkpoint (`final.pt`, `best.pt`) holds only the student; the teacher, adapters
and selector never reach it. Two graphs can be exported:

- post-processing outside (`DenseStudent`): images [B, 3, H, W] -> scores [B, L, K]
  (sigmoid) and boxes [B, L, 4] (xyxy input pixels, clipped to the input), one row per
  location of every FPN level (P3 first, row-major). `postprocess` turns them into the
  detections `GFL.predict` gives.
- post-processing inside (`StudentDetections`): one image [1, 3, H, W] and its valid
  size `image_size` [2] (int64 height, width in input pixels, before the padding) ->
  boxes [N, 4], scores [N], labels [N] after the score threshold, the per-level top-k,
  boxes clipped to `image_size`, class-wise NMS and `max_dets`: what `GFL.predict` gives
  for that image, padded or not.

Inputs are what the loader feeds the detector: RGB resized keeping the aspect ratio,
scaled to [0, 1], normalised with the config's mean/std; any H and W (the trace keeps
batch and image sizes dynamic; the loader pads to multiples of 32).

ONNX goes through the TorchScript-based exporter (`dynamo=False`): torch's default
dynamo exporter needs the `onnxscript` package, and torchvision's NMS has an ONNX
(NonMaxSuppression) symbolic for the TorchScript-based one.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms

from liafkd import __version__
from liafkd.config import AugmentConfig, ModelConfig
from liafkd.engine.checkpoint import CheckpointError, load_checkpoint, load_state_dict_reporting
from liafkd.models.assigner import make_points
from liafkd.models.box_coder import integral
from liafkd.models.gfl import GFL, PRE_NMS_TOPK
from liafkd.outputs import write_text_atomic

ONNX_OPSET = 17
METADATA_KEY = "liafkd"  # the ONNX metadata_props key holding the export's description


def load_student(
    checkpoint: str | Path, score_thr: float | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """The student a liafkd checkpoint holds, rebuilt from its own `meta` (model config and
    class names), in eval mode; `score_thr` replaces the model's score threshold."""
    ckpt = load_checkpoint(checkpoint)
    meta = ckpt.get("meta") or {}
    missing = [key for key in ("model_cfg", "class_names") if key not in meta]
    if missing or "model" not in ckpt:
        raise CheckpointError(
            f"{checkpoint}: not a liafkd model checkpoint (lacks "
            f"{', '.join(['meta.' + k for k in missing] or ['model'])}); "
            "use the final.pt or best.pt of a `liafkd train` or `liafkd distill` run"
        )
    from liafkd.engine.build import build_student

    model_cfg = dict(meta["model_cfg"])
    if score_thr is not None:
        model_cfg["score_thr"] = score_thr
    detector = build_student(ModelConfig(**model_cfg), len(meta["class_names"]))
    load_state_dict_reporting(detector, ckpt["model"], str(checkpoint))
    return detector.eval(), meta


def _require_gfl(detector: nn.Module) -> None:
    """The graphs decode GFL's box distributions; other heads decode differently."""
    if not isinstance(detector, GFL):
        raise ValueError(
            f"liafkd export supports GFL students; this checkpoint holds a "
            f"{type(detector).__name__} (use `liafkd predict` for it)"
        )


def level_outputs(detector: nn.Module, images: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Per FPN level: scores [B, HW, K] (sigmoid) and boxes [B, HW, 4] (xyxy input
    pixels, not clipped), computed as `GFL.predict` does. Level sizes come from the
    feature shapes, so a trace keeps them dynamic."""
    head = detector.forward_head(detector.extract_feats(images))
    outputs = []
    for cls_map, box_map, stride in zip(
        head.cls_logits, head.box_dists, detector.strides, strict=True
    ):
        scores = cls_map.float().sigmoid().flatten(2).transpose(1, 2)
        points, strides = make_points([cls_map.shape[-2:]], [stride], images.device)
        box_logits = box_map.float().flatten(2).transpose(1, 2)
        distances = integral(box_logits, detector.reg_max) * strides[:, None]
        boxes = torch.cat((points - distances[..., :2], points + distances[..., 2:]), dim=-1)
        outputs.append((scores, boxes))
    return outputs


def clip_boxes(boxes: Tensor, height: Any, width: Any) -> Tensor:
    """Boxes [..., 4] clipped to [0, width] x [0, height]; the sizes may be ints or (in a
    trace) 0-dim tensors, which keeps them dynamic."""
    limits = torch.stack([torch.as_tensor(v) for v in (width, height, width, height)])
    return torch.minimum(boxes.clamp(min=0), limits.to(boxes))


def select_detections(
    level_scores: Sequence[Tensor],
    level_boxes: Sequence[Tensor],
    image_size: tuple[Any, Any],
    score_thr: float,
    nms_iou: float,
    max_dets: int,
    pre_nms_topk: int = PRE_NMS_TOPK,
) -> tuple[Tensor, Tensor, Tensor]:
    """One image's detections from its per-level scores [HW, K] and boxes [HW, 4], as
    `GFL.predict`: (location, class) pairs above `score_thr`, the `pre_nms_topk` best per
    level, boxes clipped to `image_size` (h, w), class-wise NMS, the `max_dets` best.
    Written so a trace keeps every count dynamic."""
    boxes, scores, labels = [], [], []
    for level_score, level_box in zip(level_scores, level_boxes, strict=True):
        num_classes = level_score.shape[1]
        flat = level_score.reshape(-1)
        candidates = torch.nonzero(flat > score_thr).squeeze(1)
        keep = torch.clamp(torch.as_tensor(candidates.shape[0]), max=pre_nms_topk)
        candidates = candidates[flat[candidates].topk(keep).indices]
        boxes.append(level_box[candidates // num_classes])
        scores.append(flat[candidates])
        labels.append(candidates % num_classes)
    boxes_all = clip_boxes(torch.cat(boxes), *image_size)
    scores_all, labels_all = torch.cat(scores), torch.cat(labels)
    keep = batched_nms(boxes_all, scores_all, labels_all, nms_iou)[:max_dets]
    return boxes_all[keep], scores_all[keep], labels_all[keep]


class DenseStudent(nn.Module):
    """Post-processing outside: images -> (scores [B, L, K], boxes [B, L, 4])."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        _require_gfl(detector)
        self.detector = detector

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        levels = level_outputs(self.detector, images)
        scores = torch.cat([scores for scores, _ in levels], dim=1)
        boxes = torch.cat([boxes for _, boxes in levels], dim=1)
        return scores, clip_boxes(boxes, images.shape[-2], images.shape[-1])


class StudentDetections(nn.Module):
    """Post-processing inside: one image [1, 3, H, W] and its valid (height, width)
    `image_size` [2] -> (boxes [N, 4], scores [N], labels [N]), with the detector's own
    score threshold, NMS IoU and max_dets. Boxes are clipped to `image_size` before NMS,
    as `GFL.predict` clips them to the image_sizes it is given: clipping to the padded
    input instead would change the overlaps NMS sees."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        _require_gfl(detector)
        self.detector = detector

    def forward(self, images: Tensor, image_size: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if not torch.jit.is_tracing() and images.shape[0] != 1:
            raise ValueError(f"StudentDetections takes one image, got a batch of {images.shape[0]}")
        if not torch.jit.is_tracing() and tuple(image_size.shape) != (2,):
            raise ValueError(
                f"image_size must be [height, width], got a tensor of shape "
                f"{list(image_size.shape)}"
            )
        levels = level_outputs(self.detector, images)
        cfg = self.detector.cfg
        return select_detections(
            [scores[0] for scores, _ in levels],
            [boxes[0] for _, boxes in levels],
            (image_size[0], image_size[1]),
            cfg.score_thr,
            cfg.nms_iou,
            cfg.max_dets,
        )


def level_counts(input_size: tuple[int, int], strides: Sequence[int]) -> list[int]:
    """Locations per level of an input of `input_size` (h, w): ceil(h/s) * ceil(w/s)."""
    height, width = input_size
    return [-(-height // s) * -(-width // s) for s in strides]


def postprocess(
    scores: Tensor,
    boxes: Tensor,
    input_size: tuple[int, int],
    image_sizes: Sequence[tuple[int, int]],
    model_cfg: ModelConfig,
) -> list[dict[str, Tensor]]:
    """Detections per image from `DenseStudent` outputs for a batch of padded size
    `input_size` (h, w); `image_sizes` are the images' valid (h, w) before padding.
    Gives what `GFL.predict(images, image_sizes)` gives (up to the order of equal scores)."""
    return postprocess_dense(
        scores,
        boxes,
        input_size,
        image_sizes,
        strides=model_cfg.strides,
        score_thr=model_cfg.score_thr,
        nms_iou=model_cfg.nms_iou,
        max_dets=model_cfg.max_dets,
    )


def postprocess_dense(
    scores: Tensor,
    boxes: Tensor,
    input_size: tuple[int, int],
    image_sizes: Sequence[tuple[int, int]],
    strides: Sequence[int],
    score_thr: float,
    nms_iou: float,
    max_dets: int,
    pre_nms_topk: int = PRE_NMS_TOPK,
) -> list[dict[str, Tensor]]:
    """`postprocess` from the numbers alone (as an export's metadata records them)."""
    counts = level_counts(input_size, strides)
    if sum(counts) != scores.shape[1]:
        raise ValueError(
            f"{scores.shape[1]} locations, but a {input_size[0]}x{input_size[1]} input has "
            f"{sum(counts)}"
        )
    detections = []
    for image_scores, image_boxes, size in zip(scores, boxes, image_sizes, strict=True):
        picked = select_detections(
            image_scores.split(counts),
            image_boxes.split(counts),
            size,
            score_thr,
            nms_iou,
            max_dets,
            pre_nms_topk,
        )
        detections.append(dict(zip(("boxes", "scores", "labels"), picked, strict=True)))
    return detections


Format = Literal["onnx", "torchscript"]

IMAGE_SIZE_INPUT = (
    "image_size [2] int64: the image's (height, width) in input pixels after resizing, "
    "before the padding; boxes are clipped to it before NMS"
)


# ONNX input/output names with their dynamic axes, per graph: first the inputs (as many
# as the graph's forward takes), then the outputs
DENSE_AXES = {
    "images": {0: "batch", 2: "height", 3: "width"},
    "scores": {0: "batch", 1: "locations"},
    "boxes": {0: "batch", 1: "locations"},
}
DETECTION_AXES = {
    "images": {2: "height", 3: "width"},
    "image_size": {},
    "boxes": {0: "detections"},
    "scores": {0: "detections"},
    "labels": {0: "detections"},
}


def export_graph(
    module: nn.Module,
    examples: tuple[Tensor, ...],
    path: Path,
    fmt: Format,
    axes: dict[str, dict[int, str]],
) -> None:
    """Trace `module` on the inputs `examples` and write it as TorchScript, or as ONNX with
    the named inputs then outputs of `axes` and their dynamic axes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer's notes on data-dependent counts (nonzero, topk) are expected: the
        # traced graph computes them, as the equality tests check
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # torch 2.14 marks TorchScript deprecated; the TorchScript-based ONNX exporter
        # (see module doc) and `--format torchscript` still use it
        warnings.simplefilter("ignore", FutureWarning)
        if fmt == "torchscript":
            torch.jit.trace(module, examples, check_trace=False).save(str(path))
            return
        warnings.simplefilter("ignore", DeprecationWarning)  # dynamo=False, see module doc
        names = list(axes)
        torch.onnx.export(
            module,
            examples,
            str(path),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=names[: len(examples)],
            output_names=names[len(examples) :],
            dynamic_axes=axes,
        )
    import onnx

    onnx.checker.check_model(str(path))


def write_onnx_metadata(path: str | Path, description: dict[str, Any]) -> None:
    """Store `description` in the ONNX file's metadata_props["liafkd"] (JSON), and the
    class names alone under "class_names" for tools that list metadata."""
    import onnx

    model = onnx.load(str(path))
    props = {
        METADATA_KEY: json.dumps(description),
        "class_names": json.dumps(description["class_names"]),
    }
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(path))


def export_student(
    checkpoint: str | Path,
    out: str | Path,
    fmt: Format,
    nms: Literal["inside", "outside"],
    aug: AugmentConfig,
    score_thr: float | None = None,
) -> dict[str, Any]:
    """Write the student of `checkpoint` to `out` and its description (classes, inputs,
    outputs, preprocessing, post-processing) to `out` + ".json" and, for ONNX, into the
    model's own metadata (`metadata_props["liafkd"]`, JSON), so that the file alone is
    enough to decode its outputs (`liafkd predict model.onnx`, or plain onnxruntime);
    returns the description. `score_thr` replaces the model's score threshold in the
    post-processing (inside the graph with NMS inside, in the description otherwise)."""
    detector, meta = load_student(checkpoint, score_thr)
    out = Path(out)
    if nms == "inside":
        module: nn.Module = StudentDetections(detector)
        axes = DETECTION_AXES
        outputs = {
            "boxes": "[N, 4] xyxy input pixels, clipped to image_size",
            "scores": "[N]",
            "labels": "[N] int64 class index",
        }
    else:
        module = DenseStudent(detector)
        axes = DENSE_AXES
        outputs = {
            "scores": "[B, L, K] sigmoid class-quality scores",
            "boxes": "[B, L, 4] xyxy input pixels, clipped to the input",
        }
    height, width = (-(-s // aug.size_divisor) * aug.size_divisor for s in aug.image_size)
    examples: tuple[Tensor, ...] = (torch.zeros(1, 3, height, width),)
    if nms == "inside":
        examples += (torch.tensor([height, width]),)
    export_graph(module, examples, out, fmt, axes)
    cfg = detector.cfg
    description = {
        "format": fmt,
        "nms": nms,
        "liafkd_version": __version__,
        "model_type": cfg.type,
        "checkpoint": str(checkpoint),
        "class_names": list(meta["class_names"]),
        "input": "images [1 if nms inside else B, 3, H, W] float32 RGB, resized keeping the "
        "aspect ratio to fit preprocess.image_size (short, long), scaled to [0, 1], "
        "normalised with preprocess.mean/std, zero-padded at the bottom and right",
        **({"image_size_input": IMAGE_SIZE_INPUT} if nms == "inside" else {}),
        "outputs": outputs,
        "preprocess": aug.model_dump(
            mode="json", include={"image_size", "mean", "std", "size_divisor"}
        ),
        "input_size_exported": [height, width],
        "postprocess": {
            "score_thr": cfg.score_thr,
            "nms_iou": cfg.nms_iou,
            "max_dets": cfg.max_dets,
            "pre_nms_topk_per_level": PRE_NMS_TOPK,
            "strides": list(cfg.strides),
            "reg_max": cfg.reg_max,
            "boxes_decoded_in_graph": True,
        },
    }
    write_text_atomic(f"{out}.json", json.dumps(description, indent=2))
    if fmt == "onnx":
        write_onnx_metadata(out, description)
    return description
