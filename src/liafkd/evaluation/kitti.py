"""KITTI object 2D ("bbox") evaluation with the official devkit's rules, vectorised.

Semantics follow the devkit's evaluate_object.cpp as ported to Python in the widely
used kitti_object_eval_python (the numbers OpenPCDet / mmdetection3d report):

- classes Car (min IoU 0.7), Pedestrian and Cyclist (0.5); Van counts as an ignored
  neighbour of Car and Person_sitting of Pedestrian (detections on them are neither
  true nor false positives);
- difficulties Easy / Moderate / Hard keep ground truth taller than 40 / 25 / 25 px
  (strictly: a 40.0 px box is not Easy, as in the Python port; the C++ keeps it),
  occluded at most 0 / 1 / 2 and truncated at most 0.15 / 0.30 / 0.50; other boxes of
  the class are ignored, not missed; detections lower than the minimum height are
  ignored (whatever their class);
- a detection that is left unmatched is not a false positive when its intersection
  with a DontCare region, divided by its own area, exceeds the class's min overlap;
- matching is greedy per ground truth in file order. To collect the true-positive
  scores, each ground truth takes the highest-scoring free detection above the min
  overlap; at each sampled score threshold it takes the free evaluated detection
  with the largest overlap, else the first free ignored one;
- 41 score thresholds are sampled from the true-positive scores at recall steps of
  1/40; precision at each is replaced by the maximum to its right; AP|R40 averages
  the 40 points after the first, AP|R11 every fourth point from the first.

A precision of 0/0 (a threshold where every detection is ignored) counts as 0 here;
the Python port turns it into NaN.

The greedy matching runs for all images at once: images are padded to the largest
number of matchable ground truths / detections and the loop runs over the ground
truth slot (and over all thresholds at once in the second pass).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from liafkd.data.formats.common import TEXT_ENCODING
from liafkd.data.formats.kitti import parse_kitti_line

KITTI_CLASSES = ("Car", "Pedestrian", "Cyclist")
MIN_OVERLAP = {"car": 0.7, "pedestrian": 0.5, "cyclist": 0.5}
NEIGHBOUR_CLASS = {"car": "van", "pedestrian": "person_sitting"}
DONT_CARE = "dontcare"
NUM_SAMPLE_POINTS = 41


@dataclass(frozen=True)
class Difficulty:
    name: str
    min_height: float
    max_occlusion: int
    max_truncation: float


DIFFICULTIES = (
    Difficulty("easy", 40.0, 0, 0.15),
    Difficulty("moderate", 25.0, 1, 0.30),
    Difficulty("hard", 25.0, 2, 0.50),
)


@dataclass
class KittiFrame:
    """The objects of one image: ground truth (score None) or detections.

    names [N] str (KITTI type, e.g. "Car", "DontCare"), truncated [N] float,
    occluded [N] int, bbox [N, 4] float64 x1 y1 x2 y2 in pixels, score [N] float64.
    """

    names: np.ndarray
    truncated: np.ndarray
    occluded: np.ndarray
    bbox: np.ndarray
    score: np.ndarray | None = None
    image_id: str = ""

    def __post_init__(self) -> None:
        self.names = np.asarray(self.names, dtype=str).reshape(-1)
        n = self.names.shape[0]
        self.truncated = _vector(self.truncated, n, np.float64, "truncated", self.image_id)
        self.occluded = _vector(self.occluded, n, np.int64, "occluded", self.image_id)
        self.bbox = np.asarray(self.bbox, dtype=np.float64).reshape(-1, 4)
        if self.bbox.shape[0] != n:
            raise ValueError(f"image {self.image_id!r}: {self.bbox.shape[0]} boxes for {n} names")
        if self.score is not None:
            self.score = _vector(self.score, n, np.float64, "score", self.image_id)

    def __len__(self) -> int:
        return int(self.names.shape[0])

    @classmethod
    def empty(cls, image_id: str = "", with_score: bool = False) -> KittiFrame:
        return cls(
            names=np.zeros(0, dtype=str),
            truncated=np.zeros(0),
            occluded=np.zeros(0, dtype=np.int64),
            bbox=np.zeros((0, 4)),
            score=np.zeros(0) if with_score else None,
            image_id=image_id,
        )


def _vector(values: Any, n: int, dtype: type, what: str, image_id: str) -> np.ndarray:
    array = np.asarray(values, dtype=dtype).reshape(-1)
    if array.shape[0] != n:
        raise ValueError(f"image {image_id!r}: {array.shape[0]} {what} values for {n} names")
    return array


# ---------------------------------------------------------------- reading and writing


def parse_label_file(path: str | Path) -> KittiFrame:
    """One label_2 file (15 fields a line) or result file (16, the last the score).

    Coordinates stay float64 as in the official evaluation (rounding KITTI's two
    decimals to float32 can flip its height and overlap comparisons).
    ValueError naming `file:line` for a malformed line.
    """
    path = Path(path)
    names, values, scores = [], [], []
    lines = path.read_text(encoding=TEXT_ENCODING).splitlines()
    for line_number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            line = parse_kitti_line(text)
            _check_box(line.values[3:7])
        except ValueError as e:
            raise ValueError(f"{path}:{line_number}: {e}") from None
        if scores and (line.score is None) != (scores[0] is None):
            raise ValueError(f"{path}:{line_number}: some lines have a score field, others not")
        names.append(line.type_name)
        values.append(line.values)
        scores.append(line.score)
    table = np.asarray(values, dtype=np.float64).reshape(-1, 14)
    has_score = bool(scores) and scores[0] is not None
    return KittiFrame(
        names=np.asarray(names, dtype=str),
        truncated=table[:, 0],
        occluded=table[:, 1].astype(np.int64),
        bbox=table[:, 3:7],
        score=np.asarray(scores, dtype=np.float64) if has_score else None,
        image_id=path.stem,
    )


def _check_box(box: Sequence[float]) -> None:
    x1, y1, x2, y2 = box
    if x2 < x1 or y2 < y1:
        raise ValueError(f"bbox has x2 < x1 or y2 < y1: {x1} {y1} {x2} {y2}")


def image_id_str(image_id: str | int) -> str:
    """KITTI file stem of an image id: ints are zero-padded to six digits."""
    return f"{image_id:06d}" if isinstance(image_id, int | np.integer) else str(image_id)


def load_kitti_dir(
    label_dir: str | Path,
    ids: Sequence[str | int] | None = None,
    missing_ok: bool = False,
) -> list[KittiFrame]:
    """Frames of `label_dir/<id>.txt` for each id (all .txt files, sorted, when None).

    A missing file is an error, or with `missing_ok` an image without objects
    (a result folder need not hold files for images without detections).
    """
    label_dir = Path(label_dir)
    if not label_dir.is_dir():
        raise FileNotFoundError(f"{label_dir}: KITTI label/result folder not found")
    stems = (
        sorted(p.stem for p in label_dir.glob("*.txt"))
        if ids is None
        else [image_id_str(i) for i in ids]
    )
    frames = []
    for stem in stems:
        path = label_dir / f"{stem}.txt"
        if path.is_file():
            frames.append(parse_label_file(path))
        elif missing_ok:
            frames.append(KittiFrame.empty(stem, with_score=True))
        else:
            raise FileNotFoundError(f"{path}: no file for image id {stem!r}")
    return frames


def _to_numpy(values: Any, dtype: type) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, possibly on the GPU
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype)


def frames_from_predictions(
    detections: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    image_ids: Sequence[str | int] | None = None,
) -> list[KittiFrame]:
    """Detection frames from per-image {"boxes" [N,4] xyxy, "scores" [N], "labels" [N]}
    (numpy arrays or tensors), labels indexing `class_names`."""
    if image_ids is not None and len(image_ids) != len(detections):
        raise ValueError(f"{len(image_ids)} image ids for {len(detections)} detection sets")
    names_table = np.asarray(class_names, dtype=str)
    frames = []
    for i, det in enumerate(detections):
        image_id = image_id_str(image_ids[i]) if image_ids is not None else str(i)
        missing = {"boxes", "scores", "labels"} - set(det)
        if missing:
            raise ValueError(f"detections of image {image_id!r} lack {sorted(missing)}")
        labels = _to_numpy(det["labels"], np.int64).reshape(-1)
        bad = (labels < 0) | (labels >= len(names_table))
        if bad.any():
            raise ValueError(
                f"detections of image {image_id!r}: label {int(labels[bad][0])} is not an "
                f"index into the {len(names_table)} class names"
            )
        frames.append(
            KittiFrame(
                names=names_table[labels],
                truncated=np.zeros(len(labels)),
                occluded=np.zeros(len(labels), dtype=np.int64),
                bbox=_to_numpy(det["boxes"], np.float64),
                score=_to_numpy(det["scores"], np.float64),
                image_id=image_id,
            )
        )
    return frames


def frames_from_records(index: Any) -> list[KittiFrame]:
    """Ground-truth frames of a `DatasetIndex` (from the KITTI reader or any other).

    Boxes are the reader's float32 values; evaluating label files directly keeps
    KITTI's exact coordinates. Missing "truncated"/"occluded" attributes count as 0.
    Ignore boxes become DontCare (label -1) or their neighbour class name.
    """
    class_names = np.asarray(index.class_names, dtype=str)
    ignore_names = np.asarray(list(index.ignore_class_names) + ["DontCare"], dtype=str)
    frames = []
    for rec in index.records:
        n = rec.num_instances
        n_ignore = rec.ignore_boxes_xyxy.shape[0]
        ignore_labels = np.asarray(rec.ignore_labels, dtype=np.int64)
        if ignore_labels.shape[0] != n_ignore:
            raise ValueError(
                f"{rec.file_name}: {n_ignore} ignore boxes but {ignore_labels.shape[0]} labels"
            )
        frames.append(
            KittiFrame(
                names=np.concatenate([class_names[rec.labels], ignore_names[ignore_labels]]),
                truncated=np.concatenate(
                    [rec.attrs.get("truncated", np.zeros(n)), np.zeros(n_ignore)]
                ),
                occluded=np.concatenate(
                    [rec.attrs.get("occluded", np.zeros(n)), np.zeros(n_ignore)]
                ),
                bbox=np.concatenate([rec.boxes_xyxy, rec.ignore_boxes_xyxy]).astype(np.float64),
                image_id=image_id_str(rec.image_id),
            )
        )
    return frames


def format_result_line(name: str, box: Sequence[float], score: float) -> str:
    """A 16-field result line; the unknown 3D fields take KITTI's placeholders.
    Numbers are written with Python's shortest round-trip repr, so reading the file
    back evaluates exactly as the detections did."""
    x1, y1, x2, y2 = (repr(float(v)) for v in box)
    return f"{name} -1 -1 -10 {x1} {y1} {x2} {y2} -1 -1 -1 -1000 -1000 -1000 -10 {float(score)!r}"


def write_kitti_results(
    out_dir: str | Path,
    image_ids: Sequence[str | int],
    detections: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
) -> list[Path]:
    """One `<id>.txt` result file per image (empty when it has no detections)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for frame in frames_from_predictions(detections, class_names, image_ids):
        lines = [
            format_result_line(name, box, score)
            for name, box, score in zip(frame.names, frame.bbox, frame.score, strict=True)
        ]
        path = out_dir / f"{frame.image_id}.txt"
        path.write_text("".join(line + "\n" for line in lines))
        paths.append(path)
    return paths


