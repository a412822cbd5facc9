"""`liafkd kitti-eval`: official KITTI 2D AP of a folder of result files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "kitti-eval",
        help="KITTI 2D (bbox) AP|R40 and AP|R11 of result files against label_2",
        description="Score KITTI result files (16 fields a line, the last the score) "
        "against label_2 ground truth with the official devkit rules: Car at IoU 0.7, "
        "Pedestrian and Cyclist at 0.5; Easy, Moderate and Hard. A missing result "
        "file means no detections in that image; a result file that matches no label "
        "file is refused (its ids do not line up with the labels).",
    )
    p.add_argument("--labels", required=True, type=Path, help="label_2 folder (ground truth)")
    p.add_argument("--results", required=True, type=Path, help="folder of <id>.txt results")
    p.add_argument(
        "--split",
        type=Path,
        help="file of image ids, one a line (default: every label file in --labels)",
    )
    p.add_argument(
        "--classes",
        default="Car,Pedestrian,Cyclist",
        help="comma-separated classes to evaluate (default: %(default)s)",
    )
    p.add_argument("--json", dest="json_out", type=Path, help="also write the APs here as JSON")
    p.set_defaults(func=run)


def check_result_names(labels: Path, results: Path, gt: list) -> int:
    """ValueError when a result file names an image that has no label file (ids that do
    not line up: scoring without them would give a wrong AP); else how many result
    files are for labelled images outside the evaluated set."""
    label_stems = {p.stem for p in labels.glob("*.txt")}
    result_stems = {p.stem for p in results.glob("*.txt")}
    unmatched = sorted(result_stems - label_stems)
    if unmatched:
        shown = ", ".join(f"{stem}.txt" for stem in unmatched[:5])
        raise ValueError(
            f"{results}: {len(unmatched)} of {len(result_stems)} result file(s) match no "
            f"label file in {labels} (e.g. {shown}); result files are named after the "
            "label files (000123.txt for 000123.txt): remove them or fix their names"
        )
    return len(result_stems - {frame.image_id for frame in gt})


def run(args: argparse.Namespace) -> int:
    from liafkd.data.formats.common import read_split_stems
    from liafkd.evaluation.kitti import evaluate_kitti, format_kitti_table, load_kitti_dir

    if args.json_out:
        from liafkd.outputs import Input, Output, check_outputs, write_text_atomic

        inputs = [
            Input(args.labels, "label folder", dataset=True),
            Input(args.results, "result folder", dataset=True),
        ] + ([Input(args.split, "split file")] if args.split else [])
        check_outputs([Output(args.json_out, "--json")], inputs)
    try:
        ids = read_split_stems(args.split) if args.split else None
        gt = load_kitti_dir(args.labels, ids)
        if not args.results.is_dir():
            raise FileNotFoundError(f"{args.results}: result folder not found")
        outside_split = check_result_names(args.labels, args.results, gt)
        missing = [f.image_id for f in gt if not (args.results / f"{f.image_id}.txt").is_file()]
        if gt and len(missing) == len(gt):
            raise FileNotFoundError(
                f"{args.results}: none of the {len(gt)} images has a result file "
                f"(expected e.g. {gt[0].image_id}.txt)"
            )
        dt = load_kitti_dir(args.results, [f.image_id for f in gt], missing_ok=True)
        classes = [c for c in args.classes.split(",") if c.strip()]
        result = evaluate_kitti(gt, dt, classes)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if outside_split:
        print(
            f"note: {outside_split} result file(s) are for labelled images outside --split "
            "(not scored)",
            file=sys.stderr,
        )
    if missing:
        print(
            f"note: {len(missing)} of {len(gt)} images have no result file "
            "(counted as no detections)",
            file=sys.stderr,
        )
    print(f"{len(gt)} images, {sum(len(f) for f in dt)} detections")
    print(format_kitti_table(result))
    if args.json_out:
        write_text_atomic(args.json_out, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json_out}")
    return 0
