"""KITTI 2D evaluation: hand-derived values from the official algorithm, each ignore
rule on its own, a loop-by-loop reference of the devkit rules for random scenes,
the loaders / writer, and the `liafkd kitti-eval` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liafkd.cli.main import main
from liafkd.data.records import DatasetIndex, ImageRecord
from liafkd.evaluation.kitti import (
    DIFFICULTIES,
    MIN_OVERLAP,
    NEIGHBOUR_CLASS,
    KittiFrame,
    evaluate_kitti,
    format_kitti_table,
    frames_from_predictions,
    frames_from_records,
    load_kitti_dir,
    parse_label_file,
    sample_thresholds,
    write_kitti_results,
)

BOX = [100.0, 100.0, 200.0, 200.0]  # 100 px tall: every difficulty keeps it
FAR_BOX = [600.0, 100.0, 700.0, 200.0]  # overlaps nothing


def frame(objects: list[tuple], scored: bool = False, image_id: str = "") -> KittiFrame:
    """objects: (name, box) or (name, box, score) for detections, or
    (name, box, truncated, occluded) for ground truth."""
    names = [o[0] for o in objects]
    boxes = [o[1] for o in objects]
    if scored:
        return KittiFrame(
            names=names,
            truncated=np.zeros(len(objects)),
            occluded=np.zeros(len(objects), dtype=np.int64),
            bbox=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
            score=[o[2] for o in objects],
            image_id=image_id,
        )
    return KittiFrame(
        names=names,
        truncated=[o[2] if len(o) > 2 else 0.0 for o in objects],
        occluded=[o[3] if len(o) > 3 else 0 for o in objects],
        bbox=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        image_id=image_id,
    )


def perfect_scene(n: int, cls: str = "Car") -> tuple[list[KittiFrame], list[KittiFrame]]:
    """n images, each one ground truth of `cls` detected exactly; scores 0.9 down by 0.01."""
    gt = [frame([(cls, BOX)]) for _ in range(n)]
    dt = [frame([(cls, BOX, 0.9 - 0.01 * i)], scored=True) for i in range(n)]
    return gt, dt


def ap(result: dict, cls: str = "Car", difficulty: str = "easy") -> tuple[float, float]:
    return result[cls][difficulty]["R40"], result[cls][difficulty]["R11"]


# ------------------------------------------------------------ hand-derived values


@pytest.mark.parametrize("n", [41, 50, 200])
def test_perfect_detections_of_41_or_more_give_100(n: int) -> None:
    gt, dt = perfect_scene(n)
    result = evaluate_kitti(gt, dt, ["Car"])
    for d in DIFFICULTIES:
        assert ap(result, "Car", d.name) == (100.0, 100.0)
    assert result["moderate_mean"] == 100.0


def test_perfect_pedestrians_and_cyclists_give_100() -> None:
    gt_p, dt_p = perfect_scene(41, "Pedestrian")
    gt_c, dt_c = perfect_scene(41, "Cyclist")
    result = evaluate_kitti(gt_p + gt_c, dt_p + dt_c, ["Pedestrian", "Cyclist"])
    assert ap(result, "Pedestrian", "moderate") == (100.0, 100.0)
    assert ap(result, "Cyclist", "hard") == (100.0, 100.0)


def test_ten_perfect_detections() -> None:
    # 10 true positives, 10 GT: every TP score is kept as a threshold (its recall
    # (i+1)/10 is always ahead of the i/40 sampling point), so precision is 1 at
    # sample indices 0..9 and 0 at 10..40: R40 = 9/40, R11 = 3/11 (indices 0, 4, 8).
    gt, dt = perfect_scene(10)
    assert ap(evaluate_kitti(gt, dt, ["Car"])) == pytest.approx((22.5, 300 / 11), abs=1e-12)


def test_exactly_forty_perfect_detections_miss_the_last_sample_point() -> None:
    # With 40 GT the 40 TP scores give only 40 thresholds (indices 0..39); the 41st
    # sample point keeps precision 0: R40 = 39/40, R11 = 10/11.
    gt, dt = perfect_scene(40)
    assert ap(evaluate_kitti(gt, dt, ["Car"])) == pytest.approx((97.5, 1000 / 11), abs=1e-12)


def test_sample_thresholds_with_twice_as_many_gt_as_steps() -> None:
    # 80 TPs of 80 GT: score i is kept when (2i+3)/160 >= k/40 for the k-th kept one,
    # i.e. indices 0, 1, 3, 5, ..., 79.
    scores = np.linspace(1.0, 0.21, 80)
    kept = sample_thresholds(scores, 80)
    assert kept.tolist() == scores[[0] + [2 * k - 1 for k in range(1, 41)]].tolist()


def test_sample_thresholds_of_nothing() -> None:
    assert sample_thresholds(np.zeros(0), 5).shape == (0,)


def test_one_confident_false_positive() -> None:
    # 41 TPs give 41 thresholds; the FP is above them all, so precision at threshold
    # i is (i+1)/(i+2); the max to the right is 41/42 everywhere.
    gt, dt = perfect_scene(41)
    dt[0] = frame([("Car", BOX, 0.9), ("Car", FAR_BOX, 0.99)], scored=True)
    expected = 100 * 41 / 42
    assert ap(evaluate_kitti(gt, dt, ["Car"])) == pytest.approx((expected, expected), abs=1e-12)


def test_one_confident_false_positive_with_ten_gt() -> None:
    # 10 thresholds with precision (i+1)/(i+2), interpolated to 10/11 at indices 0..9.
    gt, dt = perfect_scene(10)
    dt[3] = frame([("Car", BOX, dt[3].score[0]), ("Car", FAR_BOX, 0.99)], scored=True)
    expected = (9 * (10 / 11) / 40 * 100, 3 * (10 / 11) / 11 * 100)
    assert ap(evaluate_kitti(gt, dt, ["Car"])) == pytest.approx(expected, abs=1e-12)


MID_FP_R40 = (19 + 21 * 41 / 42) / 40 * 100  # 98.75
MID_FP_R11 = (5 + 6 * 41 / 42) / 11 * 100


def test_false_positive_in_the_middle_of_the_ranking() -> None:
    # FP scored between TP 19 (0.71) and TP 20 (0.70): precision 1 at thresholds
    # 0..19, (i+1)/(i+2) from 20 on; interpolated: 1 up to 19, 41/42 from 20.
    gt, dt = perfect_scene(41)
    dt[5] = frame([("Car", BOX, dt[5].score[0]), ("Car", FAR_BOX, 0.705)], scored=True)
    result = evaluate_kitti(gt, dt, ["Car"])
    assert ap(result) == pytest.approx((MID_FP_R40, MID_FP_R11), abs=1e-12)
    assert MID_FP_R40 == pytest.approx(98.75)


def test_duplicate_detection_counts_as_false_positive() -> None:
    # A second, slightly shifted box (IoU 0.9) on the first car with a mid score: the
    # exact box wins (larger overlap) and the duplicate is the FP of the test above.
    gt, dt = perfect_scene(41)
    duplicate = [105.0, 100.0, 205.0, 200.0]
    dt[0] = frame([("Car", BOX, 0.9), ("Car", duplicate, 0.705)], scored=True)
    assert ap(evaluate_kitti(gt, dt, ["Car"])) == pytest.approx((MID_FP_R40, MID_FP_R11))


def test_first_pass_ranks_by_score_threshold_passes_by_overlap() -> None:
    # Car 0 has the exact box scored 0.605 and a shifted one (IoU 0.9) scored 0.95.
    # Collecting TP scores takes the 0.95 box, so the 41 thresholds are 0.95 then
    # 0.89..0.50. At thresholds 30..40 (<= 0.605) both boxes are present; the car
    # takes the exact one (larger overlap) and the 0.95 box becomes a false positive:
    # precision 1 up to index 29, (k+1)/(k+2) after, interpolated to 41/42.
    gt, dt = perfect_scene(41)
    dt[0] = frame([("Car", BOX, 0.605), ("Car", [105.0, 100.0, 205.0, 200.0], 0.95)], True)
    expected = ((29 + 11 * 41 / 42) / 40 * 100, (8 + 3 * 41 / 42) / 11 * 100)
    assert ap(evaluate_kitti(gt, dt, ["Car"])) == pytest.approx(expected, abs=1e-12)


def test_neighbouring_cars_compete_as_in_the_devkit() -> None:
    # Cars A and B side by side; x overlaps A 0.92 and B 0.89, y overlaps A 0.85 and
    # B 0.695 (< 0.7). Scores y 0.95 > x 0.6. Collecting TP scores (highest score
    # first) A takes y and B takes x: TP scores 0.95 and 0.6, plus 8 perfect images
    # at 0.89..0.82: 10 GT, 10 thresholds. At the last (0.6) A takes x (largest
    # overlap), B finds nothing and y is a false positive: precision 9/10 there,
    # 1 before. R40 = (8 + 0.9) / 40, R11 = 3 / 11 (indices 0, 4, 8).
    car_a, car_b = [100.0, 100.0, 200.0, 200.0], [110.0, 100.0, 210.0, 200.0]
    x, y = [104.0, 100.0, 204.0, 200.0], [92.0, 100.0, 192.0, 200.0]
    gt, dt = perfect_scene(9)
    gt[0] = frame([("Car", car_a), ("Car", car_b)])
    dt[0] = frame([("Car", y, 0.95), ("Car", x, 0.6)], scored=True)
    result = evaluate_kitti(gt, dt, ["Car"])
    assert ap(result) == pytest.approx((8.9 / 40 * 100, 300 / 11), abs=1e-12)


def test_detections_in_an_image_without_gt_are_false_positives() -> None:
    gt, dt = perfect_scene(41)
    gt.append(frame([]))
    dt.append(frame([("Car", BOX, 0.99)], scored=True))
    expected = 100 * 41 / 42
    assert ap(evaluate_kitti(gt, dt, ["Car"])) == pytest.approx((expected, expected))


def test_no_detections_and_no_gt_give_zero() -> None:
    result = evaluate_kitti([frame([])], [frame([], scored=True)])
    assert result["moderate_mean"] == 0.0
    assert ap(result, "Cyclist", "hard") == (0.0, 0.0)


def test_golden_values_of_the_python_port() -> None:
    # The one-image case pinned in mmdetection3d's test suite
    # (tests/test_evaluation/test_functional/test_kitti_eval.py, test_do_eval and
    # test_kitti_eval), whose numbers come from the kitti_object_eval_python port.
    gt = frame(
        [
            ("Pedestrian", [674.9179, 165.48549, 693.23694, 193.42134], 0.0, 0),
            ("Cyclist", [676.21954, 165.70988, 691.63745, 193.83748], 0.0, 0),
            ("Car", [389.4093, 182.48041, 421.49072, 202.13422], 0.0, 3),
            ("Car", [232.0577, 186.16724, 301.94623, 217.4024], -1.0, -1),
            ("Car", [758.6537, 172.98509, 816.32434, 212.76743], -1.0, -1),
            ("DontCare", [532.37, 176.35, 542.68, 185.27], -1.0, -1),
            ("DontCare", [559.62, 175.83, 575.4, 183.15], -1.0, -1),
        ]
    )
    names = ["Pedestrian", "Cyclist", "Car", "Car", "Car"]
    scores = [0.18151495, 0.57920843, 0.27795696, 0.23100418, 0.21541929]
    dt = frame(list(zip(names, gt.bbox[:5], scores, strict=True)), scored=True)
    result = evaluate_kitti([gt], [dt], ["Pedestrian", "Cyclist", "Car"])
    for cls in ["Pedestrian", "Cyclist", "Car"]:
        assert ap(result, cls, "easy") == (0.0, 0.0)
        for difficulty in ["moderate", "hard"]:
            assert result[cls][difficulty]["R11"] == pytest.approx(9.09090909)
    assert result["Car"]["moderate"]["R40"] == pytest.approx(2.5)
    assert result["Car"]["hard"]["R40"] == pytest.approx(2.5)
    assert result["Pedestrian"]["moderate"]["R40"] == 0.0
    assert result["moderate_mean"] == pytest.approx(0.8333333333333334)


# ------------------------------------------------------------ ignore rules


def with_top_extra(dt_name: str, dt_box: list[float], gt_extra: list[tuple], cls: str = "Car"):
    """41 perfect `cls` detections plus, in image 0, extra ground truth and one
    extra detection scored above everything."""
    gt, dt = perfect_scene(41, cls)
    gt[0] = frame([(cls, BOX), *gt_extra])
    dt[0] = frame([(cls, BOX, 0.9), (dt_name, dt_box, 0.99)], scored=True)
    return gt, dt


ONE_FP = pytest.approx((100 * 41 / 42, 100 * 41 / 42))


def test_detection_inside_dontcare_is_ignored() -> None:
    gt, dt = with_top_extra("Car", [610.0, 110.0, 690.0, 190.0], [("DontCare", FAR_BOX, -1, -1)])
    assert ap(evaluate_kitti(gt, dt, ["Car"])) == (100.0, 100.0)


def test_dontcare_cover_needs_the_class_min_overlap() -> None:
    # 60 % of the detection lies in the DontCare region: above Pedestrian's 0.5
    # (ignored), below Car's 0.7 (still a false positive).
    half_in = [640.0, 100.0, 740.0, 200.0]
    dontcare = [("DontCare", FAR_BOX, -1, -1)]
    gt, dt = with_top_extra("Car", half_in, dontcare)
    assert ap(evaluate_kitti(gt, dt, ["Car"])) == ONE_FP
    gt, dt = with_top_extra("Pedestrian", half_in, dontcare, cls="Pedestrian")
    assert ap(evaluate_kitti(gt, dt, ["Pedestrian"]), "Pedestrian") == (100.0, 100.0)


def test_van_detected_as_car_is_not_a_false_positive() -> None:
    gt, dt = with_top_extra("Car", FAR_BOX, [("Van", FAR_BOX)])
    assert ap(evaluate_kitti(gt, dt, ["Car"])) == (100.0, 100.0)
    gt, dt = with_top_extra("Car", FAR_BOX, [("Truck", FAR_BOX)])  # no neighbour rule
    assert ap(evaluate_kitti(gt, dt, ["Car"])) == ONE_FP


def test_person_sitting_detected_as_pedestrian_is_not_a_false_positive() -> None:
    gt, dt = with_top_extra("Pedestrian", FAR_BOX, [("Person_sitting", FAR_BOX)], "Pedestrian")
    assert ap(evaluate_kitti(gt, dt, ["Pedestrian"]), "Pedestrian") == (100.0, 100.0)


def test_missed_van_is_not_a_miss() -> None:
    gt, dt = perfect_scene(41)
    gt[0] = frame([("Car", BOX), ("Van", FAR_BOX)])
    assert ap(evaluate_kitti(gt, dt, ["Car"])) == (100.0, 100.0)


def test_detection_below_the_min_height_is_ignored() -> None:
    small = [600.0, 100.0, 660.0, 130.0]  # 30 px: below Easy's 40, above Moderate's 25
    gt, dt = with_top_extra("Car", small, [])
    result = evaluate_kitti(gt, dt, ["Car"])
    assert ap(result, "Car", "easy") == (100.0, 100.0)
    assert ap(result, "Car", "moderate") == ONE_FP


def test_gt_outside_a_difficulty_is_ignored_not_missed() -> None:
    # A heavily occluded (2) car that nobody detects: Easy and Moderate drop it; Hard
    # counts it, 41 TPs of 42 GT sample 40 thresholds (precision 1): 39/40 and 10/11.
    gt, dt = perfect_scene(41)
    gt[0] = frame([("Car", BOX), ("Car", FAR_BOX, 0.0, 2)])
    result = evaluate_kitti(gt, dt, ["Car"])
    assert ap(result, "Car", "easy") == (100.0, 100.0)
    assert ap(result, "Car", "moderate") == (100.0, 100.0)
    assert ap(result, "Car", "hard") == pytest.approx((97.5, 1000 / 11))


def test_truncated_and_short_gt_leave_easy() -> None:
    gt, dt = perfect_scene(41)
    gt[0] = frame([("Car", BOX), ("Car", FAR_BOX, 0.3, 0)])  # truncation above 0.15
    gt[1] = frame([("Car", BOX), ("Car", [600.0, 100.0, 700.0, 140.0])])  # exactly 40 px
    result = evaluate_kitti(gt, dt, ["Car"])
    assert ap(result, "Car", "easy") == (100.0, 100.0)
    assert ap(result, "Car", "moderate")[0] < 100.0


def test_detection_on_an_ignored_gt_is_not_a_false_positive() -> None:
    gt, dt = with_top_extra("Car", FAR_BOX, [("Car", FAR_BOX, 0.0, 3)])
    assert ap(evaluate_kitti(gt, dt, ["Car"]), "Car", "hard") == (100.0, 100.0)


# ------------------------------------------------------------ reference and properties


def reference_overlap(a: list[float], b: list[float], over_a_area: bool) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    union = area_a if over_a_area else area_a + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / union


def reference_image(g: KittiFrame, d: KittiFrame, cls: str, diff, threshold: float | None):
    """One image, plain loops over the devkit rules. threshold None: the first pass
    (returns the TP scores); otherwise (tp, fp) at that threshold."""
    min_overlap = MIN_OVERLAP[cls]
    gt_status, dontcare = [], []
    for name, trunc, occ, box in zip(
        g.names, g.truncated, g.occluded, g.bbox.tolist(), strict=True
    ):
        name = name.lower()
        hard = occ > diff.max_occlusion or trunc > diff.max_truncation
        hard = hard or box[3] - box[1] <= diff.min_height
        if name == cls and not hard:
            gt_status.append(0)
        elif name == cls or name == NEIGHBOUR_CLASS.get(cls):
            gt_status.append(1)
        else:
            gt_status.append(-1)
        if name == "dontcare":
            dontcare.append(box)
    dt_boxes = d.bbox.tolist()
    dt_status = []
    for name, box in zip(d.names, dt_boxes, strict=True):
        if abs(box[3] - box[1]) < diff.min_height:
            dt_status.append(1)
        else:
            dt_status.append(0 if name.lower() == cls else -1)
    assigned = [False] * len(dt_boxes)
    usable = [
        s != -1 and (threshold is None or sc >= threshold)
        for s, sc in zip(dt_status, d.score, strict=True)
    ]
    tp_scores, tp = [], 0
    for i, gbox in enumerate(g.bbox.tolist()):
        if gt_status[i] == -1:
            continue
        chosen, best, chosen_ignored = -1, None, False
        for j, dbox in enumerate(dt_boxes):
            if not usable[j] or assigned[j]:
                continue
            ov = reference_overlap(dbox, gbox, False)
            if ov <= min_overlap:
                continue
            if threshold is None:
                if best is None or d.score[j] > best:
                    chosen, best = j, d.score[j]
            elif dt_status[j] == 0:
                if best is None or chosen_ignored or ov > best:
                    chosen, best, chosen_ignored = j, ov, False
            elif chosen == -1:
                chosen, best, chosen_ignored = j, 0.0, True
        if chosen == -1:
            continue
        assigned[chosen] = True
        if gt_status[i] == 0 and dt_status[chosen] == 0:
            tp += 1
            tp_scores.append(d.score[chosen])
    if threshold is None:
        return tp_scores, sum(s == 0 for s in gt_status)
    fp = 0
    for j, dbox in enumerate(dt_boxes):
        if assigned[j] or not usable[j] or dt_status[j] != 0:
            continue
        if any(reference_overlap(dbox, dc, True) > min_overlap for dc in dontcare):
            continue
        fp += 1
    return tp, fp


def reference_thresholds(scores: list[float], num_gt: int) -> list[float]:
    scores = sorted(scores, reverse=True)
    kept, current = [], 0.0
    for i, score in enumerate(scores):
        last = i == len(scores) - 1
        left = (i + 1) / num_gt
        right = left if last else (i + 2) / num_gt
        if not last and (right - current) < (current - left):
            continue
        kept.append(score)
        current += 1 / 40.0
    return kept


def reference_ap(gt: list[KittiFrame], dt: list[KittiFrame], cls: str, diff) -> tuple[float, float]:
    scores, num_gt = [], 0
    for g, d in zip(gt, dt, strict=True):
        s, n = reference_image(g, d, cls, diff, None)
        scores += s
        num_gt += n
    precision = [0.0] * 41
    for k, t in enumerate(reference_thresholds(scores, num_gt)):
        counts = [reference_image(g, d, cls, diff, t) for g, d in zip(gt, dt, strict=True)]
        tp, fp = sum(c[0] for c in counts), sum(c[1] for c in counts)
        precision[k] = tp / (tp + fp) if tp + fp else 0.0
    precision = [max(precision[k:]) for k in range(41)]
    return sum(precision[1:]) / 40 * 100, sum(precision[::4]) / 11 * 100


GT_NAMES = ["Car", "Car", "Van", "Pedestrian", "Person_sitting", "Cyclist", "DontCare", "Truck"]
DT_NAMES = ["Car", "Pedestrian", "Cyclist"]
DETECTED_AS = {"Van": "Car", "Person_sitting": "Pedestrian", "DontCare": "Car", "Truck": "Car"}
coord = st.integers(0, 6).map(lambda v: 10.0 * v)  # dense: boxes compete for matches
size = st.sampled_from([20.0, 25.0, 30.0, 40.0, 50.0, 80.0])
box = st.tuples(coord, coord, size, size).map(lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]])
gt_object = st.tuples(
    st.sampled_from(GT_NAMES), box, st.sampled_from([0.0, 0.15, 0.3, 0.5, 0.8]), st.integers(0, 3)
)
shift = st.sampled_from([0.0, 0.0, 2.0, -2.0, 5.0, -5.0, 10.0])
score = st.sampled_from([0.1, 0.3, 0.5, 0.5, 0.7, 0.9])  # ties on purpose


@st.composite
def detection_near(draw, objects: list) -> tuple:
    """A detection jittered from a ground truth, mostly with its (detected) class."""
    name, src = draw(st.sampled_from(objects))[:2]
    dx, dy, dw, dh = (draw(shift) for _ in range(4))
    b = [src[0] + dx, src[1] + dy, src[2] + dx + dw, src[3] + dy + dh]
    if draw(st.integers(0, 3)) == 0:
        name = draw(st.sampled_from(DT_NAMES))
    return DETECTED_AS.get(name, name), b, draw(score)


@st.composite
def scene(draw) -> tuple[list[KittiFrame], list[KittiFrame]]:
    gts, dts = [], []
    for _ in range(draw(st.integers(1, 4))):
        objects = draw(st.lists(gt_object, max_size=6))
        detections = []
        for _ in range(draw(st.integers(0, 8))):
            if objects and draw(st.integers(0, 3)) > 0:
                detections.append(draw(detection_near(objects)))
            else:
                detections.append((draw(st.sampled_from(DT_NAMES)), draw(box), draw(score)))
        gts.append(frame(objects))
        dts.append(frame(detections, scored=True))
    return gts, dts


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scene())
def test_matches_a_loop_reference_of_the_devkit_rules(data) -> None:
    gt, dt = data
    result = evaluate_kitti(gt, dt)
    for cls in ["Car", "Pedestrian", "Cyclist"]:
        for d in DIFFICULTIES:
            expected = reference_ap(gt, dt, cls.lower(), d)
            assert ap(result, cls, d.name) == pytest.approx(expected, abs=1e-9), (cls, d.name)


@settings(max_examples=60, deadline=None)
@given(scene(), st.sampled_from(DT_NAMES))
def test_a_top_scored_false_positive_never_raises_ap(data, fp_class: str) -> None:
    gt, dt = data
    before = evaluate_kitti(gt, dt)
    d0 = dt[0]
    fp = frame([(fp_class, [1000.0, 0.0, 1100.0, 100.0], 2.0)], scored=True)
    dt = [
        KittiFrame(
            names=np.concatenate([d0.names, fp.names]),
            truncated=np.zeros(len(d0) + 1),
            occluded=np.zeros(len(d0) + 1, dtype=np.int64),
            bbox=np.concatenate([d0.bbox, fp.bbox]),
            score=np.concatenate([d0.score, fp.score]),
        ),
        *dt[1:],
    ]
    after = evaluate_kitti(gt, dt)
    for cls in ["Car", "Pedestrian", "Cyclist"]:
        for d in DIFFICULTIES:
            for metric in ["R40", "R11"]:
                assert after[cls][d.name][metric] <= before[cls][d.name][metric] + 1e-12


# ------------------------------------------------------------ API checks


def test_frames_must_pair_up() -> None:
    with pytest.raises(ValueError, match="1 ground-truth frames but 2"):
        evaluate_kitti([frame([])], [frame([], scored=True)] * 2)
    with pytest.raises(ValueError, match="out of step"):
        evaluate_kitti([frame([], image_id="000001")], [frame([], scored=True, image_id="000002")])
    with pytest.raises(ValueError, match="unknown KITTI class 'Van'"):
        evaluate_kitti([frame([])], [frame([], scored=True)], ["Van"])
    with pytest.raises(ValueError, match="no scores"):
        evaluate_kitti([frame([])], [frame([("Car", BOX)])])


def test_class_names_are_case_insensitive() -> None:
    gt, dt = perfect_scene(41)
    result = evaluate_kitti(gt, dt, ["car"])
    assert list(result) == ["Car", "moderate_mean"]


def test_table_shows_every_class_and_the_moderate_mean() -> None:
    gt, dt = perfect_scene(10)
    table = format_kitti_table(evaluate_kitti(gt, dt))
    assert table.splitlines()[0] == "KITTI 2D AP, Moderate mean (R40): 7.50"
    for text in ["Car", "Pedestrian", "Cyclist", "Easy R40", "Moderate R40", "Hard R40", "22.50"]:
        assert text in table


# ------------------------------------------------------------ files


LABEL_LINES = [
    "Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59",
    "Van 0.00 1 1.93 0.00 181.57 90.23 231.38 2.06 1.89 4.87 -11.27 1.85 18.20 1.38",
    "DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10",
]


def test_parse_label_and_result_files(tmp_path: Path) -> None:
    label = tmp_path / "000007.txt"
    label.write_text("\n".join(LABEL_LINES) + "\n\n")
    gt = parse_label_file(label)
    assert gt.image_id == "000007" and gt.score is None
    assert gt.names.tolist() == ["Car", "Van", "DontCare"]
    assert gt.occluded.tolist() == [0, 1, -1]
    assert gt.bbox.dtype == np.float64 and gt.bbox[0].tolist() == [587.01, 173.33, 614.12, 200.12]
    result = tmp_path / "r.txt"
    result.write_text(LABEL_LINES[0] + " 0.93\n")
    assert parse_label_file(result).score.tolist() == [0.93]


@pytest.mark.parametrize(
    "line, message",
    [
        ("Car 0 0 0 1 2 3", "expected 15 fields"),
        ("Car 0 0 0 1 x 3 4 1 1 1 1 1 1 1", "y1 is not a finite number"),
        ("Car 0 0 0 10 10 5 20 1 1 1 1 1 1 1", "x2 < x1"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "000001.txt"
    path.write_text(LABEL_LINES[0] + "\n" + line + "\n")
    with pytest.raises(ValueError, match=f"000001.txt:2: .*{message}"):
        parse_label_file(path)


def test_mixed_score_fields_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "000001.txt"
    path.write_text(LABEL_LINES[0] + " 0.5\n" + LABEL_LINES[0] + "\n")
    with pytest.raises(ValueError, match="000001.txt:2: some lines have a score"):
        parse_label_file(path)


def test_load_dir_order_ids_and_missing_files(tmp_path: Path) -> None:
    for stem in ["000002", "000001"]:
        (tmp_path / f"{stem}.txt").write_text(LABEL_LINES[0] + "\n")
    assert [f.image_id for f in load_kitti_dir(tmp_path)] == ["000001", "000002"]
    assert [f.image_id for f in load_kitti_dir(tmp_path, [2])] == ["000002"]
    with pytest.raises(FileNotFoundError, match="000003.txt"):
        load_kitti_dir(tmp_path, ["000003"])
    empty = load_kitti_dir(tmp_path, ["000003"], missing_ok=True)[0]
    assert len(empty) == 0 and empty.score.shape == (0,)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_kitti_dir(tmp_path / "nope")


def random_predictions(rng: np.random.Generator, n_images: int) -> list[dict]:
    dets = []
    for _ in range(n_images):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 600, (n, 2)).astype(np.float32)
        wh = rng.uniform(5, 120, (n, 2)).astype(np.float32)
        dets.append(
            {
                "boxes": torch.from_numpy(np.concatenate([xy, xy + wh], 1)),
                "scores": torch.from_numpy(rng.random(n).astype(np.float32)),
                "labels": torch.from_numpy(rng.integers(0, 3, n)),
            }
        )
    return dets


def test_written_results_evaluate_exactly_like_the_predictions(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    classes = ["Car", "Pedestrian", "Cyclist"]
    dets = random_predictions(rng, 6)
    ids = list(range(6))
    direct = frames_from_predictions(dets, classes, ids)
    # ground truth: the detections themselves, slightly moved, plus DontCare
    gt = [
        frame(
            [(n, b + 3.0) for n, b in zip(f.names, f.bbox, strict=True)] + [("DontCare", FAR_BOX)]
        )
        for f in direct
    ]
    paths = write_kitti_results(tmp_path, ids, dets, classes)
    assert [p.name for p in paths] == [f"{i:06d}.txt" for i in ids]
    line = next(line for p in paths for line in p.read_text().splitlines())
    assert line.split()[1:4] == ["-1", "-1", "-10"] and line.split()[8:15] == (
        "-1 -1 -1 -1000 -1000 -1000 -10".split()
    )
    loaded = load_kitti_dir(tmp_path, ids)
    for a, b in zip(direct, loaded, strict=True):
        np.testing.assert_array_equal(a.bbox, b.bbox)
        np.testing.assert_array_equal(a.score, b.score)
    assert evaluate_kitti(gt, loaded) == evaluate_kitti(gt, direct)


def test_frames_from_predictions_rejects_bad_labels() -> None:
    det = {"boxes": np.zeros((1, 4)), "scores": np.ones(1), "labels": np.array([3])}
    with pytest.raises(ValueError, match="label 3 is not an index"):
        frames_from_predictions([det], ["Car", "Pedestrian", "Cyclist"])
    with pytest.raises(ValueError, match="lack \\['labels'\\]"):
        frames_from_predictions([{"boxes": np.zeros((0, 4)), "scores": []}], ["Car"])


def test_frames_from_records() -> None:
    record = ImageRecord(
        image_id=7,
        file_name="/x/000007.png",
        width=1242,
        height=375,
        boxes_xyxy=np.asarray([BOX], np.float32),
        labels=np.asarray([0]),
        attrs={"truncated": np.asarray([0.2], np.float32), "occluded": np.asarray([1])},
        ignore_boxes_xyxy=np.asarray([FAR_BOX, BOX], np.float32),
        ignore_labels=np.asarray([-1, 0]),
    )
    index = DatasetIndex([record], ["Car", "Pedestrian", "Cyclist"], ignore_class_names=["Van"])
    (f,) = frames_from_records(index)
    assert f.names.tolist() == ["Car", "DontCare", "Van"]
    assert f.truncated.tolist() == pytest.approx([0.2, 0.0, 0.0])
    assert f.occluded.tolist() == [1, 0, 0] and f.image_id == "000007"


# ------------------------------------------------------------ command line


def write_scene(root: Path, gt: list[KittiFrame], dt: list[KittiFrame]) -> tuple[Path, Path]:
    labels, results = root / "label_2", root / "results"
    labels.mkdir()
    results.mkdir()
    for i, (g, d) in enumerate(zip(gt, dt, strict=True)):
        rows = [
            f"{n} {t} {o} -10 {' '.join(map(str, b))} 1 1 1 0 0 10 0"
            for n, t, o, b in zip(g.names, g.truncated, g.occluded, g.bbox.tolist(), strict=True)
        ]
        (labels / f"{i:06d}.txt").write_text("".join(r + "\n" for r in rows))
        if len(d):
            rows = [
                f"{n} -1 -1 -10 {' '.join(map(str, b))} -1 -1 -1 -1000 -1000 -1000 -10 {s}"
                for n, b, s in zip(d.names, d.bbox.tolist(), d.score, strict=True)
            ]
            (results / f"{i:06d}.txt").write_text("".join(r + "\n" for r in rows))
    return labels, results


def test_cli_prints_the_table_and_writes_json(tmp_path: Path, capsys) -> None:
    gt, dt = perfect_scene(41)
    gt.append(frame([("Car", BOX)]))  # missed: image without a result file
    dt.append(frame([], scored=True))
    labels, results = write_scene(tmp_path, gt, dt)
    out = tmp_path / "ap.json"
    code = main(["kitti-eval", "--labels", str(labels), "--results", str(results),
                 "--classes", "Car", "--json", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    assert "Moderate mean (R40)" in captured.out and "42 images" in captured.out
    assert "1 of 42 images have no result file" in captured.err
    written = json.loads(out.read_text())
    assert written == evaluate_kitti(gt, dt, ["Car"])
    assert set(written["Car"]["moderate"]) == {"R40", "R11"}


def test_cli_split_file_selects_images(tmp_path: Path, capsys) -> None:
    gt, dt = perfect_scene(3)
    labels, results = write_scene(tmp_path, gt, dt)
    split = tmp_path / "val.txt"
    split.write_text("000000\n000002\n")
    code = main(["kitti-eval", "--labels", str(labels), "--results", str(results),
                 "--split", str(split)])  # fmt: skip
    assert code == 0 and "2 images" in capsys.readouterr().out


def test_cli_reports_bad_input(tmp_path: Path, capsys) -> None:
    gt, dt = perfect_scene(2)
    labels, results = write_scene(tmp_path, gt, dt)
    (results / "000001.txt").write_text("Car 1 2\n")
    code = main(["kitti-eval", "--labels", str(labels), "--results", str(results)])
    assert code == 2 and "000001.txt:1: expected 15 fields" in capsys.readouterr().err
    code = main(["kitti-eval", "--labels", str(labels), "--results", str(tmp_path / "none")])
    assert code == 2 and "result folder not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["kitti-eval", "--labels", str(labels), "--results", str(empty)])
    assert code == 2 and "none of the 2 images has a result file" in capsys.readouterr().err