# ---------------------------------------------------------------- flattened inputs


@dataclass
class _Objects:
    """All objects of all images, concatenated in image order then file order."""

    image: np.ndarray  # int64 [N] image position
    names: np.ndarray  # str [N] lower-cased
    truncated: np.ndarray
    occluded: np.ndarray
    bbox: np.ndarray  # float64 [N, 4]
    score: np.ndarray  # float64 [N]; zeros for ground truth


def _concatenate(frames: Sequence[KittiFrame], need_score: bool) -> _Objects:
    if need_score:
        for frame in frames:
            if len(frame) and frame.score is None:
                raise ValueError(
                    f"detections of image {frame.image_id!r} have no scores "
                    "(result lines need a 16th field, the score)"
                )
    counts = np.asarray([len(f) for f in frames], dtype=np.int64)
    names = np.concatenate([f.names for f in frames] + [np.zeros(0, dtype=str)])
    return _Objects(
        image=np.repeat(np.arange(len(frames)), counts),
        names=np.char.lower(names),
        truncated=np.concatenate([f.truncated for f in frames] + [np.zeros(0)]),
        occluded=np.concatenate([f.occluded for f in frames] + [np.zeros(0, np.int64)]),
        bbox=np.concatenate([f.bbox for f in frames] + [np.zeros((0, 4))]),
        score=np.concatenate(
            [f.score if need_score and f.score is not None else np.zeros(len(f)) for f in frames]
            + [np.zeros(0)]
        ),
    )


