"""A bench refuses to mix students of two teachers: the recorded rows name their teacher
checkpoint's sha256, and a resumed bench whose teacher is another file stops before
training a student. Fabricated results and checkpoint files: nothing trains here."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import fake_records
from test_bench_run import tiny_bench

from liafkd.bench.config import load_bench
from liafkd.bench.results import read_results
from liafkd.bench.runner import BenchRunner, TeacherMismatch, plan_runs, plan_teacher

RECORDED = b"the teacher the committed rows were distilled from"
RETRAINED = b"a teacher retrained on another machine"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fabricated_bench(folder: Path, teacher_bytes: bytes | None, recorded_sha: str | None):
    """The tiny bench with a results.jsonl holding its teacher record and the seed-0 runs
    (naming `recorded_sha`, or nothing when None), and `teacher_bytes` as its checkpoint."""
    bench = load_bench(tiny_bench(folder))
    teacher = plan_teacher(bench, "synth")
    runs = [r for r in plan_runs(bench, "synth", teacher) if r.seed == 0]
    template = {r["kind"]: r for r in fake_records()}
    records = [{**template["teacher"], "key": teacher.key}]
    records += [{**template["run"], "key": r.key, "method": r.method.name} for r in runs]
    if recorded_sha is not None:
        records[0]["checkpoint_sha256"] = recorded_sha
        for record in records[1:]:
            record["teacher_sha256"] = recorded_sha
    bench.output_dir.mkdir(parents=True)
    lines = "".join(json.dumps(r) + "\n" for r in records)
    (bench.output_dir / "results.jsonl").write_text(lines)
    if teacher_bytes is not None:
        teacher.checkpoint.parent.mkdir(parents=True)
        teacher.checkpoint.write_bytes(teacher_bytes)
    return bench, teacher


def units(bench) -> list[dict]:
    """The results' teacher, run and cost records (not the bench's description)."""
    records = read_results(bench.output_dir / "results.jsonl")
    return [r for r in records if r["kind"] != "bench"]


@pytest.fixture
def no_training(monkeypatch):
    """Students are not trained: `execute` only notes (method, seed)."""
    executed = []
    monkeypatch.setattr(
        BenchRunner, "execute", lambda self, spec: executed.append((spec.method.name, spec.seed))
    )
    return executed


def test_a_different_teacher_checkpoint_is_refused_before_any_student(tmp_path, no_training):
    bench, teacher = fabricated_bench(tmp_path, RETRAINED, sha(RECORDED))
    before = units(bench)
    with pytest.raises(TeacherMismatch) as refusal:
        BenchRunner(bench, log=lambda line: None).run(cost=False)
    message = str(refusal.value)
    assert no_training == [] and units(bench) == before
    assert f"recorded: teacher sha256 {sha(RECORDED)} (val AP 50.0), 3 runs" in message
    assert f"here:     teacher sha256 {sha(RETRAINED)} (val AP unknown)" in message
    assert str(teacher.checkpoint) in message and "--out NEW_FOLDER" in message


def test_a_retrained_teacher_is_compared_before_it_is_recorded(tmp_path, no_training, monkeypatch):
    """The work tree lacks the teacher (a fresh checkout): it is retrained, found to be
    another file, and neither recorded nor used."""
    bench, teacher = fabricated_bench(tmp_path, None, sha(RECORDED))

    def retrain(*args, **kwargs):
        teacher.checkpoint.parent.mkdir(parents=True)
        teacher.checkpoint.write_bytes(RETRAINED)

    monkeypatch.setattr("liafkd.engine.runs.train_detector", retrain)
    monkeypatch.setattr("liafkd.bench.runner.evaluate", lambda *a: {"AP": 0.482})
    log = []
    with pytest.raises(TeacherMismatch, match=r"\(val AP 48\.2\)"):
        BenchRunner(bench, log=log.append).run(cost=False)
    assert no_training == []
    assert any("is missing: retraining it" in line for line in log)
    (teacher_record,) = [r for r in units(bench) if r["kind"] == "teacher"]
    assert teacher_record["checkpoint_sha256"] == sha(RECORDED)


def test_the_same_teacher_resumes_and_new_rows_name_it(tmp_path, monkeypatch):
    bench, _ = fabricated_bench(tmp_path, RECORDED, sha(RECORDED))
    metrics = {"AP": 0.4, "per_class": {}}
    monkeypatch.setattr("liafkd.engine.runs.distill_student", lambda *a, **k: {"steps": 1})
    monkeypatch.setattr("liafkd.bench.runner.evaluate", lambda *a: metrics)
    log = []
    BenchRunner(bench, log=log.append).run(cost=False)
    runs = [r for r in units(bench) if r["kind"] == "run"]
    assert sorted((r["method"], r["seed"]) for r in runs if r["seed"] == 1) == [
        ("liaf", 1),
        ("mimic", 1),
        ("none", 1),
    ]
    assert {r["teacher_sha256"] for r in runs} == {sha(RECORDED)}
    assert not any("warning" in line for line in log)


def test_rows_without_a_teacher_sha256_warn_once_and_go_on(tmp_path, no_training):
    """Results written before the sha256 was recorded: their teacher is unknown."""
    bench, _ = fabricated_bench(tmp_path, RETRAINED, None)
    log = []
    BenchRunner(bench, log=log.append).run(cost=False)
    warnings = [line for line in log if line.startswith("warning")]
    assert len(warnings) == 1 and "3 run rows" in warnings[0]
    assert sha(RETRAINED) in warnings[0]
    assert no_training == [("none", 1), ("mimic", 1), ("liaf", 1)]


def test_cli_prints_the_refusal(tmp_path, no_training, capsys):
    from liafkd.cli.main import main

    bench, _ = fabricated_bench(tmp_path, RETRAINED, sha(RECORDED))
    assert main(["bench", str(bench.source), "--no-cost"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "distilled from another teacher" in err
    assert no_training == []


def rewrite_runs(folder: Path, teacher_sha: dict[int, str | None]) -> None:
    """Give the fabricated bench's run rows of each seed a teacher sha256 (or none)."""
    path = folder / "results.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for record in records:
        if record["kind"] == "run" and teacher_sha[record["seed"]] is not None:
            record["teacher_sha256"] = teacher_sha[record["seed"]]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_report_says_which_teacher_the_rows_name(fake_bench):
    from liafkd.bench.report import write_reports

    def report() -> str:
        return write_reports(fake_bench)["markdown"].read_text()

    rewrite_runs(fake_bench, {0: sha(RECORDED), 1: sha(RECORDED), 2: None})
    assert "The teacher identity of 2 of 6 rows is unrecorded" in report()
    rewrite_runs(fake_bench, {0: sha(RECORDED), 1: sha(RECORDED), 2: sha(RECORDED)})
    assert f"one teacher checkpoint (sha256 prefix {sha(RECORDED)[:16]})" in report()
    rewrite_runs(fake_bench, {0: sha(RECORDED), 1: sha(RETRAINED), 2: sha(RECORDED)})
    assert "distilled from 2 different teacher checkpoints" in report()
