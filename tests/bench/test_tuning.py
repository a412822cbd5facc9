"""The tuning bench's selection rule, on hand-made rows."""

import json

from liafkd.bench.results import read_results
from liafkd.bench.tuning import pick, stage3_rows
from liafkd.cli.main import main


def row(name: str, ap: dict[int, float], s_per_step: float) -> dict:
    return {
        "row": name,
        "options": {},
        "ap_by_seed": ap,
        "mean_ap": sum(ap.values()) / len(ap),
        "seeds": sorted(ap),
        "s_per_step": s_per_step,
    }


def ranked(*rows: dict) -> list[dict]:
    return sorted(rows, key=lambda r: -r["mean_ap"])


def test_the_highest_mean_ap_wins_when_nothing_cheaper_is_close():
    meta = row("meta", {0: 12.0, 1: 12.4}, 0.40)
    joint = row("joint", {0: 11.5, 1: 11.7}, 0.20)  # 0.6 below on shared seeds
    assert pick(ranked(joint, meta))["row"] == "meta"


def test_a_cheaper_row_within_the_tie_band_wins():
    meta = row("meta", {0: 12.0, 1: 12.4}, 0.40)
    joint = row("joint", {0: 11.8, 1: 12.2}, 0.20)  # 0.2 below: a tie, and cheaper
    aligned = row("aligned", {0: 11.9, 1: 12.3}, 0.25)  # also a tie, dearer than joint
    assert pick(ranked(joint, meta, aligned))["row"] == "joint"


def test_only_rows_run_on_the_most_seeds_can_win():
    # after stage 3 the confirmed rows have seeds 0-2; a seed-0-only row that looks
    # better (or ties and is cheaper) on its one seed is not confirmed and cannot win
    leader = row("meta", {0: 10.0, 1: 14.0, 2: 14.0}, 0.40)
    lucky = row("joint-lam1", {0: 15.0}, 0.20)
    second = row("aligned", {0: 10.5, 1: 13.0, 2: 13.0}, 0.25)  # 1.5 below
    assert pick(ranked(lucky, leader, second))["row"] == "meta"


def test_stage_3_reruns_the_best_rows_of_seed_0():
    # once a row has more seeds its mean moves; stage 3's choice stays the seed-0 one.
    # `a` leads on seed 0 but not on the mean; `d` is fourth on seed 0 and is left out
    a = row("a", {0: 9.0, 1: 3.0, 2: 3.0}, 0.20)  # mean 5.0
    b = row("b", {0: 7.0}, 0.19)
    c = row("c", {0: 8.0}, 0.19)
    d = row("d", {0: 6.0}, 0.48)
    assert stage3_rows(ranked(a, b, c, d)) == ["a", "c", "b"]
    assert stage3_rows(ranked(d, c)) == ["c", "d"]


def test_cli_pick_writes_the_choice_and_refuses_a_bench_without_liaf_rows(fake_bench, capsys):
    """fake_bench's `liaf` runs (AP 41, 42, 43; 120 s over 10 steps) and a cheaper copy
    0.2 AP lower (a tie within 0.3): the cheaper row wins."""
    path = fake_bench / "results.jsonl"
    records = read_results(path)
    bench = next(r for r in records if r["kind"] == "bench")
    bench["methods"].append({"name": "liaf-cheap", "method": "liaf", "options": {"x": 1}})
    cheap = []
    for r in records:
        if r.get("method") == "liaf":
            r["timings"]["steps"] = 10
            copy = json.loads(json.dumps(r))
            copy.update(method="liaf-cheap", key=f"cheap-{r['seed']}")
            copy["metrics"]["AP"] -= 0.002
            copy["timings"]["train_s"] = 60.0
            cheap.append(copy)
    path.write_text("".join(json.dumps(r) + "\n" for r in records + cheap))
    assert main(["bench", "pick", str(fake_bench), "--top", "1"]) == 0
    choice = json.loads((fake_bench / "choice.json").read_text())
    assert choice["winner"] == {"row": "liaf-cheap", "options": {"x": 1}}
    assert choice["top"] == ["liaf"]  # seed 0: liaf 41.0, liaf-cheap 40.8
    out = capsys.readouterr().out
    assert "liaf-cheap" in out and "<- winner" in out and "choice.json" in out
    others = [r for r in records if r.get("method") not in ("liaf",)]
    path.write_text("".join(json.dumps(r) + "\n" for r in others))
    assert main(["bench", "pick", str(fake_bench)]) == 2
    assert "no LIAF-KD runs yet" in capsys.readouterr().err
