import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liafkd.cli.main import main
from liafkd.data.records import DatasetIndex, ImageRecord
from liafkd.evaluation.coco import evaluate_coco, format_coco_table, load_detections

REPO = Path(__file__).resolve().parents[2]
# 101-point interpolated AP when precision is 1 up to recall 0.5, then nothing:
# recall thresholds 0.00..0.50 (51 of 101) score 1.
HALF_RECALL_AP = 51 / 101


def record(image_id: int, boxes: list[list[float]], labels: list[int], **attrs) -> ImageRecord:
    return ImageRecord(
        image_id=image_id,
        file_name=f"/img{image_id}.jpg",
        width=640,
        height=480,
        boxes_xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
        labels=np.asarray(labels, np.int64),
        attrs={k: np.asarray(v) for k, v in attrs.items()},
    )


def detection(image_id: int, category_id: int, xyxy: list[float], score: float = 0.9) -> dict:
    x1, y1, x2, y2 = xyxy
    return {
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "score": score,
    }


@pytest.fixture
def index() -> DatasetIndex:
    # sizes: 20x20 small, 50x50 medium, 200x200 large
    return DatasetIndex(
        [
            record(1, [[10, 10, 30, 30], [100, 100, 150, 150]], [0, 1]),
            record(2, [[200, 200, 400, 400]], [1]),
        ],
        ["cat", "dog"],
    )


def perfect(index: DatasetIndex) -> list[dict]:
    return [
        detection(r.image_id, int(label) + 1, box.tolist())
        for r in index.records
        for box, label in zip(r.boxes_xyxy, r.labels, strict=True)
    ]


def test_perfect_detections_score_one(index):
    metrics = evaluate_coco(index, perfect(index))
    for name in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
        assert metrics[name] == pytest.approx(1.0)
    assert metrics["per_class"] == {"cat": pytest.approx(1.0), "dog": pytest.approx(1.0)}
    assert "Average Precision" in metrics["summary"]


def test_detections_shifted_off_every_box_score_zero(index):
    shifted = [
        dict(d, bbox=[d["bbox"][0] + 300, d["bbox"][1] + 0, *d["bbox"][2:]]) for d in perfect(index)
    ]
    metrics = evaluate_coco(index, shifted)
    assert metrics["AP"] == 0.0 and metrics["AP50"] == 0.0
    assert metrics["per_class"] == {"cat": 0.0, "dog": 0.0}


def test_one_of_two_boxes_found():
    gt = DatasetIndex([record(1, [[10, 10, 110, 110], [300, 300, 400, 400]], [0, 0])], ["cat"])
    metrics = evaluate_coco(gt, [detection(1, 1, [10, 10, 110, 110])])
    assert metrics["AP"] == pytest.approx(HALF_RECALL_AP)
    assert metrics["per_class"]["cat"] == pytest.approx(HALF_RECALL_AP)
    assert metrics["APl"] == pytest.approx(HALF_RECALL_AP)  # 100x100 > 96x96: large
    assert metrics["APs"] is None and metrics["APm"] is None  # no GT of those sizes


def test_false_positive_on_an_image_without_ground_truth():
    gt = DatasetIndex([record(1, [[10, 10, 110, 110]], [0]), record(2, [], [])], ["cat"])
    detections = [detection(1, 1, [10, 10, 110, 110], 0.5), detection(2, 1, [0, 0, 50, 50], 0.9)]
    # ranked: FP then TP -> precision 0.5 at recall 1
    assert evaluate_coco(gt, detections)["AP"] == pytest.approx(0.5)


def test_no_detections_give_zero_without_crash(index):
    metrics = evaluate_coco(index, [])
    assert metrics["AP"] == 0.0 and metrics["per_class"] == {"cat": 0.0, "dog": 0.0}


def test_difficult_ground_truth_is_ignored():
    boxes = [[10, 10, 110, 110], [300, 300, 400, 400]]
    gt = DatasetIndex([record(1, boxes, [0, 0], difficult=[False, True])], ["cat"])
    found_easy = [detection(1, 1, boxes[0])]
    assert evaluate_coco(gt, found_easy)["AP"] == pytest.approx(1.0)
    # a detection on the difficult box is not a false positive either
    assert evaluate_coco(gt, found_easy + [detection(1, 1, boxes[1], 0.95)])["AP"] == pytest.approx(
        1.0
    )


def test_class_without_ground_truth_is_none(index):
    three = DatasetIndex(index.records, ["cat", "dog", "bird"])
    assert evaluate_coco(three, perfect(index))["per_class"]["bird"] is None


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"image_id": 9}, "image_id 9 is not in the dataset"),
        ({"category_id": 0}, "category_id 0 is not one of 1..2"),
        ({"bbox": [1, 2, 3]}, "bbox"),
        ({"score": "high"}, "score"),
    ],
)
def test_bad_detections_are_named(index, bad, message):
    detections = perfect(index)
    detections[1] = dict(detections[1], **bad)
    with pytest.raises(ValueError, match=rf"detections\[1\]: .*{message}"):
        evaluate_coco(index, detections)