def _same_image_pairs(
    image_a: np.ndarray, image_b: np.ndarray, num_images: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (a, b) of every pair of items in the same image; both inputs sorted."""
    count_b = np.bincount(image_b, minlength=num_images)
    start_b = np.cumsum(count_b) - count_b
    repeats = count_b[image_a]
    index_a = np.repeat(np.arange(image_a.shape[0]), repeats)
    group_start = np.repeat(np.cumsum(repeats) - repeats, repeats)
    index_b = start_b[image_a[index_a]] + np.arange(index_a.shape[0]) - group_start
    return index_a, index_b


def _box_overlap(dt_boxes: np.ndarray, other: np.ndarray, over_dt_area: bool) -> np.ndarray:
    """Row-wise IoU of detection and other boxes, or intersection / detection area;
    operations in the devkit's order, so float results match it bit for bit."""
    iw = np.minimum(dt_boxes[:, 2], other[:, 2]) - np.maximum(dt_boxes[:, 0], other[:, 0])
    ih = np.minimum(dt_boxes[:, 3], other[:, 3]) - np.maximum(dt_boxes[:, 1], other[:, 1])
    dt_area = (dt_boxes[:, 2] - dt_boxes[:, 0]) * (dt_boxes[:, 3] - dt_boxes[:, 1])
    inter = iw * ih
    if over_dt_area:
        union = dt_area
    else:
        union = dt_area + (other[:, 2] - other[:, 0]) * (other[:, 3] - other[:, 1]) - inter
    overlap = np.zeros(inter.shape[0])
    positive = (iw > 0) & (ih > 0)
    overlap[positive] = inter[positive] / union[positive]
    return overlap


@dataclass
class _Scene:
    """Class-independent precomputation shared by every class and difficulty."""

    gt: _Objects
    dt: _Objects
    num_images: int
    pair_gt: np.ndarray  # same-image (gt, dt) pairs with a positive IoU
    pair_dt: np.ndarray
    pair_iou: np.ndarray
    dt_dontcare_overlap: np.ndarray  # [num dt] max intersection/area over DontCare


def _build_scene(gt_frames: Sequence[KittiFrame], dt_frames: Sequence[KittiFrame]) -> _Scene:
    gt = _concatenate(gt_frames, need_score=False)
    dt = _concatenate(dt_frames, need_score=True)
    num_images = len(gt_frames)
    pair_dt, pair_gt = _same_image_pairs(dt.image, gt.image, num_images)
    iou = _box_overlap(dt.bbox[pair_dt], gt.bbox[pair_gt], over_dt_area=False)
    # A box meets a DontCare region or another box with positive IoU exactly when
    # they intersect, so the positive pairs are all the devkit ever looks at.
    positive = iou > 0
    pair_dt, pair_gt, iou = pair_dt[positive], pair_gt[positive], iou[positive]
    on_dontcare = gt.names[pair_gt] == DONT_CARE
    dontcare_overlap = np.zeros(dt.image.shape[0])
    np.maximum.at(
        dontcare_overlap,
        pair_dt[on_dontcare],
        _box_overlap(dt.bbox[pair_dt[on_dontcare]], gt.bbox[pair_gt[on_dontcare]], True),
    )
    return _Scene(
        gt=gt,
        dt=dt,
        num_images=num_images,
        pair_gt=pair_gt,
        pair_dt=pair_dt,
        pair_iou=iou,
        dt_dontcare_overlap=dontcare_overlap,
    )


# ---------------------------------------------------------------- ignore rules


def _gt_status(gt: _Objects, cls: str, difficulty: Difficulty) -> np.ndarray:
    """Per ground truth: 0 evaluated, 1 ignored (neighbour class or outside the
    difficulty), -1 not taking part (other class, DontCare)."""
    height = gt.bbox[:, 3] - gt.bbox[:, 1]
    same_class = gt.names == cls
    neighbour = gt.names == NEIGHBOUR_CLASS.get(cls, "")
    outside = (
        (gt.occluded > difficulty.max_occlusion)
        | (gt.truncated > difficulty.max_truncation)
        | (height <= difficulty.min_height)
    )
    status = np.full(gt.names.shape[0], -1, dtype=np.int8)
    status[same_class & ~outside] = 0
    status[neighbour | (same_class & outside)] = 1
    return status


def _dt_status(dt: _Objects, cls: str, difficulty: Difficulty) -> np.ndarray:
    """Per detection: 0 evaluated, 1 ignored (too small, any class), -1 other class."""
    height = np.abs(dt.bbox[:, 3] - dt.bbox[:, 1])
    return np.where(height < difficulty.min_height, 1, np.where(dt.names == cls, 0, -1)).astype(
        np.int8
    )


# ---------------------------------------------------------------- greedy matching


@dataclass
class _Matching:
    """The matchable ground truths and detections, one padded row per image.

    Rows are sorted by their number of ground truths (descending), so ground-truth
    slot g concerns the first `rows_with_slot[g]` rows only. Slots keep file order.
    """

    candidate: np.ndarray  # bool [R, G, D]: overlap above the class's min overlap
    overlap: np.ndarray  # float [R, G, D]
    gt_ignored: np.ndarray  # bool [R, G]
    dt_ignored: np.ndarray  # bool [R, D]
    dt_counted: np.ndarray  # bool [R, D]: evaluated and outside DontCare (a possible FP)
    dt_score: np.ndarray  # float [R, D], -inf in padding
    rows_with_slot: np.ndarray  # int [G]


def _rank_in_group(group: np.ndarray) -> np.ndarray:
    """Position of each item within its run of equal, sorted group values."""
    return np.arange(group.shape[0]) - np.searchsorted(group, group, side="left")


def _build_matching(
    scene: _Scene,
    gt_status: np.ndarray,
    dt_status: np.ndarray,
    dt_counted: np.ndarray,
    min_overlap: float,
) -> _Matching | None:
    keep = (
        (scene.pair_iou > min_overlap)
        & (gt_status[scene.pair_gt] >= 0)
        & (dt_status[scene.pair_dt] >= 0)
    )
    if not keep.any():
        return None
    pair_gt, pair_dt, pair_iou = scene.pair_gt[keep], scene.pair_dt[keep], scene.pair_iou[keep]
    gts, gt_of_pair = np.unique(pair_gt, return_inverse=True)
    dts, dt_of_pair = np.unique(pair_dt, return_inverse=True)
    gt_image, dt_image = scene.gt.image[gts], scene.dt.image[dts]
    gt_slot, dt_slot = _rank_in_group(gt_image), _rank_in_group(dt_image)

    images, gts_per_image = np.unique(gt_image, return_counts=True)
    order = np.argsort(-gts_per_image, kind="stable")
    row_of_image = np.full(scene.num_images, -1, dtype=np.int64)
    row_of_image[images[order]] = np.arange(images.shape[0])
    gt_row, dt_row = row_of_image[gt_image], row_of_image[dt_image]

    shape = (images.shape[0], int(gt_slot.max()) + 1, int(dt_slot.max()) + 1)
    candidate = np.zeros(shape, dtype=bool)
    overlap = np.zeros(shape)
    pair_index = (gt_row[gt_of_pair], gt_slot[gt_of_pair], dt_slot[dt_of_pair])
    candidate[pair_index] = True
    overlap[pair_index] = pair_iou

    gt_ignored = np.zeros(shape[:2], dtype=bool)
    gt_ignored[gt_row, gt_slot] = gt_status[gts] == 1
    dt_ignored = np.zeros((shape[0], shape[2]), dtype=bool)
    dt_ignored[dt_row, dt_slot] = dt_status[dts] == 1
    counted = np.zeros_like(dt_ignored)
    counted[dt_row, dt_slot] = dt_counted[dts]
    dt_score = np.full(dt_ignored.shape, -np.inf)
    dt_score[dt_row, dt_slot] = scene.dt.score[dts]
    sorted_counts = gts_per_image[order]
    rows_with_slot = (sorted_counts[None, :] > np.arange(shape[1])[:, None]).sum(1)
    return _Matching(candidate, overlap, gt_ignored, dt_ignored, counted, dt_score, rows_with_slot)


def _true_positive_scores(m: _Matching) -> np.ndarray:
    """First pass: each ground truth takes the highest-scoring free detection above
    the min overlap; the scores of evaluated-on-evaluated matches are returned."""
    assigned = np.zeros(m.dt_score.shape, dtype=bool)
    scores = []
    for slot, num_rows in enumerate(m.rows_with_slot):
        free = m.candidate[:num_rows, slot] & ~assigned[:num_rows]
        rows = np.flatnonzero(free.any(1))
        cols = np.where(free[rows], m.dt_score[rows], -np.inf).argmax(1)
        assigned[rows, cols] = True
        true_positive = ~m.gt_ignored[rows, slot] & ~m.dt_ignored[rows, cols]
        scores.append(m.dt_score[rows[true_positive], cols[true_positive]])
    return np.concatenate(scores)


def _match_at_thresholds(m: _Matching, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Second pass, all thresholds at once: each ground truth takes the free evaluated
    detection with the largest overlap, else the first free ignored one. Returns the
    true positives per threshold and the counted detections that were assigned."""
    present = m.dt_score[None] >= thresholds[:, None, None]  # [T, R, D]
    assigned = np.zeros(present.shape, dtype=bool)
    true_positives = np.zeros(thresholds.shape[0], dtype=np.int64)
    evaluated = ~m.dt_ignored
    for slot, num_rows in enumerate(m.rows_with_slot):
        free = m.candidate[None, :num_rows, slot] & present[:, :num_rows] & ~assigned[:, :num_rows]
        free_evaluated = free & evaluated[None, :num_rows]
        free_ignored = free & m.dt_ignored[None, :num_rows]
        has_evaluated = free_evaluated.any(-1)
        best_evaluated = np.where(free_evaluated, m.overlap[None, :num_rows, slot], -1.0).argmax(-1)
        pick = np.where(has_evaluated, best_evaluated, free_ignored.argmax(-1))
        t_index, rows = np.nonzero(has_evaluated | free_ignored.any(-1))
        assigned[t_index, rows, pick[t_index, rows]] = True
        true_positives += (has_evaluated & ~m.gt_ignored[None, :num_rows, slot]).sum(-1)
    assigned_counted = (assigned & m.dt_counted[None]).sum((1, 2))
    return true_positives, assigned_counted


def sample_thresholds(tp_scores: np.ndarray, num_gt: int) -> np.ndarray:
    """The devkit's score thresholds: walking the true-positive scores from the top,
    keep a score when its recall is the closest to the next of the 41 recall steps
    (the last score is always kept). The recall step accumulates as in the devkit."""
    scores = np.sort(np.asarray(tp_scores, dtype=np.float64))[::-1]
    n = scores.shape[0]
    if n == 0:
        return scores
    index = np.arange(n)
    left_recall = (index + 1) / num_gt
    right_recall = np.where(index < n - 1, (index + 2) / num_gt, left_recall)
    not_last = index < n - 1
    step = 1 / (NUM_SAMPLE_POINTS - 1.0)
    kept = []
    current_recall = 0.0
    start = 0
    while start < n:
        skip = (
            (right_recall[start:] - current_recall) < (current_recall - left_recall[start:])
        ) & (not_last[start:])
        chosen = start + int(np.argmin(skip))  # the last score is never skipped
        kept.append(scores[chosen])
        current_recall += step
        start = chosen + 1
    return np.asarray(kept)


def _sequential_sum(values: np.ndarray) -> float:
    total = 0.0
    for value in values.tolist():
        total = total + value
    return total


def average_precisions(true_positives: np.ndarray, false_positives: np.ndarray) -> dict[str, float]:
    """AP|R40 and AP|R11 in percent from the counts at the sampled thresholds."""
    precision = np.zeros(NUM_SAMPLE_POINTS)
    tp = np.asarray(true_positives, dtype=np.float64)
    detections = tp + np.asarray(false_positives, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision[: tp.shape[0]] = np.where(detections > 0, tp / detections, 0.0)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return {
        "R40": _sequential_sum(precision[1:]) / 40 * 100,
        "R11": _sequential_sum(precision[::4]) / 11 * 100,
    }


def _evaluate_class_difficulty(scene: _Scene, cls: str, difficulty: Difficulty) -> dict[str, float]:
    gt_status = _gt_status(scene.gt, cls, difficulty)
    dt_status = _dt_status(scene.dt, cls, difficulty)
    min_overlap = MIN_OVERLAP[cls]
    dt_counted = (dt_status == 0) & ~(scene.dt_dontcare_overlap > min_overlap)
    matching = _build_matching(scene, gt_status, dt_status, dt_counted, min_overlap)
    if matching is None:
        return average_precisions(np.zeros(0), np.zeros(0))
    num_gt = int((gt_status == 0).sum())
    thresholds = sample_thresholds(_true_positive_scores(matching), num_gt)
    if thresholds.shape[0] == 0:
        return average_precisions(np.zeros(0), np.zeros(0))
    true_positives, assigned_counted = _match_at_thresholds(matching, thresholds)
    counted_scores = np.sort(scene.dt.score[dt_counted])
    counted_above = counted_scores.shape[0] - np.searchsorted(counted_scores, thresholds, "left")
    return average_precisions(true_positives, counted_above - assigned_counted)


def _canonical_class(name: str) -> str:
    for known in KITTI_CLASSES:
        if known.lower() == name.strip().lower():
            return known
    raise ValueError(f"unknown KITTI class {name!r}; choose from {', '.join(KITTI_CLASSES)}")


def evaluate_kitti(
    gt: Sequence[KittiFrame],
    dt: Sequence[KittiFrame],
    classes: Sequence[str] = KITTI_CLASSES,
) -> dict[str, Any]:
    """Official KITTI 2D AP (percent) per class and difficulty.

    gt[i] and dt[i] describe the same image. Returns
    {"Car": {"easy": {"R40": .., "R11": ..}, "moderate": {..}, "hard": {..}}, ...,
     "moderate_mean": mean moderate AP|R40 over `classes`}.
    """
    if len(gt) != len(dt):
        raise ValueError(f"{len(gt)} ground-truth frames but {len(dt)} detection frames")
    for g, d in zip(gt, dt, strict=True):
        if g.image_id and d.image_id and g.image_id != d.image_id:
            raise ValueError(
                f"frames out of step: ground truth {g.image_id!r}, detections {d.image_id!r}"
            )
    canonical = [_canonical_class(c) for c in classes]
    if not canonical:
        raise ValueError("no classes to evaluate")
    scene = _build_scene(gt, dt)
    result: dict[str, Any] = {}
    for cls in canonical:
        result[cls] = {
            d.name: _evaluate_class_difficulty(scene, cls.lower(), d) for d in DIFFICULTIES
        }
    result["moderate_mean"] = float(np.mean([result[c]["moderate"]["R40"] for c in canonical]))
    return result


def format_kitti_table(result: Mapping[str, Any]) -> str:
    """The AP table (class x difficulty, R40 and R11) with the Moderate mean first."""
    classes = [name for name in result if name != "moderate_mean"]
    header = f"{'class':<12}{'IoU':>6}" + "".join(
        f"{d.name.capitalize() + ' R40':>14}{'R11':>8}" for d in DIFFICULTIES
    )
    lines = [
        f"KITTI 2D AP, Moderate mean (R40): {result['moderate_mean']:.2f}",
        header,
        "-" * len(header),
    ]
    for cls in classes:
        row = f"{cls:<12}{MIN_OVERLAP[cls.lower()]:>6.2f}"
        for d in DIFFICULTIES:
            row += f"{result[cls][d.name]['R40']:>14.2f}{result[cls][d.name]['R11']:>8.2f}"
        lines.append(row)
    return "\n".join(lines)
