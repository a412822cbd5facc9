"""The bench config: one teacher, one student recipe, methods x seeds x datasets.

    name: cpu-smoke
    expected_wall_time: "about 25 min on 2 CPU cores"
    output_dir: benchmarks/cpu-smoke      # results.jsonl, reports, plots (committed)
    work_dir: runs/bench/cpu-smoke        # checkpoints and run configs (not committed)
    teacher: {model: {...}, train: {...}}  # a recipe, trained once per dataset, or
    # teacher: {config: t.yaml, checkpoint: t.pt}   # a trained teacher
    student: {model: {...}, train: {...}}
    datasets:
      - name: bccd
        train: ../datasets/bccd_train.yaml   # a dataset YAML, or the block inline
        val: ../datasets/bccd_val.yaml
        augment: {image_size: [320, 416]}
        batch_size: 8
    methods: [none, mimic, {name: liaf_adv, method: liaf,
                            options: {liaf: {selector: {objective: adversarial}}}}]
    distill_options: {checks: {teacher_sanity: false}}  # merged into every method's block
    seeds: [0, 1, 2]
    validity: [mimic, fgd]   # each must beat `none` beyond noise; the report says first

Relative dataset roots and teacher paths resolve against the bench file; output_dir
and work_dir against the current directory (as `output_dir` of an experiment).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from liafkd.bench.presets import PRESET_DIR, preset_names
from liafkd.config import (
    AugmentConfig,
    ConfigError,
    DatasetConfig,
    ModelConfig,
    StrictModel,
    TrainConfig,
    load_dataset_config,
    read_yaml,
    validate,
)
from liafkd.distill.config import MethodName, load_distill_config

BASELINE = "none"  # the method every delta is taken against
RESERVED_ROW = "floor"  # the cost table's `none` + teacher forward


class TeacherSpec(StrictModel):
    """Either a recipe to train (model, train) or a trained teacher (config, checkpoint)."""

    model: ModelConfig | None = None
    train: TrainConfig = Field(default_factory=TrainConfig)
    config: str | None = None  # the trained teacher's experiment YAML
    checkpoint: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> TeacherSpec:
        given = (self.config is not None, self.checkpoint is not None)
        if any(given) and not all(given):
            raise ValueError("a trained teacher needs both `config` and `checkpoint`")
        if all(given) == (self.model is not None):
            raise ValueError(
                "give either a recipe to train (`model`, `train`) or a trained teacher "
                "(`config`, `checkpoint`), not both"
            )
        return self

    @property
    def is_trained(self) -> bool:
        return self.checkpoint is not None


class StudentRecipe(StrictModel):
    model: ModelConfig
    train: TrainConfig = Field(default_factory=TrainConfig)


class DatasetEntry(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    train: DatasetConfig | str  # inline block, or a dataset YAML path
    val: DatasetConfig | str
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    batch_size: int = Field(default=8, ge=1)
    num_workers: int = Field(default=0, ge=0)
    cache_images: bool = False  # data.cache_images of every run (speed only: not in keys)
    teacher: TeacherSpec | None = None  # overrides the bench's teacher for this dataset


class MethodEntry(StrictModel):
    """A table row: a registered method, optionally with options (ablations)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.+-]+$")
    method: MethodName
    options: dict[str, Any] = Field(default_factory=dict)  # merged into `distill:`


class CostConfig(StrictModel):
    enabled: bool = True
    warmup: int = Field(default=3, ge=1)  # untimed steps per variant
    steps: int = Field(default=20, ge=1)  # timed steps per variant, split over the rounds
    rounds: int = Field(default=4, ge=1)  # variants take turns, so machine load hits all alike
    inference_runs: int = Field(default=20, ge=1)
    batch_size: int | None = Field(default=None, ge=1)  # default: the dataset's


