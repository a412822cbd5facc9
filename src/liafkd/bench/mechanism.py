"""Does a selector find the instances a mechanism bench altered? Its weights on the
altered and the clean instances, read from the runs' instance dumps.

    python -m liafkd.bench.mechanism OUTPUT_DIR      (e.g. benchmarks/cpu-mechanism)

For every row of the bench's results whose options carry a `teacher_corruption` and
whose run folder still holds its instance dumps (runs/.../instances/epoch_N.jsonl, the
last epoch), the altered flag of each instance is recomputed from the corruption's hash,
here, after training (the selector never sees it), and the row gets, per seed:

- the mean weight of the clean and of the altered instances,
- AUC = P(weight of a clean instance > weight of an altered one), ties counting half:
  1.0 is the oracle's separation, 0.5 none (uniform weights), below 0.5 the wrong way;
- for `coop`, the same AUC of the trust target its weights are trained toward.

It writes OUTPUT_DIR/altered_weights.json; `benchmarks/results_table.py altered` renders
it. Which instance of an image a dump line is: its position among the image's lines,
which the dump writes in target order (the oracle's own dump, whose weights are exactly
the flags, is the check: AUC 1).
"""

from __future__ import annotations

import argparse
import bisect
import json
import statistics
from pathlib import Path
from typing import Any

from liafkd.bench.report import fmt_summary
from liafkd.bench.results import load_results
from liafkd.bench.runner import last_instance_dump
from liafkd.bench.stats import summarize
from liafkd.distill.corruption import TeacherCorruption
from liafkd.outputs import write_text_atomic

OUTPUT_FILE = "altered_weights.json"


def instance_indices(image_ids: list[int]) -> list[int]:
    """Each line's index within its image: consecutive lines of one image count 0, 1, ..."""
    indices = []
    previous = None
    for image_id in image_ids:
        indices.append(indices[-1] + 1 if image_id == previous else 0)
        previous = image_id
    return indices


def separation_auc(clean: list[float], altered: list[float]) -> float | None:
    """P(a clean weight > an altered weight), ties half; None when a side is empty."""
    if not clean or not altered:
        return None
    ranked = sorted(altered)
    wins = 0.0
    for value in clean:
        below = bisect.bisect_left(ranked, value)
        ties = bisect.bisect_right(ranked, value) - below
        wins += below + 0.5 * ties
    return wins / (len(clean) * len(altered))


def dump_separation(
    epoch: int, rows: list[dict[str, Any]], corruption: TeacherCorruption
) -> dict[str, Any]:
    """Mean weights of the clean and altered instances of one dump and their AUC, and
    the same of coop's trust target where the dump has one."""
    image_ids = [int(r["image_id"]) for r in rows]
    flags = [
        corruption.is_altered(image_id, index)
        for image_id, index in zip(image_ids, instance_indices(image_ids), strict=True)
    ]
    summary: dict[str, Any] = {"epoch": epoch}
    summary.update(split_by_flag([float(r["weight"]) for r in rows], flags, ""))
    summary["clean"] = sum(not flag for flag in flags)
    summary["altered"] = sum(flags)
    if rows and all("target" in r for r in rows):
        summary.update(split_by_flag([float(r["target"]) for r in rows], flags, "target_"))
    else:
        summary["target_auc"] = None
    return summary


def split_by_flag(values: list[float], flags: list[bool], prefix: str) -> dict[str, Any]:
    """{prefix}clean_mean, {prefix}altered_mean and {prefix}auc of values split by flag."""
    clean = [v for v, flag in zip(values, flags, strict=True) if not flag]
    altered = [v for v, flag in zip(values, flags, strict=True) if flag]
    return {
        f"{prefix}clean_mean": statistics.fmean(clean) if clean else None,
        f"{prefix}altered_mean": statistics.fmean(altered) if altered else None,
        f"{prefix}auc": separation_auc(clean, altered),
    }


def altered_weights(output_dir: Path, runs_root: Path = Path(".")) -> dict[str, Any]:
    """Per row with a teacher corruption and instance weights, per seed, the separation
    of its last dump; runs whose folder is gone are listed under `missing`."""
    results = load_results(output_dir)
    rows: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    for dataset in results.datasets():
        for method in results.methods(dataset):
            for seed, run in sorted(results.runs[dataset][method].items()):
                options = run.get("options") or {}
                if "teacher_corruption" not in options:
                    continue
                run_dir = runs_root / run["run_dir"]
                if not run_dir.is_dir():
                    missing.append(f"{method} seed {seed}: {run['run_dir']}")
                    continue
                dump = last_instance_dump(run_dir)
                if dump is None:  # no learnt weights to dump (uniform weights, the clean teacher)
                    continue
                corruption = TeacherCorruption(**options["teacher_corruption"])
                per_seed = rows.setdefault(method, {})
                per_seed[str(seed)] = dump_separation(*dump, corruption)
    return {"bench": results.name, "rows": rows, "missing": missing}


def separation_table(summary: dict[str, Any]) -> str:
    """Markdown: per row, the mean over seeds (± std) of each side's mean weight and of
    the AUC."""
    lines = [
        "| row | seeds | mean weight, clean | mean weight, altered | AUC (clean > altered) "
        "| AUC of its target |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for method, per_seed in summary["rows"].items():
        cells = []
        for field in ("clean_mean", "altered_mean", "auc", "target_auc"):
            cells.append(fmt_summary(summarize(seed[field] for seed in per_seed.values()), 3))
        lines.append(f"| `{method}` | {len(per_seed)} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", type=Path, help="the bench's output_dir")
    parser.add_argument(
        "--runs-root", type=Path, default=Path("."), help="what run_dir paths are relative to"
    )
    args = parser.parse_args(argv)
    summary = altered_weights(args.output_dir, args.runs_root)
    if not summary["rows"]:
        print(f"{args.output_dir}: no row with a teacher corruption and its instance dumps")
        return 1
    for line in summary["missing"]:
        print(f"run folder gone, skipped: {line}")
    path = args.output_dir / OUTPUT_FILE
    write_text_atomic(path, json.dumps(summary, indent=1) + "\n")  # rows in bench order
    for method, per_seed in summary["rows"].items():
        aucs = [s["auc"] for s in per_seed.values() if s["auc"] is not None]
        print(f"{method}: AUC {statistics.fmean(aucs):.3f} over {len(aucs)} seeds")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
