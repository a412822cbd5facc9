"""`liafkd demo`: what distillation buys, on the synthetic default, on a laptop CPU.

Uses the teacher shipped in the package (or trains it: --train-teacher), generates a
small synthetic set, trains the same small student on its few training images alone
(`none`) and with LIAF-KD (`liaf`, its shipped default), evaluates the three on the
set's validation split and draws them side by side in OUT/compare.png. Every step is a
YAML config written under OUT/configs, so each can be rerun with `liafkd train` /
`liafkd distill` / `liafkd eval`. The recipe itself lives in liafkd.engine.demo.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path
from typing import Any

from liafkd.cli.threads import add_threads_arg, apply_threads

PICTURE_IMAGES = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    from liafkd.engine.demo import Recipe

    defaults = Recipe()
    p = subparsers.add_parser(
        "demo",
        help="shipped teacher -> student alone and with LIAF-KD, on CPU, with a picture",
        description="Runs on a machine with no data and no GPU: generates a small "
        "synthetic driving-scene set, trains a small GFL student on its few training "
        "images alone and with LIAF-KD from the GFL teacher shipped with liafkd, "
        "evaluates the three on the set's validation split (images no run trained on, the "
        "teacher included), prints them side by side and draws OUT/compare.png.",
    )
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument(
        "--images",
        type=int,
        default=defaults.images,
        help=f"synthetic images generated, 3/4 train, 1/4 val (default {defaults.images})",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=defaults.epochs,
        help=f"each student's epochs (default {defaults.epochs})",
    )
    p.add_argument("--seed", type=int, default=defaults.seed, help="the students' training seed")
    p.add_argument(
        "--train-teacher",
        action="store_true",
        help="train the teacher with its shipped config (liafkd/assets/demo_teacher/"
        "teacher.yaml) into OUT/teacher instead of using the shipped weights; takes far "
        "longer than the demo (the shipped run's log: metrics.jsonl beside that file)",
    )
    add_threads_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from liafkd.compare_figure import draw_comparison
    from liafkd.engine.demo import Recipe, picture_inputs, run_demo

    apply_threads(args.threads)
    out = Path(args.out).resolve()
    recipe = Recipe(images=args.images, epochs=args.epochs, seed=args.seed)
    demo = run_demo(out, recipe, train_teacher=args.train_teacher)
    records, detections, class_names = picture_inputs(demo, PICTURE_IMAGES)
    picture = draw_comparison(records, detections, class_names, demo.rows, out / "compare.png")
    results = out / "demo_results.json"
    payload = {
        "rows": demo.rows,
        "wall_time_s": demo.wall_time_s,
        "timings_s": demo.timings,
        "args": vars(args) | {"func": None},
    }
    results.write_text(json.dumps(payload, indent=2, default=str))
    print()
    standing = ranking_standing()
    print(format_rows(demo.rows, demo.val_images, recipe.epochs, standing, not args.train_teacher))
    print()
    print(files_table(out, picture, results, demo.configs))
    print()
    print(textwrap.fill(closing(demo.rows, demo.wall_time_s), 88))
    return 0


def files_table(out: Path, picture: Path, results: Path, configs: dict[str, Path]) -> str:
    """Where the demo wrote what the user may want to open next."""
    entries = [
        ("picture", picture),
        ("results", results),
        ("configs", configs[next(iter(configs))].parent),
        *((f"run {name}", out / name) for name in configs if name != "teacher"),
    ]
    width = max(len(label) for label, _ in entries)
    return "\n".join(f"{label:<{width}}  {path}" for label, path in entries)


def closing(rows: list[dict[str, Any]], wall_time_s: float) -> str:
    """Two sentences: what the user just saw, and what to run next."""
    ap = {r["run"]: r["AP"] for r in rows}
    seen = (
        f"You just trained the same small student on a few images alone and with LIAF-KD "
        f"learning from a stronger teacher, in {wall_time_s / 60:.1f} min"
    )
    if ap.get("student_none") is not None and ap.get("student_liaf") is not None:
        delta = 100 * (ap["student_liaf"] - ap["student_none"])
        seen += f": LIAF-KD moved its AP by {delta:+.1f} points (compare.png shows where)."
    else:
        seen += " (compare.png shows them side by side)."
    return seen + (
        ' Next, distil your own detector on your own data (README, "Your own data": '
        "`liafkd data check`, then `liafkd distill`), or rank methods over 5 paired seeds "
        "with the benches (`liafkd bench cpu-synthetic-rank --estimate`)."
    )


def ranking_standing() -> str:
    """The shipped default and what the ranking benches measured for it (README, Results)."""
    from liafkd.bench.standing import RANKING_BENCHES, find_bench, liaf_standing
    from liafkd.distill.config import SelectorConfig

    sel = SelectorConfig()
    if sel.lam == 0:
        weighting = "uniform instance weights (selector.lam 0: the selector's weighting is off)"
    else:
        weighting = (
            f"selector objective `{sel.objective}`, lam {sel.lam}, tau_w {sel.tau_w}, "
            f"entropy_beta {sel.entropy_beta}"
        )
    default = f"LIAF-KD ran its shipped default, chosen on a tuning split: {weighting}."
    sentences = [default]
    for name in RANKING_BENCHES:
        folder = find_bench(name)
        if folder is None:
            sentences.append(f"The ranking bench's results (benchmarks/{name}) are not here.")
        else:
            sentences.append(liaf_standing(folder))
    return " ".join(sentences)


def format_rows(
    rows: list[dict[str, Any]],
    val_images: int,
    epochs: int,
    standing: str = "",
    shipped_teacher: bool = True,
) -> str:
    """The demo's table: what it measures, on which images, and how to read it."""
    title = (
        f"COCO box AP in percent (pycocotools: AP over IoU 0.50:0.95, AP50 and AP75 at IoU "
        f"0.5 and 0.75) on the synthetic set's validation split ({val_images} images no run "
        "trained on):"
    )
    lines = [
        textwrap.fill(title, 88),
        f"{'run':<16}{'params':>9}{'AP':>8}{'AP50':>8}{'AP75':>8}",
    ]
    for r in rows:
        cells = "".join(
            f"{100 * r[k]:>8.1f}" if r[k] is not None else f"{'-':>8}"
            for k in ("AP", "AP50", "AP75")
        )
        lines.append(f"{r['run']:<16}{r['params_M']:>8.2f}M{cells}")
    text = "\n".join(lines) + "\n\n" + textwrap.fill(conclusion(rows, epochs, shipped_teacher), 88)
    return text + (f"\n\n{textwrap.fill(standing, 88, break_on_hyphens=False)}" if standing else "")


def conclusion(rows: list[dict[str, Any]], epochs: int, shipped_teacher: bool = True) -> str:
    """How to read the table (and what one seed does not say)."""
    names = ", ".join(r["run"] for r in rows if r["run"].startswith("student_"))
    origin = "shipped with liafkd" if shipped_teacher else "trained here (--train-teacher)"
    return (
        "How to read it: the teacher is the larger model the students learn from, trained "
        f"on a synthetic set of its own (other images than the demo's), {origin}; "
        f"{names} are the same small model trained for {epochs} epochs on the demo's few "
        "training images, alone (none) and learning from the teacher. This is one seed: "
        "benchmarks/demo/results.json holds the same recipe over 3 seeds, and the ranking "
        "benches (below) compare methods."
    )
