"""`liafkd demo`'s recipe: a strong shipped teacher, a student with little data.

The teacher is a GFL detector trained once by `liafkd train` on its own synthetic set
(`synth_seed` 1 in assets/demo_teacher/teacher.yaml) and shipped in the package with
its training log; its sha256 is checked before it is used. The demo generates a small
synthetic set of its own (`synth_seed` 0: no image of it is in the teacher's set),
trains the same small student on that set's few training images alone (`none`) and
with LIAF-KD's shipped default (`liaf`, no options), and evaluates the teacher and both
students on the set's validation split, which no run trained on.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "demo_teacher"
TEACHER_CONFIG = ASSET_DIR / "teacher.yaml"
TEACHER_WEIGHTS = ASSET_DIR / "final.pt"
# sha256 of TEACHER_WEIGHTS as `liafkd train` wrote it (assets/demo_teacher/SHA256SUMS)
TEACHER_SHA256 = "acf09c7ebffbe8ca1345fd9d407249bcbac70cff124fbe97b8258cf9865cc3fc"
DEMO_SYNTH_SEED = 0  # the demo's own images; the teacher's set uses another seed
STUDENT_MODEL = {"depth": 18, "width": 8, "fpn_channels": 32, "head_convs": 2, "head_channels": 32}
RUN_NAMES = ("teacher", "student_none", "student_liaf")


class DemoError(Exception):
    """The demo cannot go on: a wrong teacher file, an earlier demo in the folder (exit 2).
    Defined without liafkd.config so that `liafkd demo --help` imports no pydantic."""


@dataclass
class Recipe:
    """How much the demo trains: the students' data and schedule, and the seed."""

    images: int = 200  # synthetic images generated for the demo, 3/4 train, 1/4 val
    # each student's epochs over the demo's training images; with 8 (152 steps) the
    # student alone and the distilled one were both below 5 AP (benchmarks/demo)
    epochs: int = 16
    seed: int = 0  # the students' training seed
    methods: tuple[str, ...] = ("none", "liaf")


@dataclass
class DemoRuns:
    """What the demo trained and measured, and where it wrote it."""

    rows: list[dict[str, Any]]
    configs: dict[str, Path]  # run name -> the config that reproduces it
    checkpoints: dict[str, Path]  # run name -> its weights
    wall_time_s: float
    val_images: int
    timings: dict[str, float] = field(default_factory=dict)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_shipped_teacher(path: Path = TEACHER_WEIGHTS, expected: str = TEACHER_SHA256) -> Path:
    """The shipped teacher's weights, refused when missing or not the file shipped."""
    if not path.is_file():
        raise DemoError(
            f"{path}: the demo's shipped teacher is missing (a broken install?); "
            "reinstall liafkd, or train it with `liafkd demo --train-teacher`"
        )
    actual = file_sha256(path)
    if actual != expected:
        raise DemoError(
            f"{path}: sha256 {actual} is not the shipped teacher's ({expected}); refusing "
            "to use it. Reinstall liafkd, or train it with `liafkd demo --train-teacher`"
        )
    return path


def shipped_teacher_config() -> dict[str, Any]:
    return yaml.safe_load(TEACHER_CONFIG.read_text())


def teacher_training_config(out: Path) -> dict[str, Any]:
    """The shipped teacher's config with its data and run folder under `out`."""
    raw = shipped_teacher_config()
    raw["output_dir"] = str(out / "teacher")
    for split in ("train", "val"):
        raw["data"][split]["root"] = str(out / "data" / "teacher-synthetic")
    return raw


def demo_data(out: Path, recipe: Recipe) -> dict[str, Any]:
    synth = {
        "format": "synthetic",
        "root": str(out / "data" / "synthetic"),
        "synth_images": recipe.images,
        "synth_seed": DEMO_SYNTH_SEED,
    }
    return {
        "train": {**synth, "split": "train"},
        "val": {**synth, "split": "val"},
        "augment": {"image_size": [192, 320], "hflip": 0.5},
        "batch_size": 8,
        "cache_images": True,
    }


def student_config(
    method: str, out: Path, recipe: Recipe, teacher: dict[str, str]
) -> dict[str, Any]:
    """A student run: `none` or a distillation method at its shipped default."""
    epochs = recipe.epochs
    return {
        "name": f"student_{method}",
        "output_dir": str(out / f"student_{method}"),
        "data": demo_data(out, recipe),
        "model": {"type": "gfl", **STUDENT_MODEL},
        "train": {
            "optim": {"type": "adamw", "lr": 0.002, "weight_decay": 0.05, "grad_clip": 10.0},
            "schedule": {"epochs": epochs, "warmup_iters": 30, "policy": "cosine"},
            "seed": recipe.seed,
            "val_interval": epochs,
            "channels_last": "teacher",
        },
        # `none` trains alone: no teacher to load, nor to run at every step
        "distill": {"method": method} | ({"teacher": teacher} if method != "none" else {}),
    }