def test_quiet_by_default(index, capsys):
    evaluate_coco(index, perfect(index))
    assert capsys.readouterr().out == ""
    evaluate_coco(index, perfect(index), quiet=False)
    assert "Average Precision" in capsys.readouterr().out


def test_format_coco_table():
    metrics = {"AP": 0.5123, "AP50": 0.9, "AP75": 0.4, "APs": None, "APm": 0.3, "APl": 0.6,
               "per_class": {"cat": 0.25, "bird": None}}  # fmt: skip
    lines = format_coco_table(metrics).splitlines()
    assert lines[1].split() == ["AP", "51.2"]
    assert lines[4].split() == ["APs", "-"]
    assert lines[-2].split() == ["cat", "25.0"] and lines[-1].split() == ["bird", "-"]


def test_load_detections_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_detections(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(ValueError, match=r"bad\.json: invalid JSON"):
        load_detections(tmp_path / "bad.json")
    (tmp_path / "obj.json").write_text("{}")
    with pytest.raises(ValueError, match="JSON list"):
        load_detections(tmp_path / "obj.json")


def write_coco_dataset(tmp_path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (640, 480)).save(tmp_path / "a.png")
    ann = {
        "images": [{"id": 1, "file_name": "a.png", "width": 640, "height": 480}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 100, 100]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [300, 300, 100, 100]},
        ],
        "categories": [{"id": 1, "name": "cat"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    config = tmp_path / "ds.yaml"
    config.write_text("format: coco\nroot: .\nann_file: ann.json\n")
    return config


def test_eval_cli(tmp_path, capsys):
    config = write_coco_dataset(tmp_path)
    results = tmp_path / "dets.json"
    results.write_text(json.dumps([detection(1, 1, [10, 10, 110, 110])]))
    out = tmp_path / "metrics.json"
    args = ["eval", "--dataset", str(config), "--results", str(results), "--json", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[1].split() == ["AP", f"{100 * HALF_RECALL_AP:.1f}"]
    assert json.loads(out.read_text())["AP"] == pytest.approx(HALF_RECALL_AP)
    results.write_text(json.dumps([detection(5, 1, [10, 10, 110, 110])]))
    assert main(args) == 2
    assert "image_id 5 is not in the dataset" in capsys.readouterr().err


def test_eval_cli_needs_a_complete_mode(tmp_path, capsys):
    assert main(["eval", "exp.yaml"]) == 2
    assert "needs --checkpoint" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing.yaml"), "--checkpoint", "m.pt"]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main(["eval"]) == 2
    assert "--dataset and --results" in capsys.readouterr().err


def test_eval_cli_on_bccd_perfect_detections(shared_data, tmp_path, capsys):
    config = REPO / "configs" / "datasets" / "bccd_val.yaml"
    converted = tmp_path / "val.json"
    assert main(["data", "convert", str(config), "--to", "coco", "--out", str(converted)]) == 0
    annotations = json.loads(converted.read_text())["annotations"]
    assert len(annotations) == 1137
    results = tmp_path / "dets.json"
    results.write_text(json.dumps([dict(a, score=1.0) for a in annotations]))
    out = tmp_path / "m.json"
    args = ["eval", "--dataset", str(config), "--results", str(results), "--json", str(out)]
    assert main(args) == 0
    metrics = json.loads(out.read_text())
    assert metrics["AP"] == pytest.approx(1.0)
    assert set(metrics["per_class"]) == {"RBC", "WBC", "Platelets"}


@st.composite
def random_ground_truth(draw) -> DatasetIndex:
    records = []
    for image_id in range(1, draw(st.integers(1, 3)) + 1):
        boxes = []
        for _ in range(draw(st.integers(0, 8))):
            x1, y1 = draw(st.floats(0, 500)), draw(st.floats(0, 400))
            boxes.append([x1, y1, x1 + draw(st.floats(2, 140)), y1 + draw(st.floats(2, 80))])
        labels = draw(st.lists(st.integers(0, 2), min_size=len(boxes), max_size=len(boxes)))
        records.append(record(image_id, boxes, labels))
    return DatasetIndex(records, ["a", "b", "c"])


@settings(max_examples=25, deadline=None)
@given(gt=random_ground_truth(), data=st.data())
def test_metric_properties(gt, data):
    exact = perfect(gt)
    for det in exact:
        det["score"] = data.draw(st.floats(0.01, 1.0))
    metrics = evaluate_coco(gt, exact)
    defined = [metrics[n] for n in ("AP", "AP50", "AP75", "APs", "APm", "APl")]
    defined += list(metrics["per_class"].values())
    assert all(v == pytest.approx(1.0) for v in defined if v is not None)
    assert (metrics["AP"] is None) == (len(exact) == 0)
    kept = data.draw(st.lists(st.booleans(), min_size=len(exact), max_size=len(exact)))
    partial = evaluate_coco(gt, [d for d, keep in zip(exact, kept, strict=True) if keep])
    if partial["AP"] is not None:
        assert 0.0 <= partial["AP"] <= 1.0
        assert (partial["AP"] == pytest.approx(1.0)) == all(kept)
