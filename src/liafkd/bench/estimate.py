"""`liafkd bench CONFIG --estimate`: the bench's wall time, from a few timed steps.

Nothing is trained. Per dataset it times, on this machine: loading and augmenting a
training batch, the teacher's training step (a recipe teacher; the timing runs on
random weights), every method's training step (a random-weight teacher stands in
for an untrained recipe teacher), and inference of the teacher and the student on
one validation batch. It then multiplies:

    teacher  = epochs * batches/epoch * (load + step) + validations * val eval
    each run = epochs * batches/epoch * (load + step) + (validations + 1) * val eval
    cost     = (warmup + steps + 2) * sum of the variants' steps

(validations: the epochs that validate, per train.val_interval, plus the last; the
bench evaluates each run's final checkpoint once more). First-use costs (generating
the synthetic set, Python start-up) are not included.

Every time is taken on two clocks: wall time (what this machine gives now, other
processes included) and, on CPU, the process's CPU time. On a machine shared with
other work the wall figure is inflated; the CPU-time figure is not: on an idle
machine a run with T threads takes between CPU/T and CPU.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from liafkd.bench.config import LoadedBench
from liafkd.bench.cost import FLOOR, build_trainers, fixed_batch, synchronize
from liafkd.bench.runner import TeacherRun, plan_runs, plan_teacher

TIMED_STEPS = 3


@dataclass(frozen=True)
class Seconds:
    """A duration on both clocks."""

    wall: float
    cpu: float

    def __add__(self, other: Seconds) -> Seconds:
        return Seconds(self.wall + other.wall, self.cpu + other.cpu)

    def __mul__(self, factor: float) -> Seconds:
        return Seconds(self.wall * factor, self.cpu * factor)

    __rmul__ = __mul__


ZERO = Seconds(0.0, 0.0)


def timed(action: Callable[[], Any], repeats: int, device: torch.device) -> Seconds:
    """Median wall and CPU seconds of `repeats` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        synchronize(device)
        wall, cpu = time.perf_counter(), time.process_time()
        action()
        synchronize(device)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return Seconds(statistics.median(walls), statistics.median(cpus))


def validations(train_cfg) -> int:
    epochs, every = train_cfg.schedule.epochs, train_cfg.val_interval
    return len({e for e in range(1, epochs + 1) if e % every == 0} | {epochs})


def load_seconds(index, cfg) -> Seconds:
    """One training batch loaded and augmented by the recipe's loader."""
    from liafkd.data.dataset import build_loader

    loader = build_loader(
        index,
        cfg.data.augment,
        batch_size=cfg.data.batch_size,
        train=True,
        num_workers=cfg.data.num_workers,
        seed=0,
    )
    batches = iter(loader)
    next(batches)  # worker start-up is paid once per epoch, not per batch
    return timed(lambda: next(batches), min(TIMED_STEPS, len(loader) - 1), torch.device("cpu"))


def eval_seconds(detector, index, cfg, device: torch.device) -> Seconds:
    """Predicting the whole validation split, from one timed batch."""
    images, _targets = fixed_batch(index, cfg, cfg.data.batch_size, device)
    detector.eval()
    with torch.no_grad():
        per_batch = timed(lambda: detector.predict(images), 2, device)
    detector.train()
    return per_batch * math.ceil(len(index.records) / cfg.data.batch_size)


def step_seconds(trainer, batch) -> Seconds:
    trainer.module.train()
    trainer.train_step(*batch)  # warm-up
    return timed(lambda: trainer.train_step(*batch), TIMED_STEPS, trainer.device)


def random_teacher(teacher: TeacherRun, class_names: list[str]) -> None:
    """Writes the teacher's checkpoint with its architecture's initial (random) weights."""
    from liafkd.config import load_config
    from liafkd.engine.build import build_student
    from liafkd.engine.checkpoint import save_atomic

    model_cfg = load_config(teacher.config).model.model_copy(update={"pretrained": None})
    detector = build_student(model_cfg, len(class_names))
    state = {"model": detector.state_dict(), "meta": {"class_names": class_names}}
    save_atomic(state, teacher.checkpoint)


def teacher_seconds(teacher: TeacherRun, train_index, val_index) -> tuple[Seconds, Seconds, int]:
    """(one training step, one validation, number of validations) of the teacher."""
    from liafkd.config import load_config
    from liafkd.engine.build import build_student
    from liafkd.engine.trainer import DetectorTrainModule, Trainer

    cfg = load_config(teacher.config)
    student = build_student(cfg.model, len(train_index.class_names))
    trainer = Trainer(cfg, DetectorTrainModule(student), train_index, val_index)
    batch = fixed_batch(train_index, cfg, cfg.data.batch_size, trainer.device)
    step = step_seconds(trainer, batch)
    return step, eval_seconds(student, val_index, cfg, trainer.device), validations(cfg.train)


