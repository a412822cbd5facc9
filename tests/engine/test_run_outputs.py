"""A finished run is never retrained, mixed or overwritten; --overwrite deletes only
the files liafkd wrote; a run never writes over one of its own inputs."""

import json
import shutil

import pytest

from liafkd.cli.main import main
from liafkd.engine.checkpoint import epoch_checkpoints
from liafkd.engine.rundir import RunDirError, clear_run, prepare, release_lock
from liafkd.outputs import Input


def snapshot(folder):
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture
def run(tiny_config, tmp_path):
    """(config, output_dir) of a finished two-step run with step checkpoints."""
    cfg = tiny_config("run", max_steps=2, checkpoint_steps=1)
    assert main(["train", str(cfg)]) == 0
    return cfg, tmp_path / "run"


def train_steps(metrics):
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    return [r["step"] for r in records if r["type"] == "train"]


def test_overwrite_deletes_only_what_liafkd_wrote(run, capsys):
    cfg, out = run
    (out / "eval").mkdir()
    (out / "eval" / "detections.json").write_text("[]")  # liafkd eval's default output
    (out / "eval" / "analysis.md").write_text("my analysis")
    (out / "checkpoints" / "notes.txt").write_text("keep me")
    (out / "checkpoints" / ".epoch_9.pt.tmp-123").write_bytes(b"half")  # an interrupted save
    capsys.readouterr()
    assert main(["train", str(cfg), "--overwrite", "--set", "train.max_steps=1"]) == 0
    said = capsys.readouterr().out
    assert "deleted the previous run's" in said
    assert "kept what liafkd did not write: checkpoints/notes.txt, eval/analysis.md" in said
    assert (out / "eval" / "analysis.md").read_text() == "my analysis"
    assert (out / "checkpoints" / "notes.txt").read_text() == "keep me"
    assert not (out / "eval" / "detections.json").exists()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "epoch_1_iter_1.pt",
        "notes.txt",
    ]


def test_clear_run_removes_emptied_folders_and_nothing_else(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "epoch_1.pt").write_bytes(b"x")
    (tmp_path / "instances").mkdir()
    (tmp_path / "instances" / "epoch_1.jsonl").write_text("{}\n")
    (tmp_path / "final.pt").write_bytes(b"x")
    (tmp_path / "final.pt.bak").write_bytes(b"mine")
    (tmp_path / "my_results").mkdir()
    (tmp_path / "my_results" / "final.pt").write_bytes(b"mine")
    removed, kept = clear_run(tmp_path)
    assert removed == ["final.pt", "checkpoints/", "instances/"]
    assert kept == []
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "final.pt.bak",
        "my_results",
        "my_results/final.pt",
    ]


def test_resume_into_a_finished_run_without_checkpoints_is_refused(run, capsys):
    cfg, out = run
    shutil.rmtree(out / "checkpoints")  # deleted to save space
    before = snapshot(out)
    capsys.readouterr()
    assert main(["train", str(cfg), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"{out} holds a finished run" in err and "nothing to resume" in err
    assert "Traceback" not in err
    assert snapshot(out) == before


def test_resume_that_would_train_a_finished_run_further_is_refused(run, capsys):
    cfg, out = run
    before = snapshot(out)
    capsys.readouterr()
    assert main(["train", str(cfg), "--resume", "--set", "train.max_steps=3"]) == 2
    err = capsys.readouterr().err
    assert "holds a finished run" in err and "--set output_dir=NEW" in err
    assert snapshot(out) == before


def test_resume_of_a_finished_run_reports_it_and_writes_nothing(run, capsys):
    cfg, out = run
    before = snapshot(out)
    assert main(["train", str(cfg), "--resume"]) == 0
    assert "already finished" in capsys.readouterr().out
    assert snapshot(out) == before


def test_another_runs_checkpoint_is_never_resumed_into_a_run(run, tmp_path, capsys):
    cfg, out = run
    other = tmp_path / "other"
    shutil.copytree(out, other)
    ckpt = epoch_checkpoints(other / "checkpoints")[-1]  # after step 2
    before = snapshot(out)
    capsys.readouterr()
    assert main(["train", str(cfg), "--resume", str(ckpt), "--set", f"output_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert "would mix the two runs' logs" in err and str(ckpt) in err
    assert snapshot(out) == before
    # into a new folder it continues, and that folder's log holds only its own lines
    fresh = tmp_path / "fresh"
    args = ["--set", f"output_dir={fresh}", "--set", "train.max_steps=3"]
    assert main(["train", str(cfg), "--resume", str(ckpt), *args]) == 0
    assert train_steps(fresh / "metrics.jsonl") == [3]


def test_an_input_of_the_run_is_never_one_of_its_files(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    teacher = out / "final.pt"
    teacher.write_bytes(b"the teacher")
    for overwrite in (False, True):
        with pytest.raises(RunDirError, match="teacher checkpoint is one of the run files"):
            prepare(out, None, overwrite, [Input(teacher, "teacher checkpoint")])
    assert teacher.read_bytes() == b"the teacher"
    (tmp_path / "afile").write_text("")
    with pytest.raises(RunDirError, match="cannot create output_dir"):
        prepare(tmp_path / "afile", None, False, [])
    kept = tmp_path / "new" / "teachers" / "final.pt"  # in the folder, not a run file
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"another teacher")
    release_lock(prepare(tmp_path / "new", None, False, [Input(kept, "teacher checkpoint")]))
    assert kept.read_bytes() == b"another teacher"
