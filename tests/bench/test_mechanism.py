"""The mechanism bench's separation measure: which instances were altered, recomputed
after training, against the weights a selector gave them."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from liafkd.bench.mechanism import (
    OUTPUT_FILE,
    altered_weights,
    instance_indices,
    main,
    separation_auc,
    separation_table,
)
from liafkd.distill.corruption import TeacherCorruption

CORRUPTION = {"fraction": 0.5, "seed": 3, "strength": 1.0}


def test_instance_indices_count_within_each_run_of_an_image():
    assert instance_indices([5, 5, 7, 7, 7, 5]) == [0, 1, 0, 1, 2, 0]
    assert instance_indices([]) == []


def test_separation_auc_hand_values():
    # pairs (clean, altered): 2>1, 2=2 (half), 3>1, 3>2
    assert separation_auc([2.0, 3.0], [1.0, 2.0]) == 3.5 / 4
    assert separation_auc([1.0], [0.0]) == 1.0
    assert separation_auc([0.0], [1.0]) == 0.0
    assert separation_auc([1.0, 1.0], [1.0]) == 0.5  # uniform weights separate nothing
    assert separation_auc([], [1.0]) is None


weights = st.lists(st.integers(0, 4).map(float), min_size=1, max_size=12)


@given(weights, weights)
def test_separation_auc_is_the_pairwise_count(clean, altered):
    pairs = [(c > a) + 0.5 * (c == a) for c in clean for a in altered]
    assert abs(separation_auc(clean, altered) - sum(pairs) / len(pairs)) < 1e-12


def write_run(root: Path, name: str, weight_of, epochs: int = 2, target_of=None) -> str:
    """A run folder whose dumps weigh each instance by weight_of(altered flag) (and give
    it the trust target target_of(flag), as coop's dumps do)."""
    corruption = TeacherCorruption(**CORRUPTION)
    folder = root / "runs" / name / "instances"
    folder.mkdir(parents=True)
    for epoch in range(1, epochs + 1):
        lines = []
        for image_id in range(20):
            for index in range(3):
                flag = corruption.is_altered(image_id, index)
                line = {"image_id": image_id, "weight": weight_of(flag)}
                if target_of is not None:
                    line["target"] = target_of(flag)
                lines.append(json.dumps(line))
        (folder / f"epoch_{epoch}.jsonl").write_text("\n".join(lines) + "\n")
    return f"runs/{name}"


def run_record(method: str, seed: int, run_dir: str, corrupt: bool = True) -> dict:
    options = {"teacher_corruption": CORRUPTION} if corrupt else {}
    return {
        "kind": "run",
        "key": f"{method}-{seed}",
        "dataset": "synthetic",
        "method": method,
        "seed": seed,
        "options": options,
        "run_dir": run_dir,
        "metrics": {"AP": 0.1},
    }


def make_bench(root: Path) -> Path:
    (root / "runs" / "aid-s0").mkdir(parents=True)  # a run without instance weights
    records = [
        run_record("oracle", 0, write_run(root, "oracle-s0", lambda f: 0.0 if f else 1.0)),
        run_record("oracle", 1, write_run(root, "oracle-s1", lambda f: 0.0 if f else 1.0)),
        run_record(
            "backwards",
            0,
            write_run(root, "backwards-s0", lambda f: 2.0 if f else 0.5, target_of=lambda f: 1.0),
        ),
        run_record("aid", 0, "runs/aid-s0"),
        run_record("gone", 0, "runs/gone-s0"),
        run_record("none", 0, write_run(root, "none-s0", lambda f: 1.0), corrupt=False),
    ]
    bench = root / "bench"
    bench.mkdir()
    (bench / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return bench


def test_the_oracle_separates_fully_and_a_backwards_weighting_inverts(tmp_path):
    summary = altered_weights(make_bench(tmp_path), tmp_path)
    assert set(summary["rows"]) == {"oracle", "backwards"}  # aid: no dumps; none: clean
    for seed in ("0", "1"):
        oracle = summary["rows"]["oracle"][seed]
        assert oracle["epoch"] == 2  # the last dump
        assert (oracle["auc"], oracle["clean_mean"], oracle["altered_mean"]) == (1.0, 1.0, 0.0)
        assert oracle["clean"] + oracle["altered"] == 60 and oracle["altered"] > 0
    backwards = summary["rows"]["backwards"]["0"]
    assert (backwards["auc"], backwards["clean_mean"], backwards["altered_mean"]) == (
        0.0,
        0.5,
        2.0,
    )
    assert backwards["target_auc"] == 0.5  # a constant target separates nothing
    assert summary["rows"]["oracle"]["0"]["target_auc"] is None  # no target in its dump
    assert summary["missing"] == ["gone seed 0: runs/gone-s0"]
    table = separation_table(summary)
    assert "| `oracle` | 2 | 1.000 ± 0.000 | 0.000 ± 0.000 | 1.000 ± 0.000 | - |" in table
    assert "| `backwards` | 1 | 0.500 | 2.000 | 0.000 | 0.500 |" in table


def test_main_writes_the_summary_and_refuses_a_bench_without_altered_rows(tmp_path, capsys):
    bench = make_bench(tmp_path)
    assert main([str(bench), "--runs-root", str(tmp_path)]) == 0
    written = json.loads((bench / OUTPUT_FILE).read_text())
    assert written["rows"]["oracle"]["0"]["auc"] == 1.0
    assert "run folder gone, skipped: gone seed 0" in capsys.readouterr().out
    plain = tmp_path / "plain"
    plain.mkdir()
    record = run_record("none", 0, "runs/none-s0", corrupt=False)
    (plain / "results.jsonl").write_text(json.dumps(record) + "\n")
    assert main([str(plain), "--runs-root", str(tmp_path)]) == 1
    assert not (plain / OUTPUT_FILE).exists()
