"""`liafkd import-mmdet CKPT --config CONFIG --out OUT.pt`: an MMDetection GFL checkpoint
as a liafkd checkpoint, usable as `distill.teacher.checkpoint` with that CONFIG."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-mmdet",
        help="convert an MMDetection GFL checkpoint into a liafkd teacher checkpoint",
        description="Map an MMDetection GFL checkpoint's state_dict onto the GFL that "
        "CONFIG's `model:` block describes (e.g. depth 50, width 64, fpn_channels 256, "
        "head_convs 4, head_channels 256), report every key left unmapped on either side, "
        "and write {model, meta} to OUT. Refuses on a shape mismatch or a missing weight. "
        "The file is read with weights_only=True: re-save checkpoints that pickle other "
        "objects (MMEngine's message_hub) as {'state_dict': ..., 'meta': ...} first.",
    )
    parser.add_argument("checkpoint", metavar="CKPT", help="MMDetection GFL checkpoint (.pth)")
    parser.add_argument("--config", required=True, help="experiment YAML whose model: it fills")
    parser.add_argument("--out", required=True, metavar="OUT.pt", help="liafkd checkpoint")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from liafkd.config import ConfigError, load_config
    from liafkd.engine.checkpoint import load_checkpoint, save_atomic
    from liafkd.models.mmdet_import import import_mmdet_gfl
    from liafkd.outputs import Input, Output, check_outputs

    check_outputs(
        [Output(Path(args.out), "--out")],
        [Input(Path(args.checkpoint), "checkpoint"), Input(Path(args.config), "config")],
    )
    cfg = load_config(args.config)
    report, class_names, num_classes = import_mmdet_gfl(
        load_checkpoint(args.checkpoint), cfg.model, args.checkpoint
    )
    configured = cfg.data.train.classes
    if configured and class_names and list(configured) != class_names:
        raise ConfigError(
            f"{args.config}: data.train.classes {configured} differ from the checkpoint's "
            f"classes {class_names}"
        )
    meta = {
        "model_cfg": cfg.model.model_dump(mode="json"),
        "num_classes": num_classes,
        "imported_from": str(Path(args.checkpoint).resolve()),
        "unmapped_source_keys": report.unmapped_source,
    }
    if class_names:
        meta["class_names"] = class_names
    save_atomic({"model": report.state_dict, "meta": meta}, Path(args.out))
    print(report.summary())
    print(f"{num_classes} classes -> {args.out}")
    print(
        "note: outputs differ from MMDetection's by liafkd's ReLU before the P7 conv and its "
        "points at cell centres (see liafkd.models.mmdet_import)"
    )
    return 0
