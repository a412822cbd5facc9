"""End to end: a tiny bench (2 methods + liaf, 2 seeds, 2 epochs on 12 synthetic images)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

import liafkd.engine.runs
from liafkd.bench.config import load_bench
from liafkd.bench.results import read_results
from liafkd.bench.runner import (
    BenchRunner,
    claim,
    file_digest,
    plan_runs,
    plan_teacher,
    run_bench,
)

TINY_STUDENT = {"depth": 18, "width": 8, "fpn_channels": 16, "head_convs": 1, "head_channels": 16}
TINY_TEACHER = {"depth": 18, "width": 16, "fpn_channels": 32, "head_convs": 1, "head_channels": 32}
METHODS = ["none", "mimic", "liaf"]
# `liaf` with a learnt selector (lam 0.5): the shipped default (lam 0) builds no selector
# and logs no instance weights, and the bench's weight summaries are under test here
LEARNT_LIAF = {"name": "liaf", "method": "liaf", "options": {"liaf": {"selector": {"lam": 0.5}}}}
SEEDS = [0, 1]


def tiny_bench(folder: Path) -> Path:
    synth = {"format": "synthetic", "root": "synth", "synth_images": 12, "synth_size": [96, 160]}
    train = {
        "optim": {"type": "adamw", "lr": 0.001},
        "schedule": {"epochs": 2, "warmup_iters": 2, "policy": "cosine"},
        "log_interval": 1,
        "device": "cpu",
    }
    raw = {
        "name": "tiny",
        "expected_wall_time": "under a minute",
        "output_dir": str(folder / "out"),
        "work_dir": str(folder / "work"),
        "teacher": {"model": TINY_TEACHER, "train": {**train, "schedule": {"epochs": 1}}},
        "student": {"model": TINY_STUDENT, "train": train},
        "datasets": [
            {
                "name": "synth",
                "train": {**synth, "split": "train"},
                "val": {**synth, "split": "val"},
                "augment": {"image_size": [96, 160]},
                "batch_size": 3,
            }
        ],
        "methods": [*METHODS[:-1], LEARNT_LIAF],
        "distill_options": {"checks": {"enabled": False}},  # an untrained teacher scores 0
        "seeds": SEEDS,
        "cost": {"warmup": 1, "steps": 4, "rounds": 2, "inference_runs": 2},
    }
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def bench_done(tmp_path_factory) -> Path:
    """The tiny bench, run once for every test of this module; returns its config path."""
    folder = tmp_path_factory.mktemp("tiny_bench")
    config = tiny_bench(folder)
    run_bench(load_bench(config))
    return config


def records(config: Path, kind: str) -> list[dict]:
    out = load_bench(config).output_dir / "results.jsonl"
    return [r for r in read_results(out) if r["kind"] == kind]


def test_every_run_has_a_results_line(bench_done):
    runs = records(bench_done, "run")
    assert sorted((r["method"], r["seed"]) for r in runs) == sorted(
        (m, s) for m in METHODS for s in SEEDS
    )
    assert len(records(bench_done, "teacher")) == 1 and len(records(bench_done, "bench")) == 1
    for run in runs:
        assert set(run["metrics"]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl", "kitti"}
        assert run["metrics"]["kitti"]["Car"]["moderate"]["R40"] >= 0
        assert [p["epoch"] for p in run["epochs"]] == [1, 2]
        assert run["timings"]["train_s"] > 0 and run["timings"]["steps"] == 6
        assert run["versions"]["torch"] and len(run["key"]) == 16
        assert not Path(run["run_dir"]).is_absolute()
        has_weights = run["method"] == "liaf"
        assert (run["instance_weights"] is not None) == has_weights
    liaf = next(r for r in runs if r["method"] == "liaf")
    weights = liaf["instance_weights"]
    assert weights["all"]["n"] == sum(b["n"] for b in weights["by_size"].values()) > 0
    assert sum(b["n"] for b in weights["by_occlusion"].values()) == weights["all"]["n"]


def test_records_name_the_teacher_checkpoint(bench_done):
    (teacher,) = records(bench_done, "teacher")
    checkpoint = plan_teacher(load_bench(bench_done), "synth").checkpoint
    assert teacher["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    for kind in ("run", "cost"):
        assert {r["teacher_sha256"] for r in records(bench_done, kind)} == {
            teacher["checkpoint_sha256"]
        }


def test_reports_and_plots(bench_done):
    out = load_bench(bench_done).output_dir
    md = (out / "report.md").read_text()
    assert "| liaf | 2 |" in md and "teacher (reference)" in md
    assert "Cost per training step" in md and "identical for every method" in md
    assert "<table>" in (out / "report.html").read_text()
    for name in ("synth_ap.png", "synth_val_ap.png", "synth_instance_weights.png"):
        assert (out / "plots" / name).stat().st_size > 10_000
    assert json.loads((out / "cost.json").read_text())["synth"]["kind"] == "cost"


def test_cost_numbers_are_sane(bench_done):
    (cost,) = records(bench_done, "cost")
    v = cost["variants"]
    assert set(v) == {*METHODS, "floor"}
    # the floor adds a teacher twice the student's width: more memory than `none` alone.
    # Step times are only checked for being measured: comparing them is the bench's job,
    # and a loaded machine can swap two close timings.
    assert all(v[name]["step_ms"] > 0 for name in v)
    assert all(len(v[name]["step_ms_rounds"]) == cost["rounds"] for name in v)
    assert cost["steps"] >= cost["rounds"]
    assert v["floor"]["peak_mib"] > v["none"]["peak_mib"]
    for name in ("mimic", "liaf"):
        assert 0 < v[name]["distill_share"] < 1
        assert v[name]["peak_mib"] >= v["floor"]["peak_mib"] * 0.95
    assert v["none"]["distill_share"] is None and v["floor"]["distill_share"] is None
    student = cost["student"]
    assert student["identical_across_methods"]
    assert student["params"] > 10_000 and student["flops"] > student["params"]
    assert student["latency_ms"] > 0


def test_a_finished_bench_is_not_redone(bench_done, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a finished unit was run again")

    monkeypatch.setattr(liafkd.engine.runs, "distill_student", refuse)
    monkeypatch.setattr("liafkd.engine.runs.train_detector", refuse)
    monkeypatch.setattr("liafkd.bench.cost.measure_cost", refuse)
    before = (load_bench(bench_done).output_dir / "results.jsonl").read_text()
    BenchRunner(load_bench(bench_done)).run()
    assert (load_bench(bench_done).output_dir / "results.jsonl").read_text() == before


def test_an_interrupted_run_resumes_from_its_checkpoints(bench_done, monkeypatch):
    """A run whose line is missing (killed before it was written) runs again, resuming
    from its own newest checkpoint, and only that run."""
    results = load_bench(bench_done).output_dir / "results.jsonl"
    lines = results.read_text().splitlines()
    parsed = [json.loads(line) for line in lines]
    victim = next(i for i, r in enumerate(parsed) if r["kind"] == "run" and r["method"] == "liaf")
    old = parsed[victim]
    results.write_text("\n".join(lines[:victim] + lines[victim + 1 :]) + "\n")
    real = liafkd.engine.runs.distill_student
    calls = []

    def counting(config, overrides, resume=None):
        calls.append((Path(config).name, resume))
        return real(config, overrides, resume)

    monkeypatch.setattr(liafkd.engine.runs, "distill_student", counting)
    BenchRunner(load_bench(bench_done)).run(cost=False)
    assert calls == [(f"liaf-s{old['seed']}.yaml", "latest")]
    new = next(r for r in records(bench_done, "run") if r["key"] == old["key"])
    assert new["timings"]["resumed"] is True
    assert new["metrics"] == old["metrics"]  # the same final weights, evaluated again


def test_cli_on_a_finished_bench_only_rewrites_the_report(bench_done, capsys):
    from liafkd.cli.main import main

    out = load_bench(bench_done).output_dir
    (out / "report.md").unlink()
    assert main(["bench", str(bench_done), "--threads", "1"]) == 0
    assert "done, skipped" in capsys.readouterr().out
    assert (out / "report.md").is_file()


def test_estimate_times_every_part(bench_done):
    from liafkd.bench.estimate import estimate_wall_time, format_estimate

    bench = load_bench(bench_done)
    teacher = plan_teacher(bench, "synth").checkpoint
    before = file_digest(teacher)
    estimate = estimate_wall_time(bench)
    parts = estimate["datasets"]["synth"]["parts"]
    assert set(parts) == {"teacher", "cost"} | {f"run {m}" for m in METHODS}
    assert all(p.wall > 0 and p.cpu > 0 for p in parts.values())
    assert estimate["total"].wall == pytest.approx(sum(p.wall for p in parts.values()))
    # the random stand-in teacher is written under work_dir/estimate, not over the bench's
    assert file_digest(teacher) == before
    assert list((bench.work_dir / "estimate").rglob("final.pt"))
    assert "total:" in format_estimate(bench, estimate)


def test_a_signal_stops_the_bench_and_a_rerun_continues(tmp_path):
    """SIGTERM mid-run: the run checkpoints and the command exits 143; the same
    command again resumes that run from its checkpoint and finishes the bench."""
    import signal
    import subprocess
    import sys
    import time

    config = tiny_bench(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["methods"], raw["seeds"] = ["none"], [0]
    raw["student"]["train"]["schedule"]["epochs"] = 12
    raw["student"]["train"]["val_interval"] = 6
    config.write_text(yaml.safe_dump(raw))
    command = [sys.executable, "-m", "liafkd", "bench", str(config), "--no-cost", "--threads", "1"]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    work = load_bench(config).work_dir / "runs" / "synth"
    deadline = time.monotonic() + 120
    while not list(work.glob("none-s0-*/checkpoints/epoch_1.pt")):
        assert process.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "Run the same command again" in err
    assert records(config, "run") == []

    run_bench(load_bench(config), cost=False, report=False)
    (run,) = records(config, "run")
    assert run["timings"]["resumed"] is True
    assert [p["epoch"] for p in run["epochs"]] == [6, 12]
    assert run["timings"]["epochs"] == 12 and run["timings"]["steps"] == 36


def test_seeds_run_only_their_runs_and_skip_a_run_another_process_holds(bench_done, monkeypatch):
    """`--seeds`: a process runs only its seeds, and passes over a run that a live
    process has claimed (two processes sharing one output_dir)."""
    results = load_bench(bench_done).output_dir / "results.jsonl"
    before = results.read_text()
    kept = [
        line
        for line in before.splitlines()
        if not (json.loads(line)["kind"] == "run" and json.loads(line)["seed"] == 1)
    ]
    results.write_text("\n".join(kept) + "\n")
    executed = []
    monkeypatch.setattr(BenchRunner, "execute", lambda self, spec: executed.append(spec))
    mimic_seed_1 = (r for r in plan_seed_runs(bench_done, seed=1) if r.method.name == "mimic")
    held = next(mimic_seed_1).output_dir
    try:
        BenchRunner(load_bench(bench_done)).run(cost=False, seeds=[0])
        assert executed == []
        (held / ".claim").write_text(str(os.getppid()))  # the parent: alive, not us
        BenchRunner(load_bench(bench_done)).run(cost=False, seeds=[1])
        assert [(s.method.name, s.seed) for s in executed] == [("none", 1), ("liaf", 1)]
        assert (held / ".claim").read_text() == str(os.getppid())
    finally:
        results.write_text(before)
        (held / ".claim").unlink(missing_ok=True)


def test_methods_run_only_their_rows(bench_done, monkeypatch):
    """`--methods`: the rows that gate the others (a validity check) run first."""
    results = load_bench(bench_done).output_dir / "results.jsonl"
    before = results.read_text()
    kept = [line for line in before.splitlines() if json.loads(line)["kind"] != "run"]
    results.write_text("\n".join(kept) + "\n")
    executed = []
    monkeypatch.setattr(BenchRunner, "execute", lambda self, spec: executed.append(spec))
    try:
        BenchRunner(load_bench(bench_done)).run(cost=False, methods=["none", "liaf"], seeds=[1])
        assert [(s.method.name, s.seed) for s in executed] == [("none", 1), ("liaf", 1)]
    finally:
        results.write_text(before)


def test_cli_refuses_methods_the_bench_does_not_have(bench_done, capsys):
    from liafkd.cli.main import main

    assert main(["bench", str(bench_done), "--methods", "none", "fgd"]) == 2
    assert "--methods ['fgd']: the bench's rows are ['none', 'mimic', 'liaf']" in (
        capsys.readouterr().err
    )


def plan_seed_runs(config: Path, seed: int) -> list:
    bench = load_bench(config)
    teacher = plan_teacher(bench, "synth")
    return [r for r in plan_runs(bench, "synth", teacher) if r.seed == seed]


def test_runs_are_planned_seed_major(bench_done):
    bench = load_bench(bench_done)
    runs = plan_runs(bench, "synth", plan_teacher(bench, "synth"))
    assert [(r.seed, r.method.name) for r in runs] == [(s, m) for s in SEEDS for m in METHODS]


def test_claim_yields_to_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    run_dir = tmp_path / "run"
    with claim(run_dir) as mine:
        assert mine and (run_dir / ".claim").read_text() == str(os.getpid())
    assert not (run_dir / ".claim").exists()
    (run_dir / ".claim").write_text(str(os.getppid()))
    with claim(run_dir) as mine:
        assert not mine
    dead = subprocess.Popen(["true"])
    dead.wait()
    (run_dir / ".claim").write_text(str(dead.pid))
    with claim(run_dir) as mine:
        assert mine
    assert not (run_dir / ".claim").exists()


def test_cli_refuses_seeds_the_bench_does_not_have(bench_done, capsys):
    from liafkd.cli.main import main

    assert main(["bench", str(bench_done), "--seeds", "7"]) == 2
    assert "--seeds [7]: the bench's seeds are [0, 1]" in capsys.readouterr().err
