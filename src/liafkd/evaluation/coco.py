"""COCO bbox metrics through pycocotools' COCOeval.

The ground truth is `to_coco_dict(index)`, with VOC "difficult" instances marked
iscrowd=1 so that COCOeval ignores them. A metric without ground truth to measure
(e.g. APs when no box is small, or a class with no instance) is None.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from liafkd.data.convert import to_coco_dict
from liafkd.data.formats.common import TEXT_ENCODING, is_finite_number
from liafkd.data.records import DatasetIndex

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[0:6]


def _ground_truth(index: DatasetIndex) -> dict[str, Any]:
    gt = to_coco_dict(index)
    for annotation in gt["annotations"]:
        if annotation.get("difficult"):
            annotation["iscrowd"] = 1
    return gt


def _coco_api(dataset: dict[str, Any]) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    return coco


def check_detections(
    detections: list[dict[str, Any]], image_ids: set[int], category_ids: set[int]
) -> None:
    """ValueError naming the first detection that COCOeval could not use."""
    for i, det in enumerate(detections):
        where = f"detections[{i}]"
        if not isinstance(det, dict):
            raise ValueError(f"{where}: expected an object, got {type(det).__name__}")
        bbox = det.get("bbox")
        if not (
            isinstance(bbox, list | tuple) and len(bbox) == 4 and all(map(is_finite_number, bbox))
        ):
            raise ValueError(f"{where}: `bbox` must be 4 finite numbers [x, y, w, h]")
        if bbox[2] < 0 or bbox[3] < 0:
            raise ValueError(
                f"{where}: `bbox` {list(bbox)} has a negative width or height "
                "(COCO boxes are [x, y, width, height], not corners)"
            )
        if not is_finite_number(det.get("score")):
            raise ValueError(f"{where}: `score` must be a finite number")
        image_id, category_id = det.get("image_id"), det.get("category_id")
        if not isinstance(image_id, int) or image_id not in image_ids:
            raise ValueError(f"{where}: image_id {image_id!r} is not in the dataset")
        if not isinstance(category_id, int) or category_id not in category_ids:
            raise ValueError(
                f"{where}: category_id {category_id!r} is not one of "
                f"1..{len(category_ids)} (1-based class order)"
            )


def _results_api(gt: COCO, detections: list[dict[str, Any]]) -> COCO:
    if not detections:  # COCO.loadRes cannot take an empty list
        return _coco_api(
            {
                "images": gt.dataset["images"],
                "annotations": [],
                "categories": gt.dataset["categories"],
            }
        )
    results = [
        {
            "image_id": d["image_id"],
            "category_id": d["category_id"],
            "bbox": [float(v) for v in d["bbox"]],
            "score": float(d["score"]),
        }
        for d in detections
    ]
    return gt.loadRes(results)


def _defined(value: float) -> float | None:
    """COCOeval marks "nothing to measure" with -1."""
    return None if value < 0 else float(value)


def _per_class_ap(evaluator: COCOeval, class_names: list[str]) -> dict[str, float | None]:
    # precision: [iou thresholds, recall points, classes, area ranges, max dets];
    # area range 0 is "all", max dets -1 is 100, as in COCOeval.summarize's AP.
    precision = evaluator.eval["precision"]
    per_class = {}
    for k, name in enumerate(class_names):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        per_class[name] = float(np.mean(values)) if values.size else None
    return per_class


def evaluate_coco(
    index: DatasetIndex, detections: list[dict[str, Any]], quiet: bool = True
) -> dict[str, Any]:
    """{"AP", "AP50", "AP75", "APs", "APm", "APl"} in [0, 1] (or None), "per_class"
    {name: AP}, and "summary", COCOeval's printed summary. `detections` are COCO
    results: image_id, category_id (1-based as in to_coco_dict), bbox xywh, score.
    With quiet=False pycocotools' prints also go to stdout."""
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        gt = _coco_api(_ground_truth(index))
        check_detections(detections, set(gt.getImgIds()), set(gt.getCatIds()))
        evaluator = COCOeval(gt, _results_api(gt, detections), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        summary_start = log.tell()
        evaluator.summarize()
    if not quiet:
        print(log.getvalue(), end="")
    metrics: dict[str, Any] = {
        name: _defined(value) for name, value in zip(METRIC_NAMES, evaluator.stats, strict=False)
    }
    metrics["per_class"] = _per_class_ap(evaluator, index.class_names)
    metrics["summary"] = log.getvalue()[summary_start:]
    return metrics


def to_class_order(
    detections: list[dict[str, Any]],
    dataset_ids: dict[int, str],
    class_names: list[str],
    mode: str = "auto",
) -> tuple[list[dict[str, Any]], str]:
    """Results whose category ids follow the annotation file's own ids (as pycocotools
    users write them) translated to liafkd's 1-based class order; returns the results
    and the convention used ("order" or "dataset"). `mode` "auto" picks the one
    convention the ids fit; ValueError when they fit both and the two differ, or when
    a dataset id names no class of the dataset."""
    order = {i + 1: name for i, name in enumerate(class_names)}
    by_name = {name: i + 1 for i, name in enumerate(class_names)}
    dataset = {cid: name for cid, name in dataset_ids.items() if name in by_name}
    used = Counter(d.get("category_id") for d in detections if isinstance(d, dict))
    ids = set(used)
    if mode == "auto":
        if not dataset or all(by_name[name] == cid for cid, name in dataset.items()):
            return detections, "order"  # the same ids either way
        fits_order, fits_dataset = ids <= set(order), ids <= set(dataset)
        if fits_order and fits_dataset:
            # only the ids the results use matter: cite one of those
            differ = [cid for cid in sorted(ids) if order[cid] != dataset[cid]]
            if not differ:
                return detections, "order"  # these ids name the same classes either way
            cid = differ[0]
            raise ValueError(
                "the category ids fit both the annotation file's ids and liafkd's class "
                f"order, which differ (category_id {cid}, used {used[cid]} time(s) in the "
                f"results, is {dataset[cid]} by the annotation file, {order[cid]} by class "
                "order); say which with --category-ids dataset|order"
            )
        mode = "dataset" if fits_dataset else "order"
    if mode == "order":
        return detections, "order"
    unknown = sorted(i for i in ids if i not in dataset)
    if unknown:
        raise ValueError(
            f"category_id {unknown[0]!r} is not an id of the annotation file's classes "
            f"{sorted(dataset)}"
        )
    translated = [{**d, "category_id": by_name[dataset[d["category_id"]]]} for d in detections]
    return translated, "dataset"


def load_detections(path: str | Path) -> list[dict[str, Any]]:
    """A COCO results file (a JSON list); ValueError naming the file when it is not."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding=TEXT_ENCODING))
    except FileNotFoundError:
        raise ValueError(f"{path}: detections file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: invalid JSON: {e}") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of COCO results")
    return data


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def format_coco_table(metrics: dict[str, Any]) -> str:
    """The six COCO numbers and the per-class AP, in percent ("-": no ground truth)."""
    per_class = metrics.get("per_class", {})
    width = max([len(n) for n in METRIC_NAMES] + [len(n) for n in per_class])
    lines = [f"{'metric':<{width}}  {'value (%)':>9}"]
    lines += [f"{name:<{width}}  {_percent(metrics.get(name)):>9}" for name in METRIC_NAMES]
    if per_class:
        lines.append(f"{'class':<{width}}  {'AP (%)':>9}")
        lines += [f"{name:<{width}}  {_percent(ap):>9}" for name, ap in per_class.items()]
    return "\n".join(lines)
