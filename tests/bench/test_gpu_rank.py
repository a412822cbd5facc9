"""The GPU ranking (liafkd.bench.rank, benchmarks/gpu_rank.sh): its plan on CPU, without
training (a real --tiny run takes minutes), and the process handling on stand-ins."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from liafkd.bench.config import load_bench
from liafkd.bench.rank import RankPlan, best_learnt_row, execute, main, make_plan

REPO = Path(__file__).resolve().parents[2]
ROWS = ["none", "fgd", "liaf-uniform", "liaf-joint", "aid", "crosskd", "fgd+crosskd"]
ROWS += ["liaf+crosskd"]


def candidate(row: str, lam: float | None, ap: dict[int, float]) -> dict:
    options = {} if lam is None else {"liaf": {"selector": {"lam": lam}}}
    return {"row": row, "options": options, "seeds": sorted(ap), "mean_ap": sum(ap.values())}


def test_best_learnt_row_is_the_best_lam_above_zero_on_the_most_seeds():
    choice = {
        "candidates": [
            candidate("uniform", 0.0, {0: 30.0, 1: 30.0, 2: 30.0}),  # not learnt
            candidate("unstated", None, {0: 29.0, 1: 29.0, 2: 29.0}),  # the default: uniform
            candidate("lucky", 0.5, {0: 40.0}),  # one seed only
            candidate("joint", 0.5, {0: 25.0, 1: 25.0, 2: 25.0}),
            candidate("meta", 1.0, {0: 24.0, 1: 24.0, 2: 24.0}),
        ]
    }
    assert best_learnt_row(choice) == "joint"


def test_the_full_plan_ranks_both_benches_on_ten_seeds_on_cuda(tmp_path):
    plan = make_plan(tmp_path / "out", work_dir=tmp_path / "work")
    assert [c.name for c in plan.configs] == ["cpu-synthetic-v2-rank.yaml", "cpu-bccd-v2-rank.yaml"]
    assert plan.runs == 2 * 8 * 10 and len(plan.workers) == 12
    for config in plan.configs:
        bench = load_bench(config)
        assert [m.name for m in bench.cfg.methods] == ROWS
        assert bench.cfg.seeds == list(range(10))
        assert bench.cfg.student.train.device == bench.cfg.teacher.train.device == "cuda"
        assert not bench.cfg.cost.enabled
        assert bench.cfg.validity == ["fgd", "crosskd"]  # mimic is not a ranking row
        assert ["liaf-joint", "liaf-uniform"] in [list(p) for p in bench.cfg.comparisons]
        assert bench.output_dir.parent == (tmp_path / "out").resolve()
        assert bench.work_dir.parent == (tmp_path / "work").resolve()
    synthetic = load_bench(plan.configs[0])
    train, _ = synthetic.datasets["synthetic"]
    assert Path(train.root) == REPO / "data" / "synthetic-v2"  # the preset's own data
    prepare = " ".join(plan.prepare[0])
    assert "--methods none --seeds 0" in prepare and "--no-cost" in prepare
    assert {cmd[4] for cmd in plan.workers} == {str(c) for c in plan.configs}
    assert plan.reports[1][-2:] == ["report", str(tmp_path / "out" / "cpu-bccd-v2-rank")]


def test_tiny_plan_is_synthetic_on_cpu_with_its_own_small_data(tmp_path):
    plan = make_plan(tmp_path / "out", tiny=True, work_dir=tmp_path / "work")
    (config,) = plan.configs
    bench = load_bench(config)
    train, val = bench.datasets["synthetic"]
    assert Path(train.root) == (tmp_path / "out" / "data" / "synthetic-tiny").resolve()
    assert train.synth_images == val.synth_images == 12
    assert bench.cfg.seeds == [0, 1] and len(plan.workers) == 2
    assert bench.cfg.student.train.device == "cpu"
    assert bench.cfg.student.train.schedule.epochs == 1
    assert bench.cfg.distill_options["checks"] == {"enabled": False}


def test_cli_dry_run_prints_the_plan_and_refuses_an_unknown_selector(tmp_path, capsys):
    assert main([str(tmp_path), "--tiny", "--dry-run", "--seeds", "3"]) == 0
    out = capsys.readouterr().out
    assert "24 runs, 2 workers" in out and "best learnt selector" in out
    assert not (tmp_path / "cpu-synthetic-v2-rank").exists()  # nothing ran
    assert main([str(tmp_path), "--dry-run", "--selector", "liaf-nope"]) == 2
    assert "no row ['liaf-nope']" in capsys.readouterr().err


def test_the_script_runs_the_dry_run(tmp_path):
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_rank.sh"), str(tmp_path), "--tiny", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "16 runs, 2 workers" in done.stdout


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_execute_prepares_first_then_stops_workers_at_the_budget(tmp_path):
    log = tmp_path / "order.txt"
    write = "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n')"
    plan = RankPlan(
        configs=[],
        prepare=[[*_python(f"import time; time.sleep(1); {write}"), str(log), "prepared"]],
        workers=[
            [*_python(write), str(log), "worker"],
            _python("import time; time.sleep(120)"),  # runs past the budget
        ],
        reports=[[*_python(write), str(log), "reported"]],
        budget_s=4.0,
    )
    tic = time.monotonic()
    failed = execute(plan, tmp_path / "logs")
    assert time.monotonic() - tic < 30
    assert failed == 1  # the stopped worker
    assert log.read_text().splitlines() == ["prepared", "worker", "reported"]
    assert (tmp_path / "logs" / "workers-1.log").is_file()


@pytest.mark.parametrize(("stage", "expected"), [("prepare", ["prepared"]), ("run", ["reported"])])
def test_a_stage_runs_only_its_steps(tmp_path, stage, expected):
    log = tmp_path / "order.txt"
    write = "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n')"
    plan = RankPlan([], [[*_python(write), str(log), "prepared"]], [], [], budget_s=30.0)
    plan.reports = [[*_python(write), str(log), "reported"]]
    assert execute(plan, tmp_path / "logs", stage) == 0
    assert log.read_text().splitlines() == expected
