"""Experiment configuration: one YAML file per experiment, validated by pydantic.

Every model forbids unknown keys; `load_config` turns pydantic's errors into
messages that name the key's full path and the nearest valid name.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)


class ConfigError(ValueError):
    """A configuration problem, with a message that names the key."""


def _leaf_types(annotation: Any) -> set[Any]:
    """The types an annotation ends in (int for list[int], tuple[int, ...], int | None,
    a dict's values); Any and Literal count as `object` (anything goes)."""
    if annotation is Any or get_origin(annotation) is Literal:
        return {object}
    args = [arg for arg in get_args(annotation) if arg is not Ellipsis]
    if get_origin(annotation) is dict:
        args = args[1:]
    if not args:
        return {annotation}
    return set().union(*(_leaf_types(arg) for arg in args))


def _takes_numbers_only(annotation: Any) -> bool:
    leaves = _leaf_types(annotation)
    return bool(leaves & {int, float}) and leaves <= {int, float, type(None)}


def _holds_bool(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return any(_holds_bool(item) for item in value)
    return isinstance(value, bool)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """pydantic would read `batch_size: true` as 1 and `lr: on` as 1.0."""
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _holds_bool(value) and _takes_numbers_only(field.annotation):
            raise ValueError(
                f"expected a number, got {value!r} (YAML reads true/false, yes/no and "
                "on/off as booleans)"
            )
        return value


class SplitRatio(StrictModel):
    """`split: {ratio: 0.8, seed: 0}`: a seeded random share of all the dataset's files.
    `part: train` takes the `ratio` share, `part: val` the rest; in an experiment config
    data.train and data.val pick their own parts, so the two never overlap.
    `within: train` carves the share from that split (a split name or list file) instead
    of from all files: a tuning split inside a training set."""

    ratio: float = Field(gt=0, lt=1)
    seed: int = 0
    part: Literal["train", "val"] | None = None
    within: str | None = None


class DatasetConfig(StrictModel):
    """Where the data is and how to read it.

    format: coco | voc | yolo | kitti | csv | synthetic.
    root: the dataset folder (relative paths resolve against the config file).
    split: a split name (VOC/KITTI ImageSets file stem, YOLO/COCO image folder name),
      a file listing the images (a .txt of names, or a .csv with a `filename` column;
      relative to root), or {ratio, seed[, part, within]} (a seeded share of all files,
      or of the split `within` names).
    images_dir, annotations_dir: the image and annotation folders, relative to root, when
      they are not the format's usual ones (VOC JPEGImages/ and Annotations/, YOLO
      images/<split>/ and labels/<split>/); `csv`: images_dir holds the images.
    classes: the class names to train on, in order. Names not listed are unknown
      (reported); `ignore_classes` are kept only for evaluation ignore rules
      (e.g. KITTI Van for Car).
    class_map: optional renames applied before matching, e.g. {"car": "Car"}.
    ann_file: COCO JSON path (COCO), or the CSV file (csv); relative to root.
    policy: `drop` (default) drops and counts bad boxes; `strict` stops before
      training with every problem listed.
    """

    format: Literal["coco", "voc", "yolo", "kitti", "csv", "synthetic"]
    root: str
    split: str | SplitRatio = "train"
    images_dir: str | None = None
    annotations_dir: str | None = None
    classes: list[str] | None = None
    ignore_classes: list[str] = Field(default_factory=list)
    class_map: dict[str, str] = Field(default_factory=dict)
    ann_file: str | None = None
    names_file: str | None = None  # YOLO class names yaml, relative to root
    labels_dir: str | None = None  # YOLO: folder with <split>/ label dirs, default root/labels
    policy: Literal["drop", "strict"] = "drop"
    min_box_size: float = Field(1.0, ge=0)  # boxes with a side below this (pixels) are degenerate
    # synthetic only: generated on first use into `root` when absent
    synth_images: int = Field(256, ge=1)
    synth_seed: int = 0
    synth_size: tuple[int, int] = (192, 320)  # height, width


class AugmentConfig(StrictModel):
    image_size: tuple[int, int] = (192, 320)  # longest-side target as (short, long)
    multiscale: list[tuple[int, int]] = Field(default_factory=list)
    hflip: float = Field(0.5, ge=0, le=1)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    size_divisor: int = Field(32, ge=1)

    @model_validator(mode="after")
    def _positive_sizes(self) -> AugmentConfig:
        for key, sizes in (("image_size", [self.image_size]), ("multiscale", self.multiscale)):
            if any(v < 1 for size in sizes for v in size):
                raise ValueError(f"{key}: sizes must be >= 1 pixel")
        if any(v <= 0 for v in self.std):
            raise ValueError("std: every value must be > 0")
        return self


class DataConfig(StrictModel):
    train: DatasetConfig
    val: DatasetConfig
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    batch_size: int = Field(8, ge=1)  # per process
    num_workers: int = Field(0, ge=0)
    # keep each decoded training image in memory (uint8, H*W*3 bytes, per process and
    # loader worker) from its first use on: same values, no PNG/JPEG decode after epoch 1
    cache_images: bool = False

    @model_validator(mode="before")
    @classmethod
    def _ratio_split_parts(cls, raw: Any) -> Any:
        """`split: {ratio, seed}` without `part`: data.train takes the ratio's share,
        data.val the rest."""
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        for part in ("train", "val"):
            block = raw.get(part)
            split = block.get("split") if isinstance(block, dict) else None
            if isinstance(split, dict) and split.get("part") is None:
                raw[part] = {**block, "split": {**split, "part": part}}
        return raw


class ModelConfig(StrictModel):
    """`type`: gfl (ours), retinanet or fcos (torchvision's heads on our ResNet + FPN;
    they ignore reg_max and atss_topk, and their heads keep the FPN width)."""

    type: Literal["gfl", "retinanet", "fcos"] = "gfl"
    depth: Literal[18, 34, 50, 101] = 18
    width: int = Field(64, ge=1)  # ResNet stem width; 64 is torchvision's, smaller for CPU models
    pretrained: str | None = None  # local torchvision-format ResNet state dict
    pretrained_allow_missing: bool = False  # start even if that file lacks backbone weights
    fpn_channels: int = Field(256, ge=1)
    head_convs: int = Field(4, ge=0)
    head_channels: int = Field(256, ge=1)
    reg_max: int = Field(16, ge=1)
    num_classes: int | None = None  # filled from the dataset's classes
    strides: tuple[int, ...] = (8, 16, 32, 64, 128)
    atss_topk: int = Field(9, ge=1)
    score_thr: float = Field(0.05, ge=0, le=1)
    nms_iou: float = Field(0.6, gt=0, le=1)
    max_dets: int = Field(100, ge=1)
    norm: Literal["gn", "bn"] = "gn"
    frozen_stages: int = -1  # mmdet meaning: -1 none, 0 stem, N stem + stages 1..N
    norm_eval: bool = False  # keep all backbone BatchNorms in eval mode (pretrained backbones)

    @model_validator(mode="after")
    def _torchvision_head_width(self) -> ModelConfig:
        if self.type != "gfl" and self.head_channels != self.fpn_channels:
            raise ValueError(
                f"head_channels ({self.head_channels}) must equal fpn_channels "
                f"({self.fpn_channels}) for {self.type}: torchvision's head keeps the FPN width"
            )
        return self


class OptimConfig(StrictModel):
    type: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, le=1)
    weight_decay: float = Field(1e-4, ge=0)
    grad_clip: float | None = Field(35.0, gt=0)


class ScheduleConfig(StrictModel):
    epochs: int = Field(12, ge=1)
    warmup_iters: int = Field(500, ge=0)
    warmup_ratio: float = Field(0.001, gt=0, le=1)
    policy: Literal["step", "cosine"] = "step"
    steps: list[int] = Field(default_factory=lambda: [8, 11])  # epochs, for `step`
    gamma: float = Field(0.1, gt=0)


class TrainConfig(StrictModel):
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    amp: Literal["none", "bf16", "fp16"] = "none"
    # NHWC (channels_last) memory: `teacher` converts the frozen teacher of `liafkd
    # distill` (its forward about 1.4x faster on CPU); `all` also the student and images
    # (on torch 2.14.1 CPU a width-8 ResNet's backward crashed in oneDNN at 192x320)
    channels_last: Literal["off", "teacher", "all"] = "off"
    seed: int = 0
    val_interval: int = Field(1, ge=1)  # epochs
    checkpoint_interval: int = Field(1, ge=1)  # epochs
    checkpoint_steps: int | None = Field(None, ge=1)  # also checkpoint every N optimizer steps
    # non-finite-loss steps (each skipped) in a row, across epochs, before stopping
    max_nonfinite: int = Field(5, ge=1)
    # ... or the share of a run's steps skipped (judged after 20 batches and at the end)
    max_nonfinite_share: float = Field(0.2, ge=0, le=1)
    max_steps: int | None = Field(None, ge=1)  # stop early after this many optimizer steps
    log_interval: int = Field(10, ge=1)
    device: str = "auto"  # under torchrun, `auto`/`cuda` mean GPU LOCAL_RANK
    sync_bn: bool = False  # torchrun on CUDA: BatchNorm statistics over all processes


class ExperimentConfig(StrictModel):
    name: str = "experiment"
    output_dir: str = "runs/experiment"
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    # filled by `liafkd distill`; validated by liafkd.distill.config
    distill: dict[str, Any] | None = None

    @field_validator("output_dir")
    @classmethod
    def _output_dir_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(
                "must name a folder (an empty one would train into the working directory)"
            )
        return value

    @model_validator(mode="after")
    def _check_classes(self) -> ExperimentConfig:
        if self.data.train.classes and self.data.val.classes:
            if self.data.train.classes != self.data.val.classes:
                raise ValueError("data.train.classes and data.val.classes differ")
        return self


def _valid_keys(model: type[BaseModel], path: tuple[str | int, ...]) -> list[str]:
    """The field names accepted at `path` inside `model`, for suggestions."""
    current: Any = model
    for part in path:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        annotation = fields[part].annotation
        current = _first_model(annotation)
    fields = getattr(current, "model_fields", None)
    return list(fields) if fields else []


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def format_validation_error(err: ValidationError, model: type[BaseModel], source: str) -> str:
    """One line per problem: `source: key.path: message (did you mean 'x'?)`."""
    lines = []
    for item in err.errors():
        loc = tuple(item["loc"])
        dotted = ".".join(str(p) for p in loc) or "<root>"
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            candidates = _valid_keys(model, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), candidates, n=1, cutoff=0.5)
            msg = "unknown key"
            if close:
                msg += f" (did you mean '{'.'.join(str(p) for p in loc[:-1] + (close[0],))}'?)"
            elif candidates:
                msg += f" (valid keys here: {', '.join(candidates)})"
        lines.append(f"{source}: {dotted}: {msg}")
    return "\n".join(lines)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a","b","c"], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    try:
        return key.strip().split("."), yaml.safe_load(raw)
    except (yaml.YAMLError, ValueError) as e:  # ValueError: `!!int abc`
        raise ConfigError(f"--set {text}: {_yaml_problem(e)}") from None


