"""report.md, report.html and the README section, from results.jsonl alone.

Every figure comes from OUTPUT_DIR/results.jsonl (liafkd.bench.results), so the
reports of a committed bench can be regenerated anywhere:
`liafkd bench report OUTPUT_DIR [--readme README.md]`. A hand-written
OUTPUT_DIR/notes.md (how to read the bench; no generated figure) is shown first.
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liafkd.bench.config import BASELINE
from liafkd.bench.cost import FLOOR
from liafkd.bench.results import (
    CLASS_PREFIX,
    RESULTS_FILE,
    BenchResults,
    class_names,
    has_kitti,
    load_results,
    metric_value,
)
from liafkd.bench.stats import PairedDelta, Summary, paired_delta, summarize
from liafkd.config import ConfigError

COCO_COLUMNS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
KITTI_DIFFICULTIES = ("easy", "moderate", "hard")
HEADLINE = "AP"
# LIAF-KD's cost goals (the issue): step within 1.10x of the floor, and the
# distillation losses plus the selector under 5% of the step
GOAL_STEP_RATIO = 1.10
GOAL_SHARE = 0.05
KITTI_NOTE = "Easy, Moderate, Hard: official KITTI 2D AP|R40 (percent), mean over the classes."
COST_LEGEND = (
    "Floor: the student's own step plus the teacher's forward pass, the least any "
    "distillation costs. × floor, × none: step time relative to them; KD share: the "
    "distillation losses, adapters and selector (their forward and backward) as a share "
    "of the step."
)
COMPARISONS_CAPTION = "Paired comparisons (method - against, per seed)"
NOTES_FILE = "notes.md"  # hand-written, beside results.jsonl; the report shows it first
NOTES_TITLE = "Reading this bench"
KIND_CAPTION = "AP by instance kind"
ROUNDS_NOTE = (
    " In brackets after × floor and × none: the lowest and highest ratio within one round "
    "(the two variants' medians in the same round), how far the timings move."
)
NOISE_RULE = (
    "Δ: per-seed differences to `none` on the same seed: their mean, its 95% confidence "
    "interval [mean ± t(0.975, n-1) std / sqrt(n), Student t] and the two-sided paired "
    "t-test's p. Beyond noise (yes/no): the interval excludes 0 (p < 0.05); n/a with one "
    "seed. With 3 seeds the interval is ± 4.30 standard errors, with 10 seeds ± 2.26."
)
KIND_NOTE = (
    "AP by instance kind: COCO AP per class and on small objects (APs: area below 32²"
    " pixels); {kitti}Δ: paired by seed against `none`, mean [95% CI]; * marks an "
    "interval that excludes 0."
)
KIND_KITTI = (
    "KITTI difficulties (Easy: fully visible; Moderate: up to partly occluded; Hard: up "
    "to largely occluded, with KITTI's height and truncation limits), AP|R40; "
)


# --- tables ------------------------------------------------------------------------------


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


def fmt_summary(s: Summary | None, digits: int = 1) -> str:
    if s is None:
        return "-"
    if s.std is None:
        return f"{s.mean:.{digits}f}"
    return f"{s.mean:.{digits}f} ± {s.std:.{digits}f}"


def fmt_delta(d: PairedDelta | None, digits: int = 2) -> str:
    """The mean difference and its 95% confidence interval: `+1.33 [+0.62, +2.05]`."""
    if d is None:
        return "-"
    if d.ci is None:
        return f"{d.mean:+.{digits}f}"
    return f"{d.mean:+.{digits}f} [{d.ci[0]:+.{digits}f}, {d.ci[1]:+.{digits}f}]"


def fmt_p(d: PairedDelta | None) -> str:
    if d is None or d.p_value is None:
        return "p n/a"
    return "p<0.001" if d.p_value < 0.001 else f"p={d.p_value:.3f}"


def fmt_noise(d: PairedDelta | None) -> str:
    if d is None or d.beyond_noise is None:
        return "n/a"
    return "yes" if d.beyond_noise else "no"


def fmt_paired(d: PairedDelta | None) -> str:
    """A table cell: difference [95% CI] p (beyond noise?)."""
    if d is None:
        return "-"
    return f"{fmt_delta(d)} {fmt_p(d)} ({fmt_noise(d)})"


DELTA_HEADER = "{} [95% CI], p (beyond noise?)"


def fmt_number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def metric_columns(results: BenchResults, dataset: str) -> list[tuple[str, str]]:
    """(header, metric key) of the table's metric columns."""
    columns = [(c, c) for c in COCO_COLUMNS]
    if has_kitti(results, dataset):
        columns += [(d.capitalize(), f"kitti_{d}") for d in KITTI_DIFFICULTIES]
    return columns


