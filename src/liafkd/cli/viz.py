"""`liafkd viz RUN_DIR`: pictures of what a distillation run's instance weights did."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "viz",
        help="plot a LIAF-KD (or AID) run's instance weights; TensorBoard export",
        description="Reads RUN_DIR/instances/epoch_E.jsonl (written by `liafkd distill` with "
        "aid, or liaf, liaf+ld or liaf+crosskd at selector.lam > 0) and writes PNGs to "
        "RUN_DIR/viz: weight_distribution.png "
        "(weights over epochs), weight_vs_instance_epoch_E.png (weight against instance "
        "size, occlusion level and the student's instance loss) and, with --config, "
        "gt_weights.png (training images with GT boxes coloured by weight at the chosen "
        "epochs). --tensorboard also writes RUN_DIR/metrics.jsonl as TensorBoard events.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run's output_dir")
    p.add_argument(
        "--config",
        metavar="CONFIG",
        help="the run's experiment YAML: its data.train split gives the images for gt_weights.png",
    )
    p.add_argument(
        "--epochs",
        type=int,
        nargs="+",
        metavar="E",
        help="epochs to show (default: first, middle and last with a dump)",
    )
    p.add_argument(
        "--images",
        type=int,
        default=4,
        metavar="N",
        help="gt_weights.png: the N images whose weights spread the most at the last "
        "chosen epoch (default 4)",
    )
    p.add_argument("--image-ids", type=int, nargs="+", metavar="ID", help="these images instead")
    p.add_argument("--out", metavar="DIR", help="where the PNGs go (default RUN_DIR/viz)")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard events to RUN_DIR/tensorboard (needs the tensorboard "
        "package; skipped with a message without it)",
    )
    p.set_defaults(func=run)


def choose_epochs(available: list[int], asked: list[int] | None) -> list[int]:
    if asked:
        missing = [e for e in asked if e not in available]
        if missing:
            raise ValueError(f"no instance dump for epochs {missing}; dumps exist for {available}")
        return sorted(set(asked))
    return sorted({available[0], available[len(available) // 2], available[-1]})


def class_names_of(run_dir: Path) -> list[str]:
    """The class names in the run's final.pt, or [] without one."""
    from liafkd.engine.checkpoint import load_checkpoint

    final = run_dir / "final.pt"
    if not final.is_file():
        return []
    return list(load_checkpoint(final).get("meta", {}).get("class_names", []))


def run(args: argparse.Namespace) -> int:
    from liafkd.outputs import Output, check_outputs
    from liafkd.viz import (
        load_instance_dumps,
        pick_images,
        plot_instance_images,
        plot_weight_distribution,
        plot_weight_vs_instance,
    )

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        print(f"error: {run_dir}: no such run folder", file=sys.stderr)
        return 2
    if args.tensorboard:
        from liafkd.engine.tensorboard import write_tensorboard

        log_dir = write_tensorboard(run_dir)
        if log_dir:
            print(f"TensorBoard events: {log_dir} (tensorboard --logdir {log_dir})")
        if not (run_dir / "instances").is_dir():
            return 0
    try:
        dumps = load_instance_dumps(run_dir)
        epochs = choose_epochs(sorted(dumps), args.epochs)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    index = None
    if args.config:
        from liafkd.config import load_config
        from liafkd.engine.build import load_index

        index = load_index(load_config(args.config).data.train, "data.train")
    names = index.class_names if index else class_names_of(run_dir)
    out = Path(args.out) if args.out else run_dir / "viz"
    check_outputs([Output(out, "--out", folder=True)], [])
    written = [plot_weight_distribution(dumps, out / "weight_distribution.png")]
    for epoch in epochs:
        path = out / f"weight_vs_instance_epoch_{epoch}.png"
        written.append(plot_weight_vs_instance(dumps[epoch], epoch, names, path))
    if index is None:
        print("no --config: gt_weights.png (images with boxes by weight) needs the run's config")
    else:
        image_ids = args.image_ids or pick_images(dumps[epochs[-1]], args.images)
        try:
            written.append(
                plot_instance_images(dumps, epochs, index, image_ids, out / "gt_weights.png")
            )
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    print("\n".join(str(path) for path in written))
    return 0