def teacher_eval_config(out: Path, recipe: Recipe) -> dict[str, Any]:
    """The teacher's model on the demo's data: `liafkd eval` scores it on the demo's val."""
    return {
        "name": "teacher",
        "output_dir": str(out / "teacher_eval"),
        "data": demo_data(out, recipe),
        "model": shipped_teacher_config()["model"],
    }


def refuse_earlier_demo(out: Path) -> None:
    """A finished (or partial) demo is never overwritten, nor mixed with a new one."""
    from liafkd.engine.rundir import run_files

    held = [name for name in RUN_NAMES if run_files(out / name)]
    if held:
        raise DemoError(
            f"{out} holds an earlier demo's runs ({', '.join(held)}); choose another --out, "
            "or delete that folder first"
        )


def write_config(raw: dict[str, Any], folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def count_model_parameters(model: dict[str, Any]) -> float:
    from liafkd.engine.evaluate import count_parameters

    return count_parameters({k: v for k, v in model.items() if k != "type"}) / 1e6


def run_demo(out: Path, recipe: Recipe, train_teacher: bool, log=print) -> DemoRuns:
    """Teacher (shipped or trained), then each student method; every step's config is
    written under out/configs so it can be rerun with `liafkd train/distill/eval`."""
    from liafkd.config import load_config
    from liafkd.engine import evaluate, runs

    refuse_earlier_demo(out)
    configs_dir = out / "configs"
    tic = time.perf_counter()
    steps = len(recipe.methods) + 1
    timings: dict[str, float] = {}
    if train_teacher:
        teacher_train = write_config(teacher_training_config(out), configs_dir, "teacher_train")
        log(f"[1/{steps}] teacher, trained on its own synthetic set: {teacher_train}")
        runs.train_detector(str(teacher_train), [])
        teacher_weights = out / "teacher" / "final.pt"
    else:
        teacher_weights = verify_shipped_teacher()
        log(f"[1/{steps}] teacher: the shipped one, {teacher_weights} (sha256 checked)")
    timings["teacher"] = time.perf_counter() - tic
    teacher_cfg = write_config(teacher_eval_config(out, recipe), configs_dir, "teacher")
    teacher_block = {"config": str(teacher_cfg), "checkpoint": str(teacher_weights)}
    summaries: dict[str, dict[str, Any]] = {}
    configs = {"teacher": teacher_cfg}
    checkpoints = {"teacher": teacher_weights}
    for step, method in enumerate(recipe.methods, start=2):
        name = f"student_{method}"
        path = write_config(student_config(method, out, recipe, teacher_block), configs_dir, name)
        log(f"[{step}/{steps}] student with `{method}`: {path}")
        start = time.perf_counter()
        summaries[name] = runs.distill_student(str(path), [])
        timings[name] = time.perf_counter() - start
        configs[name] = path
        checkpoints[name] = out / name / "final.pt"
    start = time.perf_counter()
    teacher_metrics, _ = evaluate.evaluate_checkpoint(
        load_config(str(teacher_cfg)), str(teacher_weights)
    )
    timings["teacher_eval"] = time.perf_counter() - start
    rows = [row("teacher", shipped_teacher_config()["model"], teacher_metrics)]
    rows += [row(name, STUDENT_MODEL, s["final"]) for name, s in summaries.items()]
    return DemoRuns(
        rows=rows,
        configs=configs,
        checkpoints=checkpoints,
        wall_time_s=time.perf_counter() - tic,
        val_images=val_image_count(out),
        timings=timings,
    )


def row(name: str, model: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "run": name,
        "params_M": count_model_parameters(model),
        **{k: metrics.get(k) for k in ("AP", "AP50", "AP75")},
    }


def val_image_count(out: Path) -> int:
    from liafkd.data.formats.common import read_split_stems

    return len(read_split_stems(out / "data" / "synthetic" / "ImageSets" / "val.txt"))


def picture_inputs(demo: DemoRuns, count: int):
    """The first `count` validation images and each run's detections on them: (records,
    {run name: {image id: detections}}, class names)."""
    from liafkd.config import load_config
    from liafkd.data.records import DatasetIndex
    from liafkd.engine.build import load_index
    from liafkd.engine.evaluate import load_detector, predict_dataset

    val_cfg = load_config(str(demo.configs["teacher"]))
    index = load_index(val_cfg.data.val, "data.val")
    shown = DatasetIndex(index.records[:count], index.class_names)
    detections = {}
    for name, config in demo.configs.items():
        model_cfg = load_config(str(config)).model
        detector = load_detector(model_cfg, str(demo.checkpoints[name]), index.class_names)
        detections[name] = predict_dataset(
            detector, shown, val_cfg.data.augment, torch_cpu(), progress=False
        )
    return shown.records, detections, index.class_names


def torch_cpu():
    import torch

    return torch.device("cpu")