def delta_metrics(results: BenchResults, dataset: str) -> list[tuple[str, str]]:
    deltas = [(f"Δ{HEADLINE}", HEADLINE)]
    if has_kitti(results, dataset):
        deltas.append(("ΔModerate", "kitti_moderate"))
    return deltas


def method_table(results: BenchResults, dataset: str) -> Table:
    """mean ± std per method, deltas to `none` with the noise indicator, the teacher last."""
    columns = metric_columns(results, dataset)
    deltas = delta_metrics(results, dataset)
    headers = ["method", "seeds"] + [h for h, _ in columns]
    headers += [DELTA_HEADER.format(header) for header, _ in deltas]
    headers.append("train min/run")
    rows = []
    for method in results.methods(dataset):
        seeds = results.runs[dataset][method]
        row = [method, str(len(seeds))]
        row += [
            fmt_summary(summarize(results.values(dataset, method, m).values())) for _, m in columns
        ]
        for _, metric in deltas:
            if method == BASELINE:
                row.append("")
                continue
            d = paired_delta(
                results.values(dataset, method, metric), results.values(dataset, BASELINE, metric)
            )
            row.append(fmt_paired(d))
        minutes = summarize(r["timings"].get("train_s", 0) / 60 for r in seeds.values())
        row.append(fmt_summary(minutes))
        rows.append(row)
    teacher = results.teachers.get(dataset)
    if teacher is not None:
        row = ["teacher (reference)", "1"]
        row += [fmt_number(metric_value(teacher["metrics"], m)) for _, m in columns]
        row += [""] * len(deltas)
        train_s = teacher["timings"].get("train_s")  # absent for a given (trained) teacher
        row.append(fmt_number(None if train_s is None else train_s / 60))
        rows.append(row)
    return Table(headers, rows)


def kind_columns(results: BenchResults, dataset: str) -> list[tuple[str, str]]:
    """(header, metric key) of the AP-by-instance-kind tables: small objects, each
    class, and the KITTI difficulties where the data has them."""
    columns = [("APs", "APs")]
    columns += [(f"AP {name}", f"{CLASS_PREFIX}{name}") for name in class_names(results, dataset)]
    if has_kitti(results, dataset):
        columns += [(d.capitalize(), f"kitti_{d}") for d in KITTI_DIFFICULTIES]
    return columns


def kind_tables(results: BenchResults, dataset: str) -> tuple[Table, Table]:
    """AP by instance kind: mean ± std per method, and the paired difference to `none`
    with its 95% confidence interval (`*`: the interval excludes 0)."""
    columns = kind_columns(results, dataset)
    headers = ["method", "seeds"] + [h for h, _ in columns]
    absolute, deltas = Table(list(headers), []), Table(list(headers), [])
    baseline = {m: results.values(dataset, BASELINE, m) for _, m in columns}
    for method in results.methods(dataset):
        seeds = str(len(results.runs[dataset][method]))
        values = [results.values(dataset, method, m) for _, m in columns]
        absolute.rows.append([method, seeds] + [fmt_summary(summarize(v.values())) for v in values])
        if method == BASELINE:
            continue
        cells = []
        for (_, metric), by_seed in zip(columns, values, strict=True):
            d = paired_delta(by_seed, baseline[metric])
            cells.append(fmt_delta(d, 1) + (" *" if d is not None and d.beyond_noise else ""))
        deltas.rows.append([method, seeds] + cells)
    return absolute, deltas


def kind_note(results: BenchResults, dataset: str) -> str:
    kitti = KIND_KITTI if has_kitti(results, dataset) else ""
    note = KIND_NOTE.format(kitti=kitti)
    if not class_names(results, dataset):
        note += " These runs stored no per-class AP (their results predate it)."
    return note


def validity_checks(
    results: BenchResults, dataset: str
) -> list[tuple[str, PairedDelta | None, bool | None]]:
    """Each row of the bench's `validity` list: its AP delta to `none` paired by seed,
    and whether it is above `none` beyond noise, its 95% confidence interval above 0
    (None until it ran all the bench's seeds). Anything else fails."""
    baseline = results.values(dataset, BASELINE, "AP")
    checks = []
    for method in results.bench.get("validity") or []:
        d = paired_delta(results.values(dataset, method, "AP"), baseline)
        complete = d is not None and d.n >= results.seed_count
        passed = bool(d.beyond_noise) and d.mean > 0 if complete else None
        checks.append((method, d, passed))
    return checks


