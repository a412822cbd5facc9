"""The selection rule of a tuning bench (cpu-synthetic-v2-tune): which LIAF-KD row wins.

Among the rows whose method is `liaf` (uniform weights included) and that ran on the
most seeds (all rows after stages 1-2, which run seed 0; the top rows once stage 3 has
rerun them on seeds 1 and 2), the highest mean tuning-val AP leads; a row within TIE_AP
of the leader whose step costs less (mean training seconds per step over its runs) wins
instead. `liafkd bench pick BENCH_DIR` applies it and writes BENCH_DIR/choice.json.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from liafkd.bench.results import load_results
from liafkd.config import ConfigError

TIE_AP = 0.3  # percent AP
CHOICE_FILE = "choice.json"


def candidates(folder: Path) -> list[dict]:
    results = load_results(folder)
    methods = {m["name"]: m for m in results.bench.get("methods", [])}
    rows = []
    for dataset in results.datasets():
        for name, by_seed in results.runs.get(dataset, {}).items():
            if methods.get(name, {}).get("method") != "liaf":
                continue
            ap = {s: 100 * r["metrics"]["AP"] for s, r in by_seed.items()}
            per_step = [r["timings"]["train_s"] / r["timings"]["steps"] for r in by_seed.values()]
            rows.append(
                {
                    "row": name,
                    "options": methods[name].get("options", {}),
                    "ap_by_seed": ap,
                    "mean_ap": statistics.fmean(ap.values()),
                    "seeds": sorted(ap),
                    "s_per_step": statistics.fmean(per_step),
                }
            )
    return sorted(rows, key=lambda r: -r["mean_ap"])


def pick(rows: list[dict]) -> dict:
    """The rule: among the rows run on the most seeds (stage 3's confirmed rows once it
    has run), the highest mean AP leads; a cheaper one within TIE_AP of it wins."""
    most = max(len(r["seeds"]) for r in rows)
    confirmed = sorted((r for r in rows if len(r["seeds"]) == most), key=lambda r: -r["mean_ap"])
    leader = winner = confirmed[0]
    for row in confirmed[1:]:
        if (
            row["mean_ap"] >= leader["mean_ap"] - TIE_AP
            and row["s_per_step"] < winner["s_per_step"]
        ):
            winner = row
    return winner


def stage3_rows(rows: list[dict], top: int = 3) -> list[str]:
    """The rows stage 3 reruns on more seeds: the best `top` on seed 0 (stages 1-2)."""
    on_seed_0 = [r for r in rows if 0 in r["ap_by_seed"]]
    return [r["row"] for r in sorted(on_seed_0, key=lambda r: -r["ap_by_seed"][0])[:top]]


def write_choice(folder: Path, top: int = 3) -> dict:
    """Apply the rule to the bench in `folder`; write and return its choice: every
    candidate, the `top` rows on seed 0 (stage 3 reruns them) and the winner."""
    rows = candidates(folder)
    if not rows:
        raise ConfigError(f"{folder}: no LIAF-KD runs yet (rows whose method is `liaf`)")
    winner = pick(rows)
    choice = {
        "rule": f"highest mean tuning-val AP; a cheaper row within {TIE_AP} AP wins instead",
        "candidates": rows,
        "top": stage3_rows(rows, top),
        "winner": {"row": winner["row"], "options": winner["options"]},
    }
    (Path(folder) / CHOICE_FILE).write_text(json.dumps(choice, indent=2) + "\n")
    return choice


def format_choice(choice: dict) -> str:
    """The candidates as a table, the winner marked, then the top rows."""
    lines = [f"{'row':<28}{'seeds':>8}{'mean AP':>9}{'s/step':>8}"]
    for r in choice["candidates"]:
        mark = "  <- winner" if r["row"] == choice["winner"]["row"] else ""
        seeds = ",".join(map(str, r["seeds"]))
        lines.append(f"{r['row']:<28}{seeds:>8}{r['mean_ap']:>9.2f}{r['s_per_step']:>8.3f}{mark}")
    top = ", ".join(choice["top"])
    lines.append(f"top {len(choice['top'])} on seed 0: {top}; winner: {choice['winner']['row']}")
    return "\n".join(lines)
