"""`liafkd eval`: COCO metrics of a detections file against a dataset."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from liafkd.cli.threads import add_threads_arg, apply_threads


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="COCO AP of a checkpoint (CONFIG --checkpoint) or of a detections file",
        description="liafkd eval CONFIG --checkpoint CKPT: run the model on the config's "
        "validation split and report COCO metrics, writing the detections as COCO results "
        "JSON. liafkd eval --dataset DATASET_CONFIG --results DETECTIONS.json: "
        "COCO AP, AP50, AP75, APs, APm, APl and per-class AP of a COCO results file "
        "(category_id 1-based in the dataset's class order).",
    )
    parser.add_argument("config", nargs="?", metavar="CONFIG", help="experiment YAML")
    parser.add_argument("--checkpoint", metavar="CKPT", help="model checkpoint to evaluate")
    parser.add_argument("--dataset", metavar="DATASET_CONFIG", help="dataset YAML")
    parser.add_argument("--results", metavar="DETECTIONS.json", help="COCO results file")
    parser.add_argument("--json", metavar="OUT", help="also write the metrics as JSON")
    parser.add_argument(
        "--category-ids",
        choices=["auto", "order", "dataset"],
        default="auto",
        help="with --results on a COCO dataset: category_id is 1-based in the class order "
        "(order) or the annotation file's own ids (dataset); auto takes the one the ids "
        "fit and refuses when they fit both and the two differ",
    )
    parser.add_argument(
        "--out",
        metavar="DETECTIONS.json",
        help="with CONFIG: where to write the detections (default: beside the checkpoint, "
        "RUN/eval/detections.json for RUN/final.pt, RUN/eval/detections_NAME.json for "
        "another RUN/NAME.pt)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with CONFIG: override a config key",
    )
    add_threads_arg(parser)
    parser.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    if args.config or args.checkpoint:
        return _evaluate_checkpoint(args)
    if not (args.dataset and args.results):
        print("error: liafkd eval needs --dataset and --results", file=sys.stderr)
        return 2
    return _evaluate_results(args)


def _evaluate_checkpoint(args: argparse.Namespace) -> int:
    from liafkd.config import load_config
    from liafkd.engine.evaluate import evaluate_checkpoint
    from liafkd.evaluation.coco import format_coco_table
    from liafkd.evaluation.kitti import format_kitti_table
    from liafkd.outputs import Input, Output, check_outputs, dataset_inputs, write_text_atomic

    if not (args.config and args.checkpoint):
        print("error: liafkd eval CONFIG needs --checkpoint CKPT", file=sys.stderr)
        return 2
    apply_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    out = Path(args.out) if args.out else default_detections_path(args.checkpoint)
    outputs = [Output(out, "--out")] + ([Output(Path(args.json), "--json")] if args.json else [])
    inputs = [Input(Path(args.config), "config"), Input(Path(args.checkpoint), "checkpoint")]
    check_outputs(outputs, inputs + dataset_inputs(cfg.data.val, "data.val"))
    metrics, detections = evaluate_checkpoint(cfg, args.checkpoint)
    print(format_coco_table(metrics))
    if metrics.get("kitti"):
        print()
        print(format_kitti_table(metrics["kitti"]))
    write_text_atomic(out, json.dumps(detections))
    print(f"detections (COCO results format): {out}")
    if args.json:
        write_text_atomic(args.json, json.dumps(metrics, indent=2))
    return 0


def default_detections_path(checkpoint: str) -> Path:
    """Beside the checkpoint scored (never into the config's output_dir, which may hold
    another run): RUN/eval/detections.json for RUN/final.pt."""
    ckpt = Path(checkpoint)
    name = "detections.json" if ckpt.stem == "final" else f"detections_{ckpt.stem}.json"
    return ckpt.parent / "eval" / name


def _evaluate_results(args: argparse.Namespace) -> int:
    from liafkd.config import load_dataset_config
    from liafkd.data.formats import enforce_policy, read_dataset
    from liafkd.evaluation.coco import evaluate_coco, format_coco_table, load_detections
    from liafkd.outputs import Input, Output, check_outputs, dataset_inputs, write_text_atomic

    cfg = load_dataset_config(args.dataset)
    if args.json:
        inputs = [Input(Path(args.dataset), "dataset config"), Input(Path(args.results), "results")]
        check_outputs([Output(Path(args.json), "--json")], inputs + dataset_inputs(cfg))
    index = read_dataset(cfg)
    enforce_policy(index, cfg)
    try:
        detections = load_detections(args.results)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        if cfg.format == "coco":
            from liafkd.data.formats.coco import dataset_category_ids
            from liafkd.evaluation.coco import to_class_order

            ids = dataset_category_ids(cfg)
            detections, used = to_class_order(detections, ids, index.class_names, args.category_ids)
            if used == "dataset":
                print(f"{args.results}: category ids read as the annotation file's own ids")
        metrics = evaluate_coco(index, detections)
    except ValueError as e:
        print(f"error: {args.results}: {e}", file=sys.stderr)
        return 2
    print(format_coco_table(metrics))
    if args.json:
        write_text_atomic(args.json, json.dumps(metrics, indent=2))
    return 0
