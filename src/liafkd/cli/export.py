"""`liafkd export CKPT`: the student alone as ONNX or TorchScript."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from liafkd.config import AugmentConfig

SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a trained student to ONNX or TorchScript",
        description="Export the student of a liafkd checkpoint (final.pt, best.pt): no "
        "teacher, adapters or selector. `--nms outside` (default) gives a graph images "
        "[B,3,H,W] -> scores [B,L,K], boxes [B,L,4] before NMS (post-process with "
        "liafkd.export.postprocess or your own code); `--nms inside` gives one image "
        "images [1,3,H,W] and its size before padding image_size [2] (int64 height, width "
        "in input pixels; boxes are clipped to it before NMS) -> boxes [N,4], scores [N], "
        "labels [N] after threshold and NMS. "
        "A description (classes, preprocessing, outputs, post-processing) is written beside "
        "it as OUT.json and, for ONNX, into the model's own metadata_props['liafkd'] (JSON), "
        "so `liafkd predict OUT.onnx` and plain onnxruntime need nothing else.",
    )
    p.add_argument("checkpoint", metavar="CKPT", help="a liafkd checkpoint")
    p.add_argument("--format", choices=sorted(SUFFIXES), default="onnx", dest="fmt")
    p.add_argument(
        "--nms",
        choices=["outside", "inside"],
        default="outside",
        help="post-processing (threshold + NMS) outside the graph (default) or inside it",
    )
    p.add_argument(
        "--out", metavar="PATH", help="output file (default: CKPT with .onnx / .torchscript.pt)"
    )
    p.add_argument(
        "--config",
        metavar="CONFIG",
        help="the run's experiment YAML, for the preprocessing written to OUT.json "
        "(data.augment: image size, mean, std); refused when its model or classes are not "
        "the checkpoint's; defaults otherwise",
    )
    p.add_argument(
        "--score-thr",
        type=float,
        metavar="T",
        help="score threshold of the post-processing: in the graph with --nms inside, in "
        "OUT.json otherwise (default: the model's, 0.05)",
    )
    p.set_defaults(func=run)


def preprocessing(config: str | None, meta: dict) -> AugmentConfig:
    """The evaluation preprocessing of the run: from `config` when given, else as the
    checkpoint's `meta` recorded it, else the defaults (with a note)."""
    from liafkd.config import AugmentConfig, load_config

    if config:
        cfg = load_config(config)
        refuse_other_model(config, cfg.model.model_dump(), cfg.data.train.classes, meta)
        recorded = meta.get("augment")
        if recorded is not None and AugmentConfig(**recorded) != cfg.data.augment:
            print(
                f"note: --config {config} gives another preprocessing than the checkpoint "
                f"records ({_describe_augment(cfg.data.augment)} instead of "
                f"{_describe_augment(AugmentConfig(**recorded))}); using the config's",
                file=sys.stderr,
            )
        return cfg.data.augment
    if meta.get("augment") is not None:
        return AugmentConfig(**meta["augment"])
    aug = AugmentConfig()
    print(
        "no --config and no preprocessing recorded in the checkpoint: assuming the default "
        "preprocessing "
        f"(image size {aug.image_size}, ImageNet mean/std); pass the run's config if it "
        "used others"
    )
    return aug


# the ModelConfig keys that shape the network: a config that differs in one of them
# belongs to another run
ARCHITECTURE_KEYS = (
    "type",
    "depth",
    "width",
    "fpn_channels",
    "head_convs",
    "head_channels",
    "reg_max",
    "strides",
    "norm",
)


def refuse_other_model(config: str, model: dict, classes: list[str] | None, meta: dict) -> None:
    """ConfigError when `config` describes another model or other classes than the
    checkpoint's `meta` records: its preprocessing would be another run's."""
    from liafkd.config import ConfigError, ModelConfig

    differences = []
    if meta.get("model_cfg"):
        recorded = ModelConfig(**meta["model_cfg"]).model_dump()
        differences = [
            f"model.{key}: config {model[key]}, checkpoint {recorded[key]}"
            for key in ARCHITECTURE_KEYS
            if model[key] != recorded[key]
        ]
    recorded_classes = meta.get("class_names")
    if classes and recorded_classes is not None and list(classes) != list(recorded_classes):
        differences.append(f"classes: config {classes}, checkpoint {list(recorded_classes)}")
    if differences:
        raise ConfigError(
            f"--config {config} is not the config of this checkpoint's run "
            f"({'; '.join(differences)}): pass that run's config, or no --config (the "
            "checkpoint records its preprocessing)"
        )


def _describe_augment(aug: AugmentConfig) -> str:
    return f"image size {list(aug.image_size)}, mean {list(aug.mean)}, std {list(aug.std)}"


def checkpoint_meta(checkpoint: str) -> dict:
    from liafkd.engine.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint).get("meta") or {}


def run(args: argparse.Namespace) -> int:
    from liafkd.export import export_student
    from liafkd.outputs import Input, Output, check_outputs

    out = Path(args.out) if args.out else Path(args.checkpoint).with_suffix(SUFFIXES[args.fmt])
    inputs = [Input(Path(args.checkpoint), "checkpoint")]
    if args.config:
        inputs.append(Input(Path(args.config), "config"))
    check_outputs([Output(out, "--out"), Output(Path(f"{out}.json"), "its description")], inputs)
    try:
        description = export_student(
            args.checkpoint,
            out,
            args.fmt,
            args.nms,
            preprocessing(args.config, checkpoint_meta(args.checkpoint)),
            args.score_thr,
        )
    except ValueError as e:  # a student the graphs cannot wrap
        print(f"error: {e}", file=sys.stderr)
        return 2
    outputs = ", ".join(f"{name} {shape}" for name, shape in description["outputs"].items())
    print(f"{args.fmt} student ({args.nms} NMS): {out}\n  outputs: {outputs}\n  see {out}.json")
    return 0