def validity_state(checks: list[tuple[str, PairedDelta | None, bool | None]]) -> str:
    """`does not hold` as soon as one row failed on all seeds, `pending` while a row
    misses seeds, else `holds`."""
    passed = [p for _, _, p in checks]
    if False in passed:
        return "does not hold"
    return "pending" if None in passed else "holds"


VERDICTS = {
    "pending": "not decided yet: read no row as a ranking until it is",
    "holds": "holds",
    "does not hold": "does NOT hold: this bench cannot rank methods; the rows below are not a "
    "ranking",
}


def validity_verdict(results: BenchResults, dataset: str) -> str:
    """Whether the bench reproduces the published ordering it declares (`validity`):
    every listed row above `none` on AP beyond noise, on all of the bench's seeds."""
    checks = validity_checks(results, dataset)
    if not checks:
        return ""
    parts = []
    for method, d, passed in checks:
        if passed is None:
            done = 0 if d is None else d.n
            parts.append(f"{method} pending ({done} of {results.seed_count} seeds)")
        else:
            word = "above" if passed else "not above"
            parts.append(f"{method} {fmt_delta(d)} AP, {fmt_p(d)} ({word})")
    rows = ", ".join(method for method, _, _ in checks)
    return (
        f"**Validity (the published ordering, checked before any ranking):** each of "
        f"{rows} above `none` on AP beyond noise (the 95% confidence interval of the "
        f"paired difference above 0). {'; '.join(parts)}. "
        f"Verdict: {VERDICTS[validity_state(checks)]}."
    )


def teacher_curve(results: BenchResults, dataset: str) -> str:
    """The teacher's validation AP by epoch, and what its last third of epochs added:
    whether it was trained until its AP stopped rising."""
    teacher = results.teachers.get(dataset) or {}
    points = [(p["epoch"], p["AP"]) for p in teacher.get("epochs") or [] if p.get("AP") is not None]
    if len(points) < 2:
        return ""
    last_epoch = points[-1][0]
    cut = last_epoch - last_epoch / 3
    before = [ap for epoch, ap in points if epoch <= cut]
    gain = ""
    if before:
        added = 100 * (points[-1][1] - before[-1])
        gain = f" Its last third of epochs ({cut:.0f} to {last_epoch}) added {added:+.1f} AP."
    curve = ", ".join(f"{epoch}: {100 * ap:.1f}" for epoch, ap in points)
    return f"Teacher validation AP by epoch: {curve}.{gain}"


def teacher_identity(results: BenchResults, dataset: str) -> str:
    """Which teacher checkpoint (sha256) the rows were distilled from, as recorded: a
    table mixing two teachers is not a paired comparison."""
    runs = [run for seeds in results.runs.get(dataset, {}).values() for run in seeds.values()]
    shas = sorted({r["teacher_sha256"] for r in runs if r.get("teacher_sha256")})
    unrecorded = sum(1 for r in runs if not r.get("teacher_sha256"))
    if len(shas) > 1:
        named = ", ".join(sha[:16] for sha in shas)
        return (
            f"Warning: these rows were distilled from {len(shas)} different teacher "
            f"checkpoints (sha256 {named}); their differences are not paired comparisons."
        )
    if unrecorded:
        return (
            f"The teacher identity of {unrecorded} of {len(runs)} rows is unrecorded "
            "(written before the bench recorded its teacher checkpoint's sha256)."
        )
    return f"Every row was distilled from one teacher checkpoint (sha256 prefix {shas[0][:16]})."


def comparison_table(results: BenchResults, dataset: str) -> Table | None:
    """The bench's `comparisons`: paired per-seed deltas between two methods."""
    runs = results.runs[dataset]
    pairs = [p for p in results.bench.get("comparisons", []) if p[0] in runs and p[1] in runs]
    if not pairs:
        return None
    deltas = delta_metrics(results, dataset)
    headers = ["method", "against", "seeds"] + [DELTA_HEADER.format(h) for h, _ in deltas]
    rows = []
    for method, against in pairs:
        paired = [
            paired_delta(
                results.values(dataset, method, metric), results.values(dataset, against, metric)
            )
            for _, metric in deltas
        ]
        seeds = str(0 if paired[0] is None else paired[0].n)
        rows.append([method, against, seeds] + [fmt_paired(d) for d in paired])
    return Table(headers, rows)


