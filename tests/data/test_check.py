import json
from pathlib import Path

import numpy as np
import pytest
from dataset_fixtures import make_voc, voc_xml, write_dataset_yaml

from liafkd.cli.main import main
from liafkd.config import DatasetConfig, load_dataset_config
from liafkd.data.check import box_size_histogram, format_summary, summarize
from liafkd.data.records import DatasetIndex, ImageRecord, Problem

REPO = Path(__file__).resolve().parents[2]


def record(boxes: list[list[float]], labels: list[int]) -> ImageRecord:
    return ImageRecord(
        image_id=1,
        file_name="/x.jpg",
        width=1000,
        height=1000,
        boxes_xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
        labels=np.asarray(labels, np.int64),
    )


def test_box_size_histogram_hand_counted():
    # sides 10 (area 100), 31.9, 32 (area 1024), 95, 96, 300
    boxes = [[0, 0, 10, 10], [0, 0, 31.9, 32], [0, 0, 32, 32], [0, 0, 95, 96], [0, 0, 96, 96]]
    index = DatasetIndex([record(boxes, [0] * 5), record([[0, 0, 300, 300]], [1])], ["a", "b"])
    histogram = box_size_histogram(index)
    assert histogram["coco_area"] == {"small": 2, "medium": 2, "large": 2}
    assert histogram["sqrt_area"] == {"8-16px": 1, "16-32px": 1, "32-64px": 1, "64-128px": 2,
                                      "256-512px": 1}  # fmt: skip


def test_summary_counts_and_groups_problems():
    problems = [
        Problem("zero_area_box", "a.xml#object 2", "box is 0x0", dropped=True),
        Problem("no_objects", "b.xml", "none"),
        Problem("zero_area_box", "c.xml#object 1", "box is 0x0", dropped=True),
    ]
    index = DatasetIndex([record([[0, 0, 50, 50]], [1]), record([], [])], ["a", "b"], problems)
    summary = summarize(index, DatasetConfig(format="voc", root="/data"))
    assert summary["images"] == 2 and summary["images_without_objects"] == 1
    assert summary["instances"] == 1 and summary["instances_per_class"] == {"a": 0, "b": 1}
    assert summary["dropped"] == 2 and summary["serious_problems"] == 2
    assert [e["location"] for e in summary["problems"]["zero_area_box"]] == [
        "a.xml#object 2",
        "c.xml#object 1",
    ]
    text = format_summary(summary)
    assert "problems: 3 (2 dropped)" in text
    assert "a.xml#object 2: box is 0x0 (dropped)" in text
    assert "  no_objects: 1" in text
    json.dumps(summary)


def test_check_cli_exit_codes_and_json(tmp_path, capsys):
    root = make_voc(tmp_path / "voc", {"a": voc_xml([("dog", 5, 5, 5, 30), ("dog", 1, 1, 9, 9)])})
    config = write_dataset_yaml(tmp_path / "ds.yaml", format="voc", root="voc")
    out = tmp_path / "out" / "summary.json"
    assert main(["data", "check", str(config), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "images: 1" in printed and "zero_area_box: 1" in printed
    assert json.loads(out.read_text())["problems"]["zero_area_box"][0]["location"].endswith(
        "a.xml#object 1"
    )
    strict = write_dataset_yaml(tmp_path / "strict.yaml", format="voc", root="voc", policy="strict")
    assert main(["data", "check", str(strict)]) == 1
    assert "policy is strict" in capsys.readouterr().err
    (root / "Annotations" / "a.xml").write_text(voc_xml([("dog", 1, 1, 9, 9)]))
    assert main(["data", "check", str(strict)]) == 0


def test_check_cli_reports_config_errors(tmp_path, capsys):
    config = write_dataset_yaml(tmp_path / "ds.yaml", format="voc", root="missing")
    assert main(["data", "check", str(config)]) == 2
    assert "dataset root not found" in capsys.readouterr().err
    assert main(["data"]) == 2


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs/datasets").glob("*.yaml")))
def test_shipped_dataset_configs_point_at_shared_data(shared_data, name):
    cfg = load_dataset_config(REPO / "configs" / "datasets" / name)
    assert Path(cfg.root).is_dir()
    assert Path(cfg.root).is_relative_to(shared_data.resolve())


def test_check_cli_on_bccd_reports_the_two_zero_area_boxes(shared_data, tmp_path, capsys):
    out = tmp_path / "bccd.json"
    config = REPO / "configs" / "datasets" / "bccd_trainval.yaml"
    assert main(["data", "check", str(config), "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["images"] == 292
    assert list(summary["problems"]) == ["zero_area_box"]
    assert [Path(e["location"]).name for e in summary["problems"]["zero_area_box"]] == [
        "BloodImage_00338.xml#object 13",
        "BloodImage_00343.xml#object 4",
    ]
    assert "BloodImage_00338.xml#object 13" in capsys.readouterr().out
