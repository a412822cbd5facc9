"""Build a tiny trainer from a config and train it a few steps on one batch; used by
the CUDA tests in-process and by the determinism test in fresh processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from liafkd.config import load_config
from liafkd.engine.build import build_student, load_indices
from liafkd.engine.trainer import DetectorTrainModule, Trainer, _to_device, seed_everything


def trainer_from(config_path: Path) -> Trainer:
    cfg = load_config(config_path)
    train_index, val_index = load_indices(cfg)
    seed_everything(cfg.train.seed)
    student = build_student(cfg.model, len(train_index.class_names))
    return Trainer(cfg, DetectorTrainModule(student), train_index, val_index)


def first_batch(trainer: Trainer) -> tuple[Any, list[dict[str, Any]]]:
    images, targets, _sizes = next(iter(trainer.loader))
    return images.to(trainer.device), [_to_device(t, trainer.device) for t in targets]


def train_steps(trainer: Trainer, steps: int) -> list[dict[str, float] | None]:
    batch = first_batch(trainer)
    return [trainer.train_step(*batch) for _ in range(steps)]