def cost_rows(cost: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, variant) in table order: `none` alone, the floor, then the methods."""
    variants = cost["variants"]
    order = [BASELINE, FLOOR] + [n for n in cost["order"] if n not in (BASELINE, FLOOR)]
    labels = {BASELINE: "none (student alone)", FLOOR: "floor: none + teacher forward"}
    return [(labels.get(name, name), variants[name]) for name in order if name in variants]


def step_ratio(variant: dict[str, Any], ref: dict[str, Any]) -> tuple[float, list[float]]:
    """Step time of `variant` relative to `ref`: the ratio of their medians over all
    timed steps, and the ratio within each round (their medians in the same round;
    empty for results without per-round times), which shows how far the timings move."""
    mine, theirs = variant.get("step_ms_rounds") or [], ref.get("step_ms_rounds") or []
    rounds = [a / b for a, b in zip(mine, theirs, strict=True)] if len(mine) == len(theirs) else []
    return variant["step_ms"] / ref["step_ms"], rounds


def fmt_ratio(variant: dict[str, Any], ref: dict[str, Any]) -> str:
    ratio, rounds = step_ratio(variant, ref)
    if len(rounds) < 2:
        return f"{ratio:.3f}"
    return f"{ratio:.3f} ({min(rounds):.2f}-{max(rounds):.2f})"


def cost_table(cost: dict[str, Any]) -> Table:
    variants = cost["variants"]
    floor, alone = variants[FLOOR], variants[BASELINE]
    headers = [
        "variant",
        "step ms",
        "× floor",
        "× none",
        "peak MiB",
        "mem × floor",
        "KD share",
        "goal (≤1.10× floor, share <5%)",
    ]
    rows = []
    for label, v in cost_rows(cost):
        share = v.get("distill_share")
        rows.append(
            [
                label,
                f"{v['step_ms']:.1f}",
                fmt_ratio(v, floor),
                fmt_ratio(v, alone),
                f"{v['peak_mib']:.1f}",
                f"{v['peak_mib'] / floor['peak_mib']:.3f}",
                "-" if share is None else f"{100 * share:.1f}%",
                goal_verdict(v, floor) if v.get("method", "").startswith("liaf") else "",
            ]
        )
    return Table(headers, rows)


def goal_verdict(variant: dict[str, Any], floor: dict[str, Any]) -> str:
    ratio_ok = step_ratio(variant, floor)[0] <= GOAL_STEP_RATIO
    share = variant.get("distill_share")
    share_ok = share is not None and share < GOAL_SHARE
    return "met" if ratio_ok and share_ok else "not met"


def student_line(cost: dict[str, Any]) -> str:
    s = cost["student"]
    same = "identical for every method" if s["identical_across_methods"] else "DIFFERS by method"
    h, w = s["image_shape"]
    return (
        f"Student: {s['params'] / 1e6:.2f} M parameters, {s['flops'] / 1e9:.2f} GFLOPs and "
        f"{s['latency_ms']:.1f} ms per {h}x{w} image (predict, batch 1) — {same}."
    )


def cost_context(cost: dict[str, Any]) -> str:
    h, w = cost["image_shape"]
    return (
        f"Measured on {cost['device']}, one fixed batch of {cost['batch_size']} at {h}x{w}: "
        f"median of {cost['steps']} steps after {cost['warmup']} warm-up steps, variants "
        f"taking turns over {cost['rounds']} rounds; memory: {cost['memory_method']}."
        + (ROUNDS_NOTE if "step_ms_rounds" in cost["variants"][FLOOR] else "")
    )


# --- rendering ---------------------------------------------------------------------------


def markdown_table(table: Table) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [line(table.headers), "|" + "|".join(" --- " for _ in table.headers) + "|"]
    out += [line(row) for row in table.rows]
    return "\n".join(out)


def html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass
class Section:
    """One part of a report, rendered alike to Markdown and HTML: blocks in order,
    each ("text", str), ("table", (caption, Table)) or ("image", (alt, relative path))."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def text(self, paragraph: str) -> None:
        self.blocks.append(("text", paragraph))

    def table(self, caption: str, table: Table) -> None:
        self.blocks.append(("table", (caption, table)))

    def image(self, alt: str, path: str) -> None:
        self.blocks.append(("image", (alt, path)))