def estimate_dataset(bench: LoadedBench, dataset: str) -> dict[str, Any]:
    """Seconds per part of `dataset`'s share of the bench (see the module docstring)."""
    from liafkd.config import load_config
    from liafkd.engine.build import load_indices

    teacher = plan_teacher(bench, dataset)
    train_cfg = load_config(teacher.config)
    train_index, val_index = load_indices(train_cfg)
    batches = math.ceil(len(train_index.records) / train_cfg.data.batch_size)
    load = load_seconds(train_index, train_cfg)
    parts: dict[str, Seconds] = {}
    if not bench.teachers[dataset].is_trained:
        step, evaluation, passes = teacher_seconds(teacher, train_index, val_index)
        epochs = bench.teachers[dataset].train.schedule.epochs
        parts["teacher"] = epochs * batches * (load + step) + passes * evaluation
        random_teacher(teacher, train_index.class_names)
    runs = plan_runs(bench, dataset, teacher)
    first = {r.method.name: r.config for r in runs if r.seed == bench.cfg.seeds[0]}
    trainers, cfg, _ = build_trainers(first, teacher.config, teacher.checkpoint)
    device = trainers[FLOOR].device
    batch = fixed_batch(train_index, cfg, cfg.data.batch_size, device)
    steps = {name: step_seconds(trainer, batch) for name, trainer in trainers.items()}
    evaluation = eval_seconds(trainers[FLOOR].module.student, val_index, cfg, device)
    epochs = cfg.train.schedule.epochs
    evaluations = validations(cfg.train) + 1
    for name in first:
        run = epochs * batches * (load + steps[name]) + evaluations * evaluation
        parts[f"run {name}"] = run * len(bench.cfg.seeds)
    cost = bench.cfg.cost
    if cost.enabled:
        parts["cost"] = (cost.warmup + cost.steps + 2) * sum(steps.values(), ZERO)
    return {
        "train_images": len(train_index.records),
        "batches_per_epoch": batches,
        "load": load,
        "steps": steps,
        "parts": parts,
        "total": sum(parts.values(), ZERO),
    }


def estimate_wall_time(bench: LoadedBench) -> dict[str, Any]:
    """The estimate per dataset and in total. Runs in WORK_DIR/estimate, so that the
    stand-in teacher and the configs that name it never touch the bench's own."""
    probe = replace(
        bench, cfg=bench.cfg.model_copy(update={"work_dir": str(bench.work_dir / "estimate")})
    )
    load_before = os.getloadavg()[0]
    per_dataset = {d: estimate_dataset(probe, d) for d in bench.datasets}
    return {
        "datasets": per_dataset,
        "total": sum((d["total"] for d in per_dataset.values()), ZERO),
        "threads": torch.get_num_threads(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "load_average": max(load_before, os.getloadavg()[0]),
    }


def _minutes(s: Seconds, on_cuda: bool) -> str:
    if on_cuda:
        return f"{s.wall / 60:.1f} min"
    return f"{s.wall / 60:.1f} min wall, {s.cpu / 60:.1f} min CPU"


def format_estimate(bench: LoadedBench, estimate: dict[str, Any]) -> str:
    on_cuda = estimate["device"] == "cuda"
    lines = [
        f"bench {bench.cfg.name}: estimate on this machine ({estimate['device']}, "
        f"{estimate['threads']} threads, load average {estimate['load_average']:.1f})"
    ]
    for dataset, e in estimate["datasets"].items():
        lines.append(
            f"  {dataset}: {e['train_images']} training images, {e['batches_per_epoch']} "
            f"batches/epoch; a batch loads in {1e3 * e['load'].wall:.0f} ms"
        )
        for name, step in e["steps"].items():
            lines.append(
                f"    step {name}: {1e3 * step.wall:.0f} ms wall, {1e3 * step.cpu:.0f} ms CPU"
            )
        for name, seconds in e["parts"].items():
            lines.append(f"    {name}: {_minutes(seconds, on_cuda)}")
    lines.append(f"  total: {_minutes(estimate['total'], on_cuda)}")
    if not on_cuda:
        threads = estimate["threads"]
        lines.append(
            f"  on an idle machine with {threads} threads: between "
            f"{estimate['total'].cpu / threads / 60:.0f} and {estimate['total'].cpu / 60:.0f} min"
        )
    lines.append(f"  stated in the config: {bench.cfg.expected_wall_time}")
    return "\n".join(lines)
