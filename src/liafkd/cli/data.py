"""`liafkd data check|convert|get|prepare|synth`: inspect a dataset, write it as COCO JSON,
download a pinned public one, lay out KITTI from its official zips, or generate one."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from liafkd.config import DatasetConfig
    from liafkd.outputs import Output


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data", help="check, convert, get (bccd) or prepare (kitti) a dataset"
    )
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    add_data_subcommands(sub)
    parser.set_defaults(func=lambda args: _print_help(parser))


def add_data_subcommands(sub: argparse._SubParsersAction) -> None:
    """One line per `liafkd data` sub-command."""
    _add_check_parser(sub)
    _add_convert_parser(sub)
    _add_get_parser(sub)
    _add_prepare_parser(sub)
    add_synth_parser(sub)


def add_synth_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `liafkd data synth` (the generator is imported when it runs)."""
    p = sub.add_parser(
        "synth",
        help="generate the synthetic driving-scene dataset (KITTI layout)",
        description="Write a deterministic synthetic dataset in KITTI layout: "
        "training/image_2, training/label_2, ImageSets/{train,val,trainval}.txt, and "
        "synthetic_meta.json listing every file written. --out is a new or empty folder, "
        "or one holding a set liafkd wrote and nothing else: that set's files are deleted "
        "first (no stale image stays); a folder holding other files is refused.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--images", type=int, default=256, help="number of images (default 256)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--height", type=int, default=192, help="image height (default 192)")
    p.add_argument("--width", type=int, default=320, help="image width (default 320)")
    p.add_argument(
        "--grid",
        type=Path,
        default=None,
        metavar="PNG",
        help="also write a preview grid of the first 16 images with their boxes",
    )
    p.set_defaults(func=run_synth)
    return p


def run_synth(args: argparse.Namespace) -> int:
    from liafkd.data.synthetic import run_synth as synth

    return synth(args)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _add_check_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "check",
        help="count images, instances and box sizes; list every problem",
        description="Decodes every image (a truncated file is a problem, not a crash). "
        "Only reads: a `format: synthetic` set that is missing or was generated with other "
        "parameters is reported with the `liafkd data synth` command that writes it. "
        "Exit 0 when the dataset is readable, 1 when it has no usable image or its "
        "policy is strict and it has problems.",
    )
    parser.add_argument(
        "dataset_config",
        metavar="CONFIG",
        help="a dataset YAML, or an experiment config (its data.train and data.val are checked)",
    )
    parser.add_argument(
        "--json",
        metavar="OUT",
        help="also write the summary as JSON (an experiment config: OUT's name + .train/.val)",
    )
    parser.set_defaults(func=run_check)


def _add_convert_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "convert",
        help="write a dataset as COCO JSON",
        description="Image file names are written relative to the output file's folder, "
        "so the JSON reads back as `format: coco, root: <that folder>, ann_file: OUT.json` "
        "and moves with the images.",
    )
    parser.add_argument("dataset_config", metavar="DATASET_CONFIG", help="dataset YAML")
    parser.add_argument("--to", choices=["coco"], required=True, help="target format")
    parser.add_argument("--out", required=True, metavar="OUT.json", help="output file")
    parser.set_defaults(func=run_convert)


def _add_get_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "get",
        help="download a public dataset, pinned and checked file by file (bccd)",
        description="bccd: the BCCD/ folder of Shenggan/BCCD_Dataset at commit "
        "d272fb14cdff6e473fafeeeba32aba5f560e9e43 (MIT), written to DIR/BCCD (Pascal VOC: "
        "Annotations, JPEGImages, ImageSets/Main) and checked file by file against the "
        "sha256 manifest shipped with liafkd. DIR must be new, empty, or an earlier "
        "`data get` folder "
        "(then its files are checked again, not downloaded again). coco128 is not offered: "
        "it has no pinned source (the command says why).",
    )
    parser.add_argument("dataset", choices=["bccd", "coco128"], help="which dataset")
    parser.add_argument("--to", required=True, type=Path, metavar="DIR", help="destination")
    parser.add_argument(
        "--url",
        help="fetch the same commit's archive from here instead (https:// or file://; "
        "tar.gz or zip with GitHub's top folder, BCCD_Dataset-<commit>/BCCD/...)",
    )
    parser.set_defaults(func=run_get)