def _yaml_problem(error: Exception) -> str:
    """What PyYAML found wrong, on one line, without its source excerpt."""
    if not isinstance(error, yaml.MarkedYAMLError):
        return str(error).replace("\n", " ")
    if isinstance(error, yaml.constructor.ConstructorError) and "python/" in str(error.problem):
        return "YAML tags that build Python objects (!!python/...) are refused: give a plain value"
    mark = error.problem_mark
    where = f" (column {mark.column + 1})" if mark is not None else ""
    return ", ".join(p for p in (error.context, error.problem) if p) + where


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: '{k}' is not a mapping")
        node[keys[-1]] = value
    return raw


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open() as f:
            data = yaml.safe_load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: config file not found") from e
    except IsADirectoryError as e:
        raise ConfigError(f"{path}: a folder, not a YAML config file") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it: {e.strerror}") from e
    except (yaml.YAMLError, ValueError) as e:  # ValueError: `!!int abc`
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def _resolve_against(node: Any, key: str, base: Path) -> None:
    """Make `node[key]`, a path relative to the config file's folder `base`, absolute."""
    if isinstance(node, dict) and isinstance(node.get(key), str):
        path = Path(node[key]).expanduser()
        node[key] = str(path if path.is_absolute() else (base / path).resolve())


def _resolve_input_paths(raw: dict[str, Any], base: Path) -> None:
    """Dataset roots and pretrained weights (the teacher's paths: liafkd.distill.config);
    output_dir stays relative to the working directory."""
    data = raw.get("data")
    for split in ("train", "val"):
        _resolve_against(data.get(split) if isinstance(data, dict) else None, "root", base)
    _resolve_against(raw.get("model"), "pretrained", base)
    distill = raw.get("distill")
    teacher = distill.get("teacher") if isinstance(distill, dict) else None
    for key in ("config", "checkpoint"):
        _resolve_against(teacher, key, base)


