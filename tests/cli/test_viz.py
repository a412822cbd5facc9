"""`liafkd viz`: instance-weight pictures of a LIAF-KD run, and TensorBoard export."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from liafkd.cli.main import main
from liafkd.data.records import ImageRecord
from liafkd.engine.tensorboard import metric_scalars, write_tensorboard
from liafkd.viz import (
    load_instance_dumps,
    match_rows_to_gt,
    pick_images,
    plot_weight_distribution,
    plot_weight_vs_instance,
)


def run_dir(config: Path) -> Path:
    return Path(yaml.safe_load(config.read_text())["output_dir"])


def assert_png(path: Path, min_width: int = 400) -> None:
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.width >= min_width
        assert len(set(np.asarray(img.convert("L")).ravel().tolist())) > 10  # not blank


def test_viz_of_a_liaf_run(tiny_distill_runs, tmp_path, capsys):
    config = tiny_distill_runs["liaf"]
    out = tmp_path / "viz"
    assert main(["viz", str(run_dir(config)), "--config", str(config), "--out", str(out)]) == 0
    written = capsys.readouterr().out.split()
    names = {"weight_distribution.png", "gt_weights.png"}
    names |= {f"weight_vs_instance_epoch_{e}.png" for e in (1, 2)}
    assert {p.name for p in out.iterdir()} == names
    assert {Path(p).name for p in written if p.endswith(".png")} == names
    for path in out.iterdir():
        assert_png(path)


def test_viz_without_dumps_explains(tiny_distill_runs, capsys):
    plain = run_dir(tiny_distill_runs["none"])
    assert main(["viz", str(plain)]) == 2
    assert "no epoch_E.jsonl instance dumps" in capsys.readouterr().err


def test_viz_rejects_epochs_without_dump(tiny_distill_runs, capsys):
    assert main(["viz", str(run_dir(tiny_distill_runs["liaf"])), "--epochs", "7"]) == 2
    assert "no instance dump for epochs [7]; dumps exist for [1, 2]" in capsys.readouterr().err


def test_bad_dump_line_is_named(tmp_path):
    dump = tmp_path / "instances" / "epoch_3.jsonl"
    dump.parent.mkdir()
    dump.write_text('{"image_id": 1, "label": 0, "weight": 1.0, "size": 4.0}\n{"image_id": 2\n')
    with pytest.raises(ValueError, match=r"epoch_3.jsonl:2: invalid JSON"):
        load_instance_dumps(tmp_path)
    dump.write_text('{"image_id": 1, "label": 0, "size": 4.0}\n')
    with pytest.raises(ValueError, match=r"epoch_3.jsonl:1: row lacks weight"):
        load_instance_dumps(tmp_path)


def row(image_id, label, box, weight, **extra):
    return {"image_id": image_id, "label": label, "box_orig": box, "weight": weight, **extra}


def test_rows_match_gt_boxes_directly_or_mirrored():
    record = ImageRecord(
        image_id=5,
        file_name="x.png",
        width=100,
        height=50,
        boxes_xyxy=np.array([[10, 10, 30, 40], [60, 5, 90, 45], [12, 10, 32, 40]], np.float32),
        labels=np.array([0, 1, 1]),
    )
    rows = [
        row(5, 0, [10.2, 10, 30, 40.1], 1.4),  # GT 0 as is
        row(5, 1, [10, 5, 40, 45], 0.6),  # GT 1 mirrored (flipped sample): 100 - x
        row(5, 1, [12, 10, 32, 40], 0.9),  # GT 2 (class 1; GT 0 has class 0)
        row(5, 0, [70, 0, 80, 10], 2.0),  # matches nothing
    ]
    assert match_rows_to_gt(rows, record) == {0: 1.4, 1: 0.6, 2: 0.9}


def test_pick_images_by_weight_spread():
    rows = [row(1, 0, [], 1.0), row(1, 0, [], 1.1), row(2, 0, [], 0.5), row(2, 0, [], 1.5)]
    rows += [row(3, 0, [], 1.0), row(4, 0, [], 0.9), row(4, 0, [], 1.3)]
    assert pick_images(rows, 2) == [2, 4]


def test_plots_without_occlusion_or_student_loss(tmp_path):
    """AID dumps have no student_loss, COCO data no occlusion: the panels say so."""
    rng = np.random.default_rng(0)
    dumps = {}
    for epoch in (1, 2, 3):
        sizes, weights = rng.uniform(5, 200, 40), rng.normal(1, 0.1 * epoch, 40)
        dumps[epoch] = [
            {"image_id": i, "label": i % 2, "size": float(s), "weight": float(w)}
            for i, (s, w) in enumerate(zip(sizes, weights, strict=True))
        ]
    assert_png(plot_weight_distribution(dumps, tmp_path / "dist.png"))
    assert_png(plot_weight_vs_instance(dumps[3], 3, ["a", "b"], tmp_path / "inst.png"))


def test_metric_rows_become_tagged_scalars():
    train = {"type": "train", "epoch": 1, "step": 7, "loss": 2.5, "lr": 0.01}
    assert metric_scalars(train) == (7, [("train/loss", 2.5), ("train/lr", 0.01)])
    epoch = {
        "type": "epoch",
        "epoch": 2,
        "loss": 1.5,
        "distill": {"weight_std": 0.2},
        "val": {"AP": 0.3, "per_class": {"Car": 0.4}, "note": "text"},
    }
    assert metric_scalars(epoch) == (
        2,
        [
            ("epoch/loss", 1.5),
            ("distill/weight_std", 0.2),
            ("val/AP", 0.3),
            ("val/per_class/Car", 0.4),
        ],
    )


def test_tensorboard_skipped_with_a_message_when_absent(tiny_distill_runs, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    assert write_tensorboard(run_dir(tiny_distill_runs["liaf"])) is None
    assert "the `tensorboard` package is not installed" in capsys.readouterr().out


def test_tensorboard_events_hold_the_metrics(tiny_distill_runs, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is optional")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    source = run_dir(tiny_distill_runs["liaf"])
    write_tensorboard(source, tmp_path / "tb")
    log_dir = write_tensorboard(source, tmp_path / "tb")  # a rerun replaces the events
    assert len(list(log_dir.iterdir())) == 1
    events = EventAccumulator(str(log_dir), size_guidance={"histograms": 0})  # keep all
    events.Reload()
    rows = [json.loads(line) for line in (source / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["type"] == "epoch"]
    loss = events.Scalars("epoch/loss")
    assert [(e.step, e.value) for e in loss] == [
        (r["epoch"], pytest.approx(r["loss"])) for r in epochs
    ]
    assert "val/AP" in events.Tags()["scalars"]
    assert [e.step for e in events.Histograms("distill/instance_weight")] == [1, 2]
