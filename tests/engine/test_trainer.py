import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from liafkd.cli.main import main
from liafkd.config import load_config
from liafkd.engine.checkpoint import load_checkpoint
from liafkd.engine.evaluate import evaluate_checkpoint


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_train_writes_checkpoints_metrics_and_evaluates(tiny_config, tmp_path, capsys):
    cfg_path = tiny_config("run")
    assert main(["train", str(cfg_path)]) == 0
    out = tmp_path / "run"
    records = read_jsonl(out / "metrics.jsonl")
    steps = [r for r in records if r["type"] == "train"]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert len(epochs) == 2 and len(steps) == 2 * 3  # 9 train images, batch 3
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in steps)
    assert {"loss_cls", "loss_bbox", "loss_dfl", "lr"} <= set(steps[0])
    assert "AP" in epochs[-1]["val"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch_1.pt", "epoch_2.pt"]
    ckpt = load_checkpoint(out / "checkpoints" / "epoch_2.pt")
    assert {"model", "optimizer", "scaler", "rng", "epoch", "step"} <= set(ckpt)
    assert ckpt["meta"]["class_names"] == ["Car", "Pedestrian", "Cyclist"]
    assert set(load_checkpoint(out / "final.pt")) == {"model", "meta"}

    metrics, detections = evaluate_checkpoint(load_config(cfg_path), str(out / "final.pt"))
    assert metrics["AP"] == pytest.approx(epochs[-1]["val"]["AP"])
    assert all(d["category_id"] in (1, 2, 3) for d in detections)
    assert main(["eval", str(cfg_path), "--checkpoint", str(out / "final.pt")]) == 0
    printed = capsys.readouterr().out
    assert "AP50" in printed and "KITTI 2D AP, Moderate mean (R40)" in printed
    assert set(metrics["kitti"]) == {"Car", "Pedestrian", "Cyclist", "moderate_mean"}
    assert set(epochs[-1]["val"]["kitti"]["Car"]) == {"easy", "moderate", "hard"}
    assert (out / "eval" / "detections.json").is_file()


def test_resume_from_epoch_checkpoint_matches_uninterrupted(tiny_config, tmp_path):
    full = tiny_config("full")
    assert main(["train", str(full)]) == 0
    part = tiny_config("part")
    assert (
        main(["train", str(part), "--set", "train.schedule.epochs=2", "--set", "train.max_steps=3"])
        == 0
    )  # stops after epoch 1 (3 steps)
    ckpts = tmp_path / "part" / "checkpoints"
    assert [p.name for p in ckpts.iterdir()] == ["epoch_1.pt"]
    # the stopped run is finished (final.pt): it is continued in a new output_dir
    rest = ["--resume", str(ckpts / "epoch_1.pt"), "--set", f"output_dir={tmp_path / 'rest'}"]
    assert main(["train", str(part), *rest]) == 0
    a = load_checkpoint(tmp_path / "full" / "final.pt")["model"]
    b = load_checkpoint(tmp_path / "rest" / "final.pt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


def _train_process(cfg_path, *extra):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "liafkd", "train", str(cfg_path), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )


def _wait_for(path_glob, folder, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(folder.glob(path_glob)) if folder.is_dir() else []
        if found:
            return found
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read().decode())
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no {path_glob} in {folder} after {timeout}s")


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tiny_config, tmp_path):
    full = tiny_config("full", checkpoint_steps=1)
    assert main(["train", str(full)]) == 0
    killed = tiny_config("killed", checkpoint_steps=1)
    proc = _train_process(killed)
    _wait_for("epoch_2_iter_1.pt", tmp_path / "killed" / "checkpoints", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "final.pt").exists()
    assert main(["train", str(killed), "--resume"]) == 0
    a = load_checkpoint(tmp_path / "full" / "final.pt")["model"]
    b = load_checkpoint(tmp_path / "killed" / "final.pt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


@pytest.mark.slow
def test_sigterm_finishes_step_writes_checkpoint_and_exits(tiny_config, tmp_path):
    cfg = tiny_config("term", checkpoint_steps=100)
    proc = _train_process(cfg)
    _wait_for("metrics.jsonl", tmp_path / "term", proc)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert "resume with --resume" in output
    ckpts = list((tmp_path / "term" / "checkpoints").glob("epoch_*_iter_*.pt"))
    assert len(ckpts) == 1
    assert load_checkpoint(ckpts[0])["step"] >= 1


def test_nonfinite_loss_stops_with_terms_and_image_ids(tiny_config, monkeypatch, capsys):
    from liafkd.engine import trainer as trainer_mod

    original_step = trainer_mod.Trainer.train_step
    original_forward = trainer_mod.DetectorTrainModule.forward
    training = []  # non-empty once training steps begin (the checks before them pass)

    def step(self, images, targets):
        training.append(True)
        return original_step(self, images, targets)

    def poisoned(self, images, targets):
        terms = original_forward(self, images, targets)
        if training:
            terms["loss_cls"] = terms["loss_cls"] * float("nan")
        return terms

    monkeypatch.setattr(trainer_mod.Trainer, "train_step", step)
    monkeypatch.setattr(trainer_mod.DetectorTrainModule, "forward", poisoned)
    assert main(["train", str(tiny_config("nan", max_nonfinite=2))]) == 1
    err = capsys.readouterr().err
    assert "2 steps in a row with a non-finite loss" in err
    assert "'loss_cls': nan" in err and "image ids [" in err


class Killed(Exception):
    """Stands for a SIGKILL: the process stops between two steps, nothing more runs."""


def _without_timings(records):
    timings = {"img_s", "epoch_time_s"}
    return [{k: v for k, v in r.items() if k not in timings} for r in records]


def test_killed_and_resumed_log_equals_uninterrupted_line_for_line(
    tiny_config, tmp_path, monkeypatch, capsys
):
    from liafkd.engine import trainer as trainer_mod

    assert main(["train", str(tiny_config("full", checkpoint_steps=2))]) == 0
    killed = tiny_config("killed", checkpoint_steps=2)
    original_step = trainer_mod.Trainer.train_step

    def step(self, images, targets):
        if self.state.step == 5:  # checkpoints at steps 2, 3 (epoch 1) and 4; 5 is logged
            raise Killed
        return original_step(self, images, targets)

    monkeypatch.setattr(trainer_mod.Trainer, "train_step", step)
    with pytest.raises(Killed):
        main(["train", str(killed)])
    log = tmp_path / "killed" / "metrics.jsonl"
    assert [r.get("step") for r in read_jsonl(log)][-1] == 5
    monkeypatch.setattr(trainer_mod.Trainer, "train_step", original_step)
    capsys.readouterr()
    assert main(["train", str(killed), "--resume"]) == 0
    assert "dropped 1 line(s) logged after the checkpoint" in capsys.readouterr().out
    want = _without_timings(read_jsonl(tmp_path / "full" / "metrics.jsonl"))
    got = _without_timings(read_jsonl(log))
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.keys() == b.keys()
        val_a, val_b = a.pop("val", {}), b.pop("val", {})
        # an epoch's means cover the steps before and after the resume
        assert a == pytest.approx(b, rel=1e-5, abs=1e-7)
        assert val_a.get("AP") == pytest.approx(val_b.get("AP"), abs=1e-6)


def test_resume_refuses_another_architecture_or_class_order(tiny_config, tmp_path, capsys):
    cfg = tiny_config("run", max_steps=1, checkpoint_steps=1)
    assert main(["train", str(cfg)]) == 0
    capsys.readouterr()
    resume = ["train", str(cfg), "--resume"]
    assert main([*resume, "--set", "model.head_channels=8"]) == 2
    err = capsys.readouterr().err
    assert "another architecture" in err and "model.head_channels: 16 -> 8" in err
    assert "head." in err and "Traceback" not in err
    order = "[Pedestrian, Car, Cyclist]"
    sets = ["--set", f"data.train.classes={order}", "--set", f"data.val.classes={order}"]
    assert main([*resume, *sets]) == 2
    err = capsys.readouterr().err
    assert "trained on classes ['Car', 'Pedestrian', 'Cyclist']" in err
    assert "['Pedestrian', 'Car', 'Cyclist']" in err


def test_resume_prints_a_changed_lr_and_strict_resume_refuses_it(tiny_config, tmp_path, capsys):
    cfg = tiny_config("run", max_steps=1, checkpoint_steps=1)
    assert main(["train", str(cfg)]) == 0
    for name in ("final.pt", "summary.json"):  # as if killed after its checkpoint: a
        (tmp_path / "run" / name).unlink()  # finished run is never trained further
    capsys.readouterr()
    change = ["--set", "train.optim.lr=0.002", "--set", "train.max_steps=2"]
    assert main(["train", str(cfg), "--resume", "--strict-resume", *change]) == 2
    assert "train.optim.lr: 0.001 -> 0.002" in capsys.readouterr().err
    assert main(["train", str(cfg), "--resume", *change]) == 0
    out = capsys.readouterr().out
    assert "resuming with a changed config" in out and "train.optim.lr: 0.001 -> 0.002" in out
    assert "max_steps" not in out  # free to change


def _poison(monkeypatch, bad):
    """Make the loss NaN on the training steps (counted from 0) for which bad(i) holds."""
    from liafkd.engine import trainer as trainer_mod

    original_step = trainer_mod.Trainer.train_step
    original_forward = trainer_mod.DetectorTrainModule.forward
    calls = []

    def step(self, images, targets):
        calls.append(True)
        return original_step(self, images, targets)

    def poisoned(self, images, targets):
        terms = original_forward(self, images, targets)
        if calls and bad(len(calls) - 1):
            terms["loss_cls"] = terms["loss_cls"] * float("nan")
        return terms

    monkeypatch.setattr(trainer_mod.Trainer, "train_step", step)
    monkeypatch.setattr(trainer_mod.DetectorTrainModule, "forward", poisoned)


def test_nonfinite_steps_in_a_row_count_across_epochs(tiny_config, tmp_path, monkeypatch, capsys):
    _poison(monkeypatch, lambda i: True)  # 3 steps per epoch, every one NaN
    assert main(["train", str(tiny_config("nan", max_nonfinite=4))]) == 1
    err = capsys.readouterr().err
    assert "4 steps in a row with a non-finite loss" in err
    assert "epoch 2, batch 1/3" in err
    assert not (tmp_path / "nan" / "final.pt").exists()


def test_nonfinite_share_of_the_run_stops_it(tiny_config, tmp_path, monkeypatch, capsys):
    _poison(monkeypatch, lambda i: i % 2 == 0)  # never two in a row; half the steps
    assert main(["train", str(tiny_config("nan", max_nonfinite=2))]) == 1
    err = capsys.readouterr().err
    assert "3 of 6 steps skipped for a non-finite loss (50% > train.max_nonfinite_share 20%)" in err
    assert "the last at epoch 2, batch 2/3" in err
    assert not (tmp_path / "nan" / "final.pt").exists()


def test_channels_last_teacher_changes_layout_not_values(tiny_distill_runs):
    """`train.channels_last: teacher` stores the frozen teacher NHWC; the student stays
    NCHW and a distillation step's loss terms match the contiguous run's."""
    from liafkd.engine.build import load_indices
    from liafkd.engine.runs import build_distill_module
    from liafkd.engine.trainer import Trainer, seed_everything

    path = tiny_distill_runs["liaf"]
    terms = {}
    for layout in ("off", "teacher"):
        cfg = load_config(path)
        cfg.train.channels_last = layout
        train_index, val_index = load_indices(cfg)
        seed_everything(0)
        module = build_distill_module(cfg, str(path), train_index.class_names)
        trainer = Trainer(cfg, module, train_index, val_index)
        weight = module.teacher.backbone.conv1.weight
        assert weight.is_contiguous(memory_format=torch.channels_last) == (layout == "teacher")
        assert module.student.backbone.conv1.weight.is_contiguous()
        images, targets, _ = next(iter(trainer.loader))
        with torch.no_grad():
            terms[layout] = {k: float(v) for k, v in trainer.module(images, targets).items()}
    assert terms["teacher"].keys() == terms["off"].keys()
    for name, value in terms["off"].items():
        assert terms["teacher"][name] == pytest.approx(value, rel=1e-4, abs=1e-6), name