BASE_KEY = "_base_"


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_experiment_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file merged over its `_base_` file (recursively), each file's input
    paths resolved against that file's own folder."""
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"{path}: `_base_` cycle through {' -> '.join(map(str, chain))}")
    raw = read_yaml(path)
    _resolve_input_paths(raw, path.parent)
    base = raw.pop(BASE_KEY, None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"{path}: {BASE_KEY}: must be the path of another config file")
    base_path = Path(base).expanduser()
    if not base_path.is_absolute():
        base_path = path.parent / base_path
    return deep_merge(read_experiment_yaml(base_path, (*chain, path)), raw)


def validate(model: type[BaseModel], raw: dict[str, Any], source: str) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, model, source)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read (with its `_base_` chain), resolve relative input paths against the file
    that names them, apply `--set` overrides, and validate."""
    path = Path(path)
    raw = apply_overrides(read_experiment_yaml(path), overrides or [])
    output_dir = raw.get("output_dir")
    if isinstance(output_dir, str) and output_dir.strip() and not Path(output_dir).is_absolute():
        raw["output_dir"] = str(Path.cwd() / raw["output_dir"])
    return validate(ExperimentConfig, raw, str(path))


class ExperimentData(BaseModel):
    """The `data` block of an experiment config; every other key is left to `load_config`."""

    model_config = ConfigDict(extra="ignore")
    data: DataConfig


def experiment_datasets(path: str | Path) -> dict[str, DatasetConfig] | None:
    """`data.train` and `data.val` of an experiment config (with its `_base_` chain, roots
    resolved as `load_config` resolves them), or None for a dataset YAML."""
    path = Path(path)
    raw = read_yaml(path)
    if "data" not in raw and BASE_KEY not in raw:
        if "format" not in raw and not isinstance(raw.get("dataset"), dict):
            keys = ", ".join(sorted(map(str, raw))) or "none"
            raise ConfigError(
                f"{path}: expected a dataset YAML (format, root, split, ...: see "
                "configs/datasets/) or an experiment config (data.train and data.val); "
                f"this one has neither (top-level keys: {keys})"
            )
        return None
    data = validate(ExperimentData, read_experiment_yaml(path), str(path)).data
    return {"data.train": data.train, "data.val": data.val}


def load_dataset_config(path: str | Path) -> DatasetConfig:
    """A standalone dataset YAML: either the block itself or `{dataset: {...}}`."""
    path = Path(path)
    raw = read_yaml(path)
    if "dataset" in raw and isinstance(raw["dataset"], dict):
        raw = raw["dataset"]
    if isinstance(raw.get("root"), str) and not Path(raw["root"]).is_absolute():
        raw["root"] = str((path.parent.resolve() / raw["root"]).resolve())
    return validate(DatasetConfig, raw, str(path))
