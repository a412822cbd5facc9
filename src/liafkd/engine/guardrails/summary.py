"""After training: each loss term's share of the run, and the teacher's metrics beside
the student's, added to summary.json and printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from liafkd.engine.distributed import context
from liafkd.outputs import write_text_atomic


def loss_term_summary(metrics_path: str | Path) -> dict[str, dict[str, float]]:
    """Each `loss_*` term over the run from metrics.jsonl's epoch records (the step
    records when no epoch finished): mean over epochs, first and last epoch's mean,
    and share = |mean| / sum of |means| (magnitudes, so that a negative regulariser
    counts by its size). A term that fades to nothing shows as last << first."""
    path = Path(metrics_path)
    if not path.is_file():
        return {}
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # a line cut short by a killed run
            continue
    # a rerun or resume into the same folder logs an epoch again: the latest counts
    by_epoch = {r["epoch"]: r for r in records if r.get("type") == "epoch"}
    rows = [by_epoch[e] for e in sorted(by_epoch)] or [
        r for r in records if r.get("type") == "train"
    ]
    names = sorted({k for r in rows for k in r if k.startswith("loss_")})
    series = {n: [float(r[n]) for r in rows if n in r] for n in names}
    means = {n: sum(v) / len(v) for n, v in series.items()}
    magnitude = sum(abs(m) for m in means.values())
    return {
        n: {
            "mean": means[n],
            "share": abs(means[n]) / magnitude if magnitude else 0.0,
            "first": series[n][0],
            "last": series[n][-1],
        }
        for n in names
    }


def format_loss_terms(terms: dict[str, dict[str, float]]) -> str:
    lines = [f"{'loss term':<22}{'mean':>11}{'share':>8}{'first':>11}{'last':>11}"]
    for name, t in terms.items():
        share = f"{100 * t['share']:.1f}%"
        lines.append(f"{name:<22}{t['mean']:>11.4g}{share:>8}{t['first']:>11.4g}{t['last']:>11.4g}")
    return "\n".join(lines)


def complete_summary(
    out_dir: str | Path, summary: dict[str, Any], teacher: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Add "loss_terms" (and "teacher", when given) to the run's summary.json; print
    the terms and the teacher's AP beside the student's."""
    out = Path(out_dir)
    summary = {**summary, "loss_terms": loss_term_summary(out / "metrics.jsonl")}
    if teacher:
        summary["teacher"] = teacher
    if context().is_main:  # under torchrun rank 0 writes the run's files
        write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
    if summary["loss_terms"]:
        print(format_loss_terms(summary["loss_terms"]))
    if teacher:
        print(side_by_side(summary.get("final", {}), teacher))
    return summary


def side_by_side(student_final: dict[str, Any], teacher: dict[str, Any]) -> str:
    def fmt(value: Any) -> str:  # percent, as every table liafkd prints
        return f"{100 * value:.1f}" if isinstance(value, (int, float)) else "-"

    parts = [f"student AP {fmt(student_final.get('AP'))} AP50 {fmt(student_final.get('AP50'))}"]
    run = (teacher.get("run") or {}).get("final") or {}
    if run:
        parts.append(f"teacher (its own run) AP {fmt(run.get('AP'))} AP50 {fmt(run.get('AP50'))}")
    sanity = teacher.get("sanity")
    if sanity:
        parts.append(
            f"teacher on {sanity['images']} val images AP {fmt(sanity['AP'])} "
            f"AP50 {fmt(sanity['AP50'])}"
        )
    return " | ".join(parts)
