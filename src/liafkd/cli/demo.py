"""`liafkd demo`: the whole pipeline on the synthetic default, on a laptop CPU.

Generates the synthetic set, trains a teacher, then trains the same small student
twice, alone (`none`) and with LIAF-KD (`liaf`) against that teacher, and prints the
three results side by side. Every step is a YAML config written under OUT/configs,
so each can be rerun with `liafkd train` / `liafkd distill` / `liafkd eval`.
"""

from __future__ import annotations

import argparse
import json
import textwrap
import time
from pathlib import Path
from typing import Any

import yaml

from liafkd.cli.threads import add_threads_arg, apply_threads

TEACHER_MODEL = {"depth": 18, "width": 32, "fpn_channels": 64, "head_convs": 2, "head_channels": 64}
STUDENT_MODEL = {"depth": 18, "width": 16, "fpn_channels": 32, "head_convs": 2, "head_channels": 32}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="synthetic data -> teacher -> student alone and with LIAF-KD, on CPU",
        description="Runs on a machine with no data and no GPU: generates the synthetic "
        "driving-scene set, trains a GFL teacher, trains a smaller GFL student alone and "
        "with LIAF-KD, evaluates all three and prints them side by side.",
    )
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--images", type=int, default=200, help="synthetic images (3/4 train)")
    p.add_argument("--epochs", type=int, default=8, help="epochs for each of the three runs")
    p.add_argument("--seed", type=int, default=0)
    add_threads_arg(p)
    p.set_defaults(func=run)


def experiment(name: str, out: Path, model: dict, args: argparse.Namespace) -> dict[str, Any]:
    data_root = str(out / "data" / "synthetic")
    synth = {
        "format": "synthetic",
        "root": data_root,
        "synth_images": args.images,
        "synth_seed": args.seed,
    }
    return {
        "name": name,
        "output_dir": str(out / name),
        "data": {
            "train": {**synth, "split": "train"},
            "val": {**synth, "split": "val"},
            "augment": {"image_size": [192, 320], "hflip": 0.5},
            "batch_size": 8,
        },
        "model": {"type": "gfl", **model},
        "train": {
            "optim": {"type": "adamw", "lr": 0.002, "weight_decay": 0.05, "grad_clip": 10.0},
            "schedule": {"epochs": args.epochs, "warmup_iters": 50, "policy": "cosine"},
            "seed": args.seed,
            "val_interval": args.epochs,
        },
    }


def refuse_earlier_demo(out: Path) -> None:
    """A finished (or partial) demo is never overwritten, nor mixed with a new one."""
    from liafkd.engine.rundir import RunDirError, run_files

    held = [name for name in ("teacher", "student_none", "student_liaf") if run_files(out / name)]
    if held:
        raise RunDirError(
            f"{out} holds an earlier demo's runs ({', '.join(held)}); choose another --out, "
            "or delete that folder first"
        )


def write_config(raw: dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run(args: argparse.Namespace) -> int:
    from liafkd.data.formats.common import read_split_stems
    from liafkd.engine.evaluate import count_parameters
    from liafkd.engine.runs import distill_student, train_detector

    apply_threads(args.threads)
    out = Path(args.out).resolve()
    refuse_earlier_demo(out)
    configs = out / "configs"
    tic = time.perf_counter()
    teacher_cfg = write_config(experiment("teacher", out, TEACHER_MODEL, args), configs)
    runs = {}
    print(f"[1/3] teacher: {teacher_cfg}")
    runs["teacher"] = train_detector(str(teacher_cfg), [])
    teacher_block = {"config": str(teacher_cfg), "checkpoint": str(out / "teacher" / "final.pt")}
    for step, method in ((2, "none"), (3, "liaf")):
        raw = experiment(f"student_{method}", out, STUDENT_MODEL, args)
        raw["distill"] = {"method": method, "teacher": teacher_block}  # published weights
        path = write_config(raw, configs)
        print(f"[{step}/3] student with `{method}`: {path}")
        runs[f"student_{method}"] = distill_student(str(path), [])
    elapsed = time.perf_counter() - tic
    rows = []
    for name, summary in runs.items():
        model = TEACHER_MODEL if name == "teacher" else STUDENT_MODEL
        final = summary["final"]
        rows.append(
            {
                "run": name,
                "params_M": count_parameters(model) / 1e6,
                **{k: final.get(k) for k in ("AP", "AP50", "AP75")},
            }
        )
    val_images = len(read_split_stems(out / "data" / "synthetic" / "ImageSets" / "val.txt"))
    print()
    print(format_rows(rows, val_images, args.epochs, ranking_standing()))
    result = {"rows": rows, "wall_time_s": elapsed, "args": vars(args) | {"func": None}}
    (out / "demo_results.json").write_text(json.dumps(result, indent=2, default=str))
    print(
        f"\nwall time {elapsed / 60:.1f} min; results {out / 'demo_results.json'}; "
        f"runs, checkpoints and configs under {out}"
    )
    return 0


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
    rows: list[dict[str, Any]], val_images: int, epochs: int, standing: str = ""
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
    text = "\n".join(lines) + "\n\n" + textwrap.fill(conclusion(rows, epochs), 88)
    return text + (f"\n\n{textwrap.fill(standing, 88, break_on_hyphens=False)}" if standing else "")


def conclusion(rows: list[dict[str, Any]], epochs: int) -> str:
    """What a user should take from the table (and what not)."""
    ap = {r["run"]: r["AP"] for r in rows}
    text = (
        "How to read it: the teacher is the larger model the students learn from, the "
        "reference above them. student_none and student_liaf are the same small model, "
        "trained alone and with LIAF-KD."
    )
    if ap.get("student_none") is not None and ap.get("student_liaf") is not None:
        delta = 100 * (ap["student_liaf"] - ap["student_none"])
        text += f" Here LIAF-KD moves its AP by {delta:+.1f} points."
    return text + (
        f" With {epochs} epochs and one seed on CPU, a gap of a few points either way is "
        "within run-to-run noise, and LIAF-KD below the student alone is not unusual on "
        "this schedule: the demo shows that the whole pipeline runs on your machine, not "
        "which method is better (the ranking bench, below and in the README's Results, "
        "compares methods over 3 seeds)."
    )
