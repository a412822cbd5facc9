"""Turn a validated config into datasets and a detector, reporting data problems."""

from __future__ import annotations

from collections import Counter

from torch import nn

from liafkd.config import DatasetConfig, ExperimentConfig, ModelConfig
from liafkd.data.records import DatasetIndex


def load_index(ds_cfg: DatasetConfig, what: str) -> DatasetIndex:
    """Read a dataset, stop under `strict` before training, else report the drops."""
    from liafkd.data.formats import DatasetError, enforce_policy, read_dataset

    index = read_dataset(ds_cfg)
    enforce_policy(index, ds_cfg)
    if index.problems:
        kinds = Counter(p.kind for p in index.problems)
        dropped = sum(p.dropped for p in index.problems)
        summary = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        print(
            f"{what}: {len(index.problems)} data problems ({summary}); {dropped} dropped. "
            f"Run `liafkd data check` for the full list."
        )
    if not index.records:
        raise DatasetError(
            f"{what}: the dataset at {ds_cfg.root} (split {ds_cfg.split}) has no usable image"
            + (f" ({len(index.problems)} data problems)" if index.problems else "")
        )
    return index


def load_indices(cfg: ExperimentConfig) -> tuple[DatasetIndex, DatasetIndex]:
    from liafkd.data.formats import DatasetError

    train = load_index(cfg.data.train, "data.train")
    if not any(r.num_instances for r in train.records):
        ds = cfg.data.train
        unknown = sum(p.kind == "unknown_class" for p in train.problems)
        hint = (
            f"; {unknown} object(s) of other classes were left out (data.train.classes, class_map)"
            if unknown
            else ""
        )
        raise DatasetError(
            f"data.train: none of the {len(train.records)} image(s) at {ds.root} (split "
            f"{ds.split}) has an object of the classes {train.class_names}{hint}; a detector "
            "cannot learn from negatives alone"
        )
    val = load_index(cfg.data.val, "data.val")
    if train.class_names != val.class_names:
        raise DatasetError(
            f"data.train classes {train.class_names} differ from data.val classes {val.class_names}"
        )
    return train, val


def build_student(model_cfg: ModelConfig, num_classes: int) -> nn.Module:
    from liafkd.models.build import build_detector

    return build_detector(model_cfg, num_classes)