def report_sections(
    results: BenchResults, plots: dict[str, dict[str, Path]], base: Path
) -> list[Section]:
    sections = []
    for dataset in results.datasets():
        section = Section(f"Dataset `{dataset}`")
        info = results.bench.get("datasets", {}).get(dataset)
        if info:
            section.text(
                f"Format {info['format']}; trained on split `{info['train_split']}`, "
                f"evaluated on `{info['val_split']}`. COCO metrics in percent."
                + (f" {KITTI_NOTE}" if has_kitti(results, dataset) else "")
            )
        if dataset in results.runs:
            validity = validity_verdict(results, dataset)
            if validity:
                section.text(validity)
            section.table("Accuracy (mean ± std over seeds)", method_table(results, dataset))
            section.text(NOISE_RULE)
            curve = teacher_curve(results, dataset)
            if curve:
                section.text(curve)
            section.text(teacher_identity(results, dataset))
            pairs = comparison_table(results, dataset)
            if pairs is not None:
                section.table(COMPARISONS_CAPTION, pairs)
            absolute, deltas = kind_tables(results, dataset)
            section.table(f"{KIND_CAPTION} (mean ± std over seeds)", absolute)
            section.table(f"{KIND_CAPTION}: Δ to `none` paired by seed [95% CI]", deltas)
            section.text(kind_note(results, dataset))
        cost = results.costs.get(dataset)
        if cost is not None:
            section.table("Cost per training step", cost_table(cost))
            section.text(COST_LEGEND)
            section.text(cost_context(cost))
            section.text(student_line(cost))
        for kind, path in plots.get(dataset, {}).items():
            section.image(f"{dataset}: {kind}", os.path.relpath(path, base))
        sections.append(section)
    return sections


def notes_sections(output_dir: Path) -> list[Section]:
    """OUTPUT_DIR/notes.md as one section of paragraphs (none without the file)."""
    path = Path(output_dir) / NOTES_FILE
    if not path.is_file():
        return []
    section = Section(NOTES_TITLE)
    for paragraph in re.split(r"\n\s*\n", path.read_text().strip()):
        section.text(" ".join(paragraph.split()))
    return [section]


def header_lines(results: BenchResults) -> list[str]:
    bench = results.bench
    lines = []
    if bench.get("description"):
        lines.append(bench["description"].strip())
    seeds = bench.get("seeds")
    if seeds:
        lines.append(f"Seeds: {', '.join(str(s) for s in seeds)}.")
    if bench.get("expected_wall_time"):
        lines.append(f"Expected wall time: {bench['expected_wall_time']}.")
    wall = measured_wall_time(results)
    if wall:
        lines.append(f"Measured training wall time (teacher and all runs): {wall / 60:.1f} min.")
    versions = sorted({v for v in run_versions(results)})
    if versions:
        lines.append("Code: " + "; ".join(versions) + ".")
    lines.append(f"Generated from `{RESULTS_FILE}` by `liafkd bench report`; do not edit by hand.")
    return lines


def measured_wall_time(results: BenchResults) -> float:
    records = [*all_runs(results), *results.teachers.values()]
    return sum(r["timings"].get("wall_s", 0.0) for r in records)


def run_versions(results: BenchResults) -> list[str]:
    """One description per run of the code and machine it ran on."""
    out = []
    for record in [*results.teachers.values(), *all_runs(results)]:
        v = record.get("versions")
        if not v:
            continue
        code = f"liafkd {v.get('liafkd')} ({v.get('git') or 'no git'})"
        out.append(f"{code}, torch {v.get('torch')}, {v.get('device')}")
    return out


def all_runs(results: BenchResults) -> list[dict[str, Any]]:
    return [r for d in results.runs.values() for m in d.values() for r in m.values()]


def render_markdown(results: BenchResults, sections: list[Section]) -> str:
    out = [f"# Bench `{results.name}`", ""] + [line + "\n" for line in header_lines(results)]
    for section in sections:
        out += [f"## {section.title}", ""]
        for kind, content in section.blocks:
            if kind == "table":
                caption, table = content
                out += [f"**{caption}**", "", markdown_table(table), ""]
            elif kind == "image":
                out.append(f"![{content[0]}]({content[1]})\n")
            else:
                out.append(content + "\n")
    return "\n".join(out).rstrip() + "\n"


