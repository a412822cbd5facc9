"""Time `evaluate_kitti` on a KITTI-val-sized synthetic set (3,769 images).

Ground truth mimics KITTI label statistics (1242x375 images, mostly cars, box heights
from ~15 to ~250 px, occlusion 0-3, mostly untruncated, DontCare regions, Vans and
sitting persons); detections are jittered copies of most objects plus false
positives, ~10 per image. Writes benchmarks/results/kitti_eval_speed.json.

    python benchmarks/kitti_eval_speed.py [--images 3769] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from liafkd.evaluation.kitti import KittiFrame, evaluate_kitti, format_kitti_table

IMAGE_W, IMAGE_H = 1242.0, 375.0
GT_TYPES = ["Car", "Pedestrian", "Cyclist", "Van", "Person_sitting", "Truck"]
GT_TYPE_P = [0.72, 0.12, 0.05, 0.07, 0.01, 0.03]
ASPECT = {"Car": 2.0, "Van": 1.8, "Truck": 1.6, "Pedestrian": 0.4, "Cyclist": 0.8}
DET_CLASSES = ["Car", "Pedestrian", "Cyclist"]
RESULT_PATH = Path(__file__).resolve().parent / "results" / "kitti_eval_speed.json"


def random_boxes(rng: np.random.Generator, names: np.ndarray) -> np.ndarray:
    heights = np.clip(rng.lognormal(np.log(45.0), 0.55, names.shape[0]), 12.0, 260.0)
    widths = heights * np.array([ASPECT.get(n, 0.5) for n in names]) * rng.uniform(0.7, 1.3)
    x1 = rng.uniform(-0.1 * IMAGE_W, IMAGE_W - 10.0, names.shape[0])
    y2 = np.clip(rng.uniform(150.0, IMAGE_H + 30.0, names.shape[0]), heights, None)
    boxes = np.stack([x1, y2 - heights, x1 + widths, y2], 1)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0.0, IMAGE_W)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0.0, IMAGE_H)
    return np.round(boxes, 2)


def ground_truth_frame(rng: np.random.Generator, image_id: str) -> KittiFrame:
    names = rng.choice(GT_TYPES, size=rng.poisson(5.5), p=GT_TYPE_P)
    n_dontcare = rng.poisson(1.5)
    boxes = random_boxes(rng, names)
    occluded = rng.choice(4, size=names.shape[0], p=[0.45, 0.3, 0.2, 0.05])
    truncated = np.where(rng.random(names.shape[0]) < 0.8, 0.0, rng.uniform(0, 0.9, names.shape[0]))
    dontcare = random_boxes(rng, np.array(["Pedestrian"] * n_dontcare)) * [1, 1, 1.6, 1]
    return KittiFrame(
        names=np.concatenate([names, ["DontCare"] * n_dontcare]),
        truncated=np.concatenate([np.round(truncated, 2), -np.ones(n_dontcare)]),
        occluded=np.concatenate([occluded, -np.ones(n_dontcare, dtype=np.int64)]),
        bbox=np.concatenate([boxes, dontcare.clip(0, IMAGE_W)]),
        image_id=image_id,
    )


def detection_frame(rng: np.random.Generator, gt: KittiFrame, per_image: int) -> KittiFrame:
    objects = np.flatnonzero(np.isin(gt.names, DET_CLASSES + ["Van"]))
    found = objects[rng.random(objects.shape[0]) < 0.85]
    size = np.stack(
        [gt.bbox[found, 2] - gt.bbox[found, 0], gt.bbox[found, 3] - gt.bbox[found, 1]], 1
    )
    jitter = rng.normal(0.0, 0.06, (found.shape[0], 4)) * np.tile(size, 2)
    names = gt.names[found].copy()
    names[names == "Van"] = "Car"  # detectors call vans cars
    n_fp = max(per_image - found.shape[0], 1)
    fp_names = rng.choice(DET_CLASSES, size=n_fp, p=[0.7, 0.2, 0.1])
    boxes = np.concatenate([gt.bbox[found] + jitter, random_boxes(rng, fp_names)])
    scores = np.concatenate([rng.beta(5, 2, found.shape[0]), rng.beta(2, 5, n_fp)])
    return KittiFrame(
        names=np.concatenate([names, fp_names]),
        truncated=np.zeros(boxes.shape[0]),
        occluded=np.zeros(boxes.shape[0], dtype=np.int64),
        bbox=np.round(np.sort(boxes.reshape(-1, 2, 2), axis=1).reshape(-1, 4), 2),
        score=np.round(scores, 4),
        image_id=gt.image_id,
    )


def machine_info() -> dict[str, object]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3769)
    parser.add_argument("--dets-per-image", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    gt = [ground_truth_frame(rng, f"{i:06d}") for i in range(args.images)]
    dt = [detection_frame(rng, g, args.dets_per_image) for g in gt]
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = evaluate_kitti(gt, dt)
        times.append(time.perf_counter() - start)
    print(format_kitti_table(result))
    report = {
        "benchmark": "evaluate_kitti, synthetic KITTI-val-sized data, 3 classes x 3 difficulties",
        "seconds_best": round(min(times), 4),
        "seconds_all": [round(t, 4) for t in times],
        "images": args.images,
        "gt_objects": int(sum(len(g) for g in gt)),
        "detections": int(sum(len(d) for d in dt)),
        "moderate_mean_R40": round(result["moderate_mean"], 4),
        "machine": machine_info(),
    }
    RESULT_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULT_PATH.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
