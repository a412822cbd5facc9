"""Run a detector over a dataset and score it with the metric of record."""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn

from liafkd.config import AugmentConfig
from liafkd.data.records import DatasetIndex
from liafkd.engine.distributed import (
    all_gather_objects,
    broadcast_object,
    context,
    eval_shard,
    resolve_device,
)
from liafkd.progress import progress as progress_of


@torch.no_grad()
def predict_dataset(
    detector: nn.Module,
    index: DatasetIndex,
    aug: AugmentConfig,
    device: torch.device,
    batch_size: int = 8,
    progress: bool = True,
    drop_unreadable: bool = False,
    desc: str = "eval",
) -> dict[int, dict[str, torch.Tensor]]:
    """Detections per image id, boxes in the original image's pixels (xyxy). Under
    torchrun each process predicts its own whole batches and every process gets all
    the detections, in dataset order, identical to one process's. With
    `drop_unreadable` an image that cannot be decoded is reported (stderr) and has no
    entry."""
    from liafkd.data.dataset import build_loader

    ctx = context()
    shard = eval_shard(len(index.records), batch_size, ctx)
    loader = build_loader(
        index,
        aug,
        batch_size=batch_size,
        train=False,
        num_workers=0,
        seed=0,
        sampler=shard,
        drop_unreadable=drop_unreadable,
    )
    progress = progress and ctx.is_main
    was_training = detector.training
    detector.eval()
    results: dict[int, dict[str, torch.Tensor]] = {}
    for images, targets, sizes in progress_of(loader, desc=desc, enabled=progress):
        for message in getattr(targets, "dropped", ()):
            print(f"skipped an unreadable image: {message}", file=sys.stderr)
        if not targets:
            continue
        dets = predict_by_padded_shape(detector, images, sizes, aug.size_divisor, device)
        for det, target in zip(dets, targets, strict=True):
            sy, sx = target["scale"]
            h, w = target["orig_size"]
            boxes = det["boxes"].cpu() / torch.tensor([sx, sy, sx, sy], dtype=torch.float32)
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
            results[int(target["image_id"])] = {
                "boxes": boxes,
                "scores": det["scores"].cpu(),
                "labels": det["labels"].cpu(),
            }
    detector.train(was_training)
    if not ctx.enabled:
        return results
    merged: dict[int, dict[str, torch.Tensor]] = {}
    for part in all_gather_objects(results):
        merged.update(part)
    return {rid: merged[rid] for rid in (int(r.image_id) for r in index.records) if rid in merged}


def predict_by_padded_shape(
    detector: nn.Module,
    images: torch.Tensor,
    sizes: list[tuple[int, int]],
    size_divisor: int,
    device: torch.device,
) -> list[dict[str, torch.Tensor]]:
    """`detector.predict` on each image padded to its own size rounded up to
    `size_divisor`, never to the batch's largest: images of one padded shape run
    together. The padding then never depends on the other images of the batch, so
    GroupNorm statistics (taken over the padded map) and the detections are those of
    a batch of one, whatever the batch size."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (h, w) in enumerate(sizes):
        shape = (-(-h // size_divisor) * size_divisor, -(-w // size_divisor) * size_divisor)
        groups.setdefault(shape, []).append(i)
    dets: list[dict[str, torch.Tensor]] = [{} for _ in sizes]
    for (height, width), members in groups.items():
        batch = images[members, :, :height, :width].to(device)
        for i, det in zip(
            members, detector.predict(batch, [sizes[i] for i in members]), strict=True
        ):
            dets[i] = det
    return dets


def to_coco_results(dets: dict[int, dict[str, torch.Tensor]]) -> list[dict[str, Any]]:
    """COCO results format; category ids are 1-based in class order (as to_coco_dict)."""
    out = []
    for image_id, det in dets.items():
        for box, score, label in zip(
            det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist(), strict=True
        ):
            x1, y1, x2, y2 = box
            out.append(
                {
                    "image_id": image_id,
                    "category_id": int(label) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(score),
                }
            )
    return out


def kitti_metrics(index: DatasetIndex, dets: dict[int, dict[str, torch.Tensor]]) -> dict[str, Any]:
    """Official KITTI 2D AP (percent) for the KITTI classes the dataset has."""
    from liafkd.evaluation.kitti import (
        KITTI_CLASSES,
        evaluate_kitti,
        frames_from_predictions,
        frames_from_records,
    )

    classes = [c for c in KITTI_CLASSES if c in index.class_names]
    if not classes:
        return {}
    image_ids = [rec.image_id for rec in index.records]
    empty = {"boxes": torch.zeros((0, 4)), "scores": torch.zeros(0), "labels": torch.zeros(0)}
    predictions = [dets.get(i, empty) for i in image_ids]
    dt = frames_from_predictions(predictions, index.class_names, image_ids)
    return evaluate_kitti(frames_from_records(index), dt, classes)


def evaluate_detector(
    detector: nn.Module,
    index: DatasetIndex,
    aug: AugmentConfig,
    device: torch.device,
    batch_size: int = 8,
    kitti: bool = False,
    drop_unreadable: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """COCO metrics (pycocotools), plus the official KITTI 2D metrics under "kitti"
    when asked, and the detections in COCO results format. Under torchrun rank 0 scores
    the gathered detections once and every process returns its result."""
    from liafkd.evaluation.coco import evaluate_coco

    dets = predict_dataset(
        detector, index, aug, device, batch_size, drop_unreadable=drop_unreadable
    )
    coco_dets = to_coco_results(dets)
    metrics = None
    if context().is_main:
        metrics = evaluate_coco(index, coco_dets)
        if kitti:
            metrics["kitti"] = kitti_metrics(index, dets)
    return broadcast_object(metrics), coco_dets


def is_kitti_format(ds_cfg) -> bool:
    return ds_cfg.format in ("kitti", "synthetic")


def load_detector(model_cfg, checkpoint: str, class_names: list[str]) -> nn.Module:
    """Build the detector of `model_cfg` and load a liafkd checkpoint into it strictly,
    refusing one trained on other classes."""
    from liafkd.config import ConfigError
    from liafkd.engine.build import build_student
    from liafkd.engine.checkpoint import load_checkpoint, load_state_dict_reporting

    ckpt = load_checkpoint(checkpoint)
    trained_on = ckpt.get("meta", {}).get("class_names")
    if trained_on is not None and list(trained_on) != list(class_names):
        raise ConfigError(
            f"{checkpoint}: trained on classes {list(trained_on)}, "
            f"but the dataset has {list(class_names)}"
        )
    detector = build_student(model_cfg, len(class_names))
    load_state_dict_reporting(detector, ckpt["model"], str(checkpoint))
    return detector


def evaluate_checkpoint(cfg, checkpoint: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """COCO metrics of a checkpoint on the config's validation split."""
    from liafkd.engine.build import load_index

    index = load_index(cfg.data.val, "data.val")
    device = resolve_device(cfg.train.device)
    detector = load_detector(cfg.model, checkpoint, index.class_names).to(device)
    return evaluate_detector(
        detector,
        index,
        cfg.data.augment,
        device,
        cfg.data.batch_size,
        kitti=is_kitti_format(cfg.data.val),
        drop_unreadable=cfg.data.val.policy == "drop",
    )


def count_parameters(model_cfg: dict[str, Any], num_classes: int = 3) -> int:
    """Parameters of the detector a model config block builds."""
    from liafkd.config import ModelConfig
    from liafkd.engine.build import build_student

    detector = build_student(ModelConfig(**model_cfg), num_classes)
    return sum(p.numel() for p in detector.parameters())
