"""`liafkd data check|convert`: inspect a dataset, or write it as COCO JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from liafkd.config import load_dataset_config
from liafkd.data.check import format_summary, summarize
from liafkd.data.convert import write_coco_json
from liafkd.data.formats import DatasetError, enforce_policy, read_dataset
from liafkd.data.synthetic import add_synth_parser


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="check or convert a dataset")
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    add_data_subcommands(sub)
    parser.set_defaults(func=lambda args: _print_help(parser))


def add_data_subcommands(sub: argparse._SubParsersAction) -> None:
    """One line per `liafkd data` sub-command."""
    _add_check_parser(sub)
    _add_convert_parser(sub)
    add_synth_parser(sub)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _add_check_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "check",
        help="count images, instances and box sizes; list every problem",
        description="Exit 0 when the dataset is readable, 1 when its policy is strict "
        "and it has problems.",
    )
    parser.add_argument("dataset_config", metavar="DATASET_CONFIG", help="dataset YAML")
    parser.add_argument("--json", metavar="OUT", help="also write the summary as JSON")
    parser.set_defaults(func=run_check)


def _add_convert_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("convert", help="write a dataset as COCO JSON")
    parser.add_argument("dataset_config", metavar="DATASET_CONFIG", help="dataset YAML")
    parser.add_argument("--to", choices=["coco"], required=True, help="target format")
    parser.add_argument("--out", required=True, metavar="OUT.json", help="output file")
    parser.set_defaults(func=run_convert)


def run_check(args: argparse.Namespace) -> int:
    cfg = load_dataset_config(args.dataset_config)
    index = read_dataset(cfg)
    summary = summarize(index, cfg)
    print(format_summary(summary))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2))
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
    cfg = load_dataset_config(args.dataset_config)
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
