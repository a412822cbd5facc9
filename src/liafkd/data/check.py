"""`liafkd data check`: what a dataset holds and everything wrong with it."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from liafkd.config import DatasetConfig
from liafkd.data.formats import serious_problems
from liafkd.data.records import DatasetIndex, Problem

# COCO's area ranges for APs / APm / APl.
COCO_SMALL_AREA = 32**2
COCO_MEDIUM_AREA = 96**2


def _box_sides(index: DatasetIndex) -> tuple[np.ndarray, np.ndarray]:
    boxes = [r.boxes_xyxy for r in index.records]
    stacked = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)
    return stacked[:, 2] - stacked[:, 0], stacked[:, 3] - stacked[:, 1]


def box_size_histogram(index: DatasetIndex) -> dict[str, dict[str, int]]:
    """Instance counts by COCO size range and by power-of-two bucket of sqrt(area)."""
    widths, heights = _box_sides(index)
    areas = widths.astype(np.float64) * heights
    coco = {
        "small": int((areas < COCO_SMALL_AREA).sum()),
        "medium": int(((areas >= COCO_SMALL_AREA) & (areas < COCO_MEDIUM_AREA)).sum()),
        "large": int((areas >= COCO_MEDIUM_AREA).sum()),
    }
    exponents = np.floor(np.log2(np.sqrt(np.maximum(areas, 1.0)))).astype(int)
    buckets = {
        f"{2**k}-{2 ** (k + 1)}px": int(count)
        for k, count in sorted(Counter(exponents.tolist()).items())
    }
    return {"coco_area": coco, "sqrt_area": buckets}


def decode_images(index: DatasetIndex, progress: bool = True) -> int:
    """Decode every image's pixels (the readers read headers only), so a truncated or
    corrupt file is found now rather than mid-training: each one becomes an
    `unreadable_image` problem and its record is dropped. Returns how many."""
    from liafkd.data.images import ImageReadError, read_rgb
    from liafkd.progress import progress as progress_of

    kept = []
    bad = 0
    for record in progress_of(index.records, desc="decoding images", enabled=progress):
        try:
            read_rgb(record.file_name)
        except ImageReadError as e:
            message = str(e).removeprefix(f"{record.file_name}: ")
            index.problems.append(Problem("unreadable_image", record.file_name, message, True))
            bad += 1
            continue
        kept.append(record)
    index.records[:] = kept
    return bad


def summarize(index: DatasetIndex, cfg: DatasetConfig) -> dict[str, Any]:
    """A JSON-ready summary: counts, box sizes and every problem grouped by kind."""
    from liafkd.data.formats.layout import describe_split

    per_class = Counter()
    for record in index.records:
        per_class.update(record.labels.tolist())
    problems: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for problem in index.problems:
        problems[problem.kind].append(
            {"location": problem.location, "message": problem.message, "dropped": problem.dropped}
        )
    return {
        "dataset": {"format": cfg.format, "root": cfg.root, "split": describe_split(cfg.split)},
        "images": len(index.records),
        "images_without_objects": sum(1 for r in index.records if r.num_instances == 0),
        "instances": int(sum(per_class.values())),
        "instances_per_class": {
            name: int(per_class.get(i, 0)) for i, name in enumerate(index.class_names)
        },
        "ignore_boxes": int(sum(r.ignore_boxes_xyxy.shape[0] for r in index.records)),
        "box_sizes": box_size_histogram(index),
        "dropped": sum(1 for p in index.problems if p.dropped),
        "serious_problems": len(serious_problems(index)),
        "problems": dict(problems),
    }


def _bar(count: int, largest: int, width: int = 40) -> str:
    return "#" * (math.ceil(width * count / largest) if largest else 0)


def format_summary(summary: dict[str, Any]) -> str:
    dataset = summary["dataset"]
    lines = [
        f"dataset: {dataset['format']} {dataset['root']} (split {dataset['split']})",
        f"images: {summary['images']} ({summary['images_without_objects']} without objects)",
        f"instances: {summary['instances']}, ignore boxes: {summary['ignore_boxes']}",
        "instances per class:",
    ]
    per_class = summary["instances_per_class"]
    name_width = max((len(n) for n in per_class), default=0)
    lines += [f"  {name:<{name_width}}  {count}" for name, count in per_class.items()]
    coco = summary["box_sizes"]["coco_area"]
    lines.append(
        f"box sizes (COCO area): small {coco['small']}, medium {coco['medium']}, "
        f"large {coco['large']}"
    )
    lines.append("box sizes (sqrt of area):")
    buckets = summary["box_sizes"]["sqrt_area"]
    largest = max(buckets.values(), default=0)
    lines += [f"  {b:>12} {c:>7} {_bar(c, largest)}" for b, c in buckets.items()]
    total = sum(len(v) for v in summary["problems"].values())
    lines.append(f"problems: {total} ({summary['dropped']} dropped)")
    for kind, entries in sorted(summary["problems"].items()):
        lines.append(f"  {kind}: {len(entries)}")
        lines += [
            f"    {e['location']}: {e['message']}{' (dropped)' if e['dropped'] else ''}"
            for e in entries
        ]
    return "\n".join(lines)
