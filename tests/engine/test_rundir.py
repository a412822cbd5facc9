"""The run folder: a finished run is never overwritten, two runs never share a folder."""

import json
import os
import socket
import subprocess
import sys

import pytest

from liafkd.cli.main import main
from liafkd.engine import rundir
from liafkd.engine.rundir import LOCK_NAME, RunDirError, acquire_lock, release_lock


def snapshot(folder):
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_second_training_into_the_same_folder_is_refused_and_the_first_kept(
    tiny_config, tmp_path, capsys
):
    cfg = tiny_config("run", max_steps=2)
    assert main(["train", str(cfg)]) == 0
    out = tmp_path / "run"
    before = snapshot(out)
    assert {"final.pt", "summary.json", "metrics.jsonl"} <= set(before)
    capsys.readouterr()
    assert main(["train", str(cfg), "--set", "train.seed=1"]) == 2
    err = capsys.readouterr().err
    assert f"{out} already holds a run" in err
    assert "--resume" in err and "--overwrite" in err and "output_dir" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert snapshot(out) == before  # not a byte changed
    assert not (out / LOCK_NAME).exists()


def test_overwrite_clears_the_previous_run_first(tiny_config, tmp_path, capsys):
    cfg = tiny_config("run", max_steps=2, checkpoint_steps=1)
    assert main(["train", str(cfg)]) == 0
    out = tmp_path / "run"
    (out / "notes.txt").write_text("mine")  # not a run file: left alone
    assert main(["train", str(cfg), "--overwrite", "--set", "train.max_steps=1"]) == 0
    assert "deleted the previous run's" in capsys.readouterr().out
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines if json.loads(x)["type"] == "train"] == [1]
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["epoch_1_iter_1.pt"]
    assert (out / "notes.txt").read_text() == "mine"


def test_unwritable_output_dir_is_refused_before_anything_is_built(
    tiny_config, tmp_path, monkeypatch, capsys
):
    from liafkd.engine import build

    def no_build(*a, **k):
        raise AssertionError("built before checking output_dir")

    monkeypatch.setattr(build, "load_indices", no_build)
    (tmp_path / "afile").write_text("")
    cfg = tiny_config("run")
    assert main(["train", str(cfg), "--set", f"output_dir={tmp_path / 'afile' / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert "cannot create output_dir" in err and "Traceback" not in err
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        assert main(["train", str(cfg), "--set", f"output_dir={ro}"]) == 2
        assert "not writable" in capsys.readouterr().err


def _lock_of(pid, host=None):
    return {
        "pid": pid,
        "host": host or socket.gethostname(),
        "start": rundir._process_start(pid),
        "since": 0,
    }


def test_a_live_lock_stops_the_second_process_and_a_stale_one_is_taken_over(tmp_path, capsys):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_NAME).write_text(json.dumps(_lock_of(sleeper.pid)))
        with pytest.raises(RunDirError, match=f"another run is writing here .pid {sleeper.pid}"):
            acquire_lock(tmp_path)
    finally:
        sleeper.kill()
        sleeper.wait()
    lock = acquire_lock(tmp_path)  # its holder is gone: stale
    assert f"stale lock {tmp_path / LOCK_NAME} left by pid {sleeper.pid}" in capsys.readouterr().out
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    release_lock(lock)
    assert not lock.exists()
    (tmp_path / LOCK_NAME).write_text(json.dumps(_lock_of(1, host="elsewhere")))
    with pytest.raises(RunDirError, match="host elsewhere.*delete"):
        acquire_lock(tmp_path)


def test_train_refuses_a_locked_folder_at_once(tiny_config, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps(_lock_of(os.getppid())))  # a live process
    assert main(["train", str(tiny_config("run"))]) == 2
    assert "another run is writing here" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]


def test_eval_writes_beside_the_checkpoint_not_into_the_configs_run(tiny_config, tmp_path):
    other = tiny_config("other", max_steps=1)
    assert main(["train", str(other)]) == 0
    mine = tiny_config("mine")  # its output_dir holds nothing of the other run
    ckpt = tmp_path / "other" / "final.pt"
    assert main(["eval", str(mine), "--checkpoint", str(ckpt)]) == 0
    assert (tmp_path / "other" / "eval" / "detections.json").is_file()
    assert not (tmp_path / "mine").exists()
    assert (
        main(["eval", str(mine), "--checkpoint", str(ckpt), "--out", str(tmp_path / "d.json")]) == 0
    )
    assert (tmp_path / "d.json").is_file()


def test_demo_refuses_a_folder_holding_an_earlier_demo(tmp_path, capsys):
    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "final.pt").write_bytes(b"a finished teacher")
    assert main(["demo", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path} holds an earlier demo's runs (teacher)" in err
    assert (tmp_path / "teacher" / "final.pt").read_bytes() == b"a finished teacher"
    assert not (tmp_path / "configs").exists()


def test_distill_into_a_folder_holding_a_run_is_refused_before_anything_is_built(
    tiny_config, tmp_path, capsys
):
    import yaml

    raw = yaml.safe_load(tiny_config("student").read_text())
    raw["distill"] = {
        "method": "mimic",
        "teacher": {"config": "none.yaml", "checkpoint": "none.pt"},
    }
    cfg = tmp_path / "distill.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    out = tmp_path / "student"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    assert main(["distill", str(cfg)]) == 2  # the teacher files do not exist: never reached
    err = capsys.readouterr().err
    assert f"{out} already holds a run (summary.json)" in err
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]
