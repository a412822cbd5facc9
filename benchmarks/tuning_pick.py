"""Apply cpu-synthetic-v2-tune's selection rule to its results, and say what it picks.

    python benchmarks/tuning_pick.py [benchmarks/cpu-synthetic-v2-tune] [--top 3]

The rule (stated in configs/bench/cpu-synthetic-v2-tune.yaml before any number was
seen; liafkd.bench.tuning): among the LIAF-KD rows (method `liaf`, uniform weights
included) run on the most seeds, the highest mean tuning-val AP wins; a row within 0.3 AP
of it whose step costs less (mean training seconds per step) wins instead.

Prints the table and writes `choice.json` in the bench folder: every candidate's mean
AP, seeds and seconds per step, the top rows on seed 0 (stage 3 reruns them on seeds 1
and 2) and the winner with its distill options.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from liafkd.bench.tuning import TIE_AP, candidates, pick, stage3_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default="benchmarks/cpu-synthetic-v2-tune")
    parser.add_argument("--top", type=int, default=3)
    args = parser.parse_args()
    folder = Path(args.folder)
    rows = candidates(folder)
    if not rows:
        raise SystemExit(f"{folder}: no LIAF-KD runs yet")
    winner = pick(rows)
    print(f"{'row':<28}{'seeds':>8}{'mean AP':>9}{'s/step':>8}")
    for r in rows:
        mark = "  <- winner" if r is winner else ""
        seeds = ",".join(map(str, r["seeds"]))
        print(f"{r['row']:<28}{seeds:>8}{r['mean_ap']:>9.2f}{r['s_per_step']:>8.3f}{mark}")
    choice = {
        "rule": f"highest mean tuning-val AP; a cheaper row within {TIE_AP} AP wins instead",
        "candidates": rows,
        "top": stage3_rows(rows, args.top),
        "winner": {"row": winner["row"], "options": winner["options"]},
    }
    (folder / "choice.json").write_text(json.dumps(choice, indent=2) + "\n")
    print(f"top {args.top} on seed 0: {', '.join(choice['top'])}; winner: {winner['row']}")
    print(f"wrote {folder / 'choice.json'}")


if __name__ == "__main__":
    main()