HTML_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1400px; padding: 0 1em; color: #222; line-height: 1.45; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; white-space: normal; vertical-align: bottom; }
td:first-child, th:first-child { text-align: left; }
tbody tr:nth-child(even) { background: #fafafa; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.caption { font-weight: bold; margin-top: 1em; }
"""


def render_html(results: BenchResults, sections: list[Section]) -> str:
    title = html.escape(f"Bench {results.name}")
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{title}</title>',
        f"<style>{HTML_STYLE}</style></head><body>",
        f"<h1>{title}</h1>",
    ]
    parts += [f"<p>{_inline_html(line)}</p>" for line in header_lines(results)]
    for section in sections:
        parts.append(f"<h2>{_inline_html(section.title)}</h2>")
        for kind, content in section.blocks:
            if kind == "table":
                caption, table = content
                parts.append(f'<div class="caption">{html.escape(caption)}</div>')
                parts.append(f'<div class="scroll">{html_table(table)}</div>')
            elif kind == "image":
                alt, path = (html.escape(c) for c in content)
                parts.append(f'<p><img src="{path}" alt="{alt}"></p>')
            else:
                parts.append(f"<p>{_inline_html(content)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _inline_html(text: str) -> str:
    """Escape, then turn Markdown `code` spans into <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def write_reports(output_dir: Path) -> dict[str, Path]:
    """Plots, report.md and report.html in `output_dir`; returns their paths."""
    from liafkd.bench.plots import write_plots

    output_dir = Path(output_dir)
    results = load_results(output_dir)
    plots = write_plots(results, output_dir / "plots")
    sections = notes_sections(output_dir) + report_sections(results, plots, output_dir)
    md = output_dir / "report.md"
    md.write_text(render_markdown(results, sections))
    page = output_dir / "report.html"
    page.write_text(render_html(results, sections))
    return {"markdown": md, "html": page}


# --- README section ----------------------------------------------------------------------


def readme_section(results: BenchResults, output_dir: Path, readme_dir: Path) -> str:
    """A compact results section: per dataset the accuracy table and the cost table,
    with links into the full report (paths relative to the README)."""
    link = os.path.relpath(Path(output_dir) / "report.md", readme_dir)
    # the command as typed from the working directory; the link as the page resolves it
    lines = [
        f"Generated by `liafkd bench report {os.path.relpath(output_dir)}` from "
        f"`{RESULTS_FILE}`; full report with plots: [{link}]({link}).",
        "",
    ]
    for dataset in results.datasets():
        if dataset in results.runs:
            validity = validity_verdict(results, dataset)
            if validity:
                lines += [validity, ""]
            lines += [f"**{results.name} / {dataset}**: accuracy (mean ± std over seeds)", ""]
            lines += [markdown_table(method_table(results, dataset)), ""]
            if has_kitti(results, dataset):
                lines += [KITTI_NOTE, ""]
            curve = teacher_curve(results, dataset)
            if curve:
                lines += [curve, ""]
            pairs = comparison_table(results, dataset)
            if pairs is not None:
                lines += [f"**{results.name} / {dataset}**: {COMPARISONS_CAPTION.lower()}", ""]
                lines += [markdown_table(pairs), ""]
        cost = results.costs.get(dataset)
        if cost is not None:
            lines += [f"**{results.name} / {dataset}**: cost per training step", ""]
            lines += [markdown_table(cost_table(cost)), "", COST_LEGEND, ""]
            lines += [f"{cost_context(cost)} {student_line(cost)}", ""]
    lines.append(NOISE_RULE)
    return "\n".join(lines)


def marker_pair(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"


def replace_between_markers(text: str, name: str, body: str, source: str) -> str:
    """`text` with what lies between bench:NAME's start and end markers replaced."""
    start, end = marker_pair(name)
    i, j = text.find(start), text.find(end)
    if i < 0 or j < 0:
        missing = start if i < 0 else end
        raise ConfigError(f"{source}: marker {missing} not found (add both {start} and {end})")
    if j < i:
        raise ConfigError(f"{source}: {end} comes before {start}")
    if text.find(start, i + 1) >= 0 or text.find(end, j + 1) >= 0:
        raise ConfigError(f"{source}: the bench:{name} markers appear more than once")
    return text[: i + len(start)] + "\n" + body.strip() + "\n" + text[j:]


def update_readme(readme: Path, output_dir: Path, name: str | None = None) -> str:
    """Regenerate the README section of the bench in `output_dir`; returns its name."""
    results = load_results(output_dir)
    name = name or results.name
    body = readme_section(results, Path(output_dir).resolve(), readme.resolve().parent)
    text = readme.read_text()
    readme.write_text(replace_between_markers(text, name, body, str(readme)))
    return name