def run_get(args: argparse.Namespace) -> int:
    from liafkd.data.download import NOT_OFFERED, PINNED, get_dataset

    if args.dataset in NOT_OFFERED:
        print(f"error: {NOT_OFFERED[args.dataset]}", file=sys.stderr)
        return 2
    dataset = PINNED[args.dataset]
    target = get_dataset(dataset, args.to, args.url)
    print(
        f"{dataset.name}: {target} matches {dataset.repository}@{dataset.commit[:12]} "
        f"({dataset.licence} licence). Read it with a dataset YAML such as\n"
        f"  format: voc\n  root: {target.resolve()}\n  split: train  # or val, test, trainval\n"
        "  classes: [RBC, WBC, Platelets]"
    )
    return 0


def _add_prepare_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "prepare",
        help="lay out a dataset from its official downloads (kitti)",
        description="kitti: unpack KITTI's data_object_image_2.zip and "
        "data_object_label_2.zip (from folder --zips) into --to as training/image_2, "
        "training/label_2, testing/image_2, and write the standard train/val split "
        "(3,712 / 3,769 frames) to ImageSets/{train,val,trainval}.txt: a dataset YAML "
        "`format: kitti, root: DIR, split: train` (or val) reads it. --to must be new, "
        "empty, or an earlier `data prepare` folder.",
    )
    parser.add_argument("dataset", choices=["kitti"], help="which dataset")
    parser.add_argument(
        "--zips", required=True, type=Path, metavar="DIR", help="folder holding the two zips"
    )
    parser.add_argument("--to", required=True, type=Path, metavar="DIR", help="destination")
    parser.set_defaults(func=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    from liafkd.data.prepare_kitti import prepare_kitti

    counts = prepare_kitti(args.zips, args.to)
    print(
        f"kitti: {args.to} holds the standard split (train {counts['train']}, "
        f"val {counts['val']} frames). Read it with\n"
        f"  format: kitti\n  root: {args.to.resolve()}\n  split: train  # or val\n"
        "  classes: [Car, Pedestrian, Cyclist]"
    )
    return 0


def check_dataset_outputs(outputs: list[Output], config: str, cfg: DatasetConfig) -> None:
    """Before reading: no output over the dataset config, a dataset file or a folder."""
    from liafkd.outputs import Input, check_outputs, dataset_inputs

    check_outputs(outputs, [Input(Path(config), "dataset config"), *dataset_inputs(cfg)])


def run_check(args: argparse.Namespace) -> int:
    from liafkd.config import experiment_datasets, load_dataset_config

    datasets = experiment_datasets(args.dataset_config)
    if datasets is None:
        return check_dataset(args, load_dataset_config(args.dataset_config))
    codes = []
    for key, cfg in datasets.items():  # an experiment config: its train and val data
        print(f"== {key} of {args.dataset_config}")
        part = key.removeprefix("data.")
        json_out = Path(args.json).with_suffix(f".{part}.json") if args.json else None
        codes.append(check_dataset(argparse.Namespace(**{**vars(args), "json": json_out}), cfg))
    return max(codes)


def check_dataset(args: argparse.Namespace, cfg: DatasetConfig) -> int:
    """Read, decode and summarise one dataset: 0 when usable, 1 when it has no usable
    image or its policy is strict and it has problems."""
    from liafkd.data.check import decode_images, format_summary, summarize
    from liafkd.data.formats import DatasetError, enforce_policy, read_dataset
    from liafkd.outputs import Output, write_text_atomic

    if args.json:
        check_dataset_outputs([Output(Path(args.json), "--json")], args.dataset_config, cfg)
    index = read_dataset(cfg, generate=False)  # a check only reads: never generates
    decode_images(index)  # every pixel, not only the headers: truncated files show here
    summary = summarize(index, cfg)
    print(format_summary(summary))
    if args.json:
        write_text_atomic(args.json, json.dumps(summary, indent=2))
    if not index.records:
        print(
            f"error: no usable image in {cfg.root} (split {summary['dataset']['split']}): "
            "nothing to train or evaluate on",
            file=sys.stderr,
        )
        return 1
    try:
        enforce_policy(index, cfg)
    except DatasetError:
        print(
            f"error: policy is strict and there are {summary['serious_problems']} problem(s)",
            file=sys.stderr,
        )
        return 1
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from liafkd.config import load_dataset_config
    from liafkd.data.convert import write_coco_json
    from liafkd.data.formats import enforce_policy, read_dataset
    from liafkd.outputs import Output

    cfg = load_dataset_config(args.dataset_config)
    check_dataset_outputs([Output(Path(args.out), "--out")], args.dataset_config, cfg)
    index = read_dataset(cfg)
    enforce_policy(index, cfg)
    out = write_coco_json(index, args.out)
    instances = sum(r.num_instances for r in index.records)
    print(
        f"wrote {out}: {len(index.records)} images, {instances} annotations, "
        f"{len(index.class_names)} categories; {len(index.problems)} problem(s) "
        f"(see `liafkd data check`)"
    )
    return 0