class BenchConfig(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    expected_wall_time: str  # stated by every preset, e.g. "about 25 min on 2 CPU cores"
    output_dir: str
    work_dir: str
    teacher: TeacherSpec
    student: StudentRecipe
    datasets: list[DatasetEntry] = Field(min_length=1)
    methods: list[MethodEntry] = Field(min_length=1)
    distill_options: dict[str, Any] = Field(default_factory=dict)
    seeds: list[int] = Field(min_length=1)
    cost: CostConfig = Field(default_factory=CostConfig)
    # [method, against]: extra paired deltas in the report, e.g. what a selector adds
    # to the method it wraps (every table already compares each row with `none`)
    comparisons: list[tuple[str, str]] = Field(default_factory=list)
    # the published ordering the bench must reproduce before any row is read: each of
    # these rows above `none` on AP beyond noise (the report prints it first)
    validity: list[str] = Field(default_factory=list)

    @field_validator("methods", mode="before")
    @classmethod
    def _names_as_entries(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v, "method": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _check_lists(self) -> BenchConfig:
        names = [m.name for m in self.methods]
        _no_duplicates(names, "methods", "name")
        if RESERVED_ROW in names:
            raise ValueError(f"methods: `{RESERVED_ROW}` is reserved for the cost table's floor")
        if BASELINE not in names:
            raise ValueError(f"methods: must include `{BASELINE}`, the baseline of every delta")
        _no_duplicates([d.name for d in self.datasets], "datasets", "name")
        _no_duplicates(self.seeds, "seeds", "seed")
        for k, pair in enumerate(self.comparisons):
            unknown = [name for name in pair if name not in names]
            if unknown:
                missing = ", ".join(map(repr, unknown))
                raise ValueError(f"comparisons.{k}: {missing} not among the methods {names}")
        for name in self.validity:
            if name not in names or name == BASELINE:
                raise ValueError(f"validity: {name!r} is not a method row other than `none`")
        return self

    def method(self, name: str) -> MethodEntry:
        return next(m for m in self.methods if m.name == name)


def _no_duplicates(values: list, where: str, what: str) -> None:
    seen = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{where}: {what} {v!r} appears twice")
        seen.add(v)


@dataclass
class LoadedBench:
    """A validated bench with its datasets and teachers resolved to absolute paths."""

    cfg: BenchConfig
    source: Path
    datasets: dict[str, tuple[DatasetConfig, DatasetConfig]]
    teachers: dict[str, TeacherSpec]  # per dataset

    @property
    def output_dir(self) -> Path:
        return Path(self.cfg.output_dir).resolve()

    @property
    def work_dir(self) -> Path:
        return Path(self.cfg.work_dir).resolve()

    def entry(self, dataset: str) -> DatasetEntry:
        return next(d for d in self.cfg.datasets if d.name == dataset)

    def distill_block(self, method: MethodEntry) -> dict[str, Any]:
        """`distill:` of a run without its teacher: common options, then the method's."""
        block = deep_merge(copy.deepcopy(self.cfg.distill_options), method.options)
        block["method"] = method.method
        return block


def resolve_bench_path(text: str) -> Path:
    """A bench YAML path, or a preset name (configs/bench/NAME.yaml)."""
    path = Path(text)
    if path.is_file():
        return path
    preset = PRESET_DIR / f"{text}.yaml"
    if path.suffix == "" and preset.is_file():
        return preset
    presets = preset_names()
    known = f" (presets: {', '.join(presets)})" if presets else ""
    raise ConfigError(f"{text}: bench config not found{known}")


def load_bench(path: str | Path, output_dir: str | None = None) -> LoadedBench:
    """Read and validate a bench YAML; method options are validated as `distill:` blocks."""
    path = Path(path)
    raw = read_yaml(path)
    if output_dir is not None:
        raw["output_dir"] = output_dir
    cfg: BenchConfig = validate(BenchConfig, raw, str(path))
    base = path.parent.resolve()
    for i, method in enumerate(cfg.methods):
        block = deep_merge(copy.deepcopy(cfg.distill_options), method.options)
        block["method"] = method.method
        block["teacher"] = {"config": "teacher.yaml", "checkpoint": "teacher.pt"}
        load_distill_config(block, f"{path}: methods[{i}] ({method.name})")
    datasets = {
        d.name: (
            _dataset(d.train, base, f"{path}: datasets.{d.name}.train"),
            _dataset(d.val, base, f"{path}: datasets.{d.name}.val"),
        )
        for d in cfg.datasets
    }
    teachers = {d.name: _teacher(d.teacher or cfg.teacher, base) for d in cfg.datasets}
    return LoadedBench(cfg, path.resolve(), datasets, teachers)


def _dataset(spec: DatasetConfig | str, base: Path, where: str) -> DatasetConfig:
    if isinstance(spec, str):
        file = Path(spec) if Path(spec).is_absolute() else base / spec
        if not file.is_file():
            raise ConfigError(f"{where}: dataset config {file} not found")
        return load_dataset_config(file)
    root = Path(spec.root).expanduser()
    return spec.model_copy(
        update={"root": str(root if root.is_absolute() else (base / root).resolve())}
    )


def _teacher(spec: TeacherSpec, base: Path) -> TeacherSpec:
    if not spec.is_trained:
        return spec
    return spec.model_copy(
        update={
            "config": str((base / spec.config).resolve()),
            "checkpoint": str((base / spec.checkpoint).resolve()),
        }
    )


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`update` into `base` (in place), mappings merged key by key."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def config_hash(payload: Any) -> str:
    """16 hex digits of the SHA-256 of canonical JSON."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def portable_dataset(cfg: DatasetConfig, base: Path) -> dict[str, Any]:
    """The dataset block with its root relative to `base`, so that a hash does not
    change when the checkout moves."""
    data = cfg.model_dump(mode="json")
    data["root"] = os.path.relpath(cfg.root, base)
    return data
