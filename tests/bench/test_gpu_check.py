"""The GPU check's --tiny mode: the same code the GPU runs, at toy sizes on the CPU."""

import json

import pytest
import torch

from liafkd.bench.gpu_check import TINY, main

pytestmark = pytest.mark.slow


def test_tiny_gpu_check_runs_every_stage_and_writes_few_files(tmp_path):
    out = tmp_path / "out"
    code = main(["--out", str(out), "--work", str(tmp_path / "work"), "--tiny"])
    results = json.loads((out / "results.json").read_text())
    failed = {k: r.get("error") for k, r in results["stages"].items() if not r["ok"]}
    assert code == 0 and not failed
    stages = results["stages"]
    assert list(stages) == ["env", "cuda_tests", "data", "teacher", "cost", "students", "plot"]
    cuda_outcome = "passed" if torch.cuda.is_available() else "skipped"
    assert cuda_outcome in stages["cuda_tests"]["result"]
    cost = stages["cost"]["result"]["fp32"]
    assert set(cost["variants"]) == {*TINY.cost_rows, "floor"}
    students = stages["students"]["result"]
    assert set(students) == {"liaf", "none"}
    for run in students.values():
        assert run["steps"] in range(TINY.steps_range[0], TINY.steps_range[1] + 1)
        assert run["curve"] and "AP" in run["final"]
    summary = (out / "summary.md").read_text()
    assert "| liaf |" in summary and "x floor" in summary
    files = sorted(p.name for p in out.iterdir())
    assert files == ["cuda_tests.txt", "log.txt", "loss_curves.png", "results.json", "summary.md"]


def test_work_folder_must_be_new(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "old").write_text("a previous check")
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "out"), "--work", str(work), "--tiny"])
