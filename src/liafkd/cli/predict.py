"""`liafkd predict CKPT IMAGES...`: detections of a trained model on image files."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from liafkd.cli.threads import add_threads_arg, apply_threads

if TYPE_CHECKING:
    from liafkd.data.records import ImageRecord

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="detect objects in image files with a trained model",
        description="Run the model of a liafkd checkpoint, or an ONNX model written by "
        "`liafkd export` (run by onnxruntime; the post-processing and preprocessing come "
        "from the file's own metadata, no config needed), on images (files, or folders: "
        "their image files, sorted by name) with the evaluation preprocessing. "
        "--format coco (default) writes COCO results JSON (category_id = class index + 1; "
        "image_id as the dataset readers give it: a stem of ASCII digits that no other "
        "stem shares keeps its number (000123.png is 123), every other stem is numbered "
        "after the largest such number, in sorted order) and, beside it, "
        "a table of each id's file and size (predictions.json: predictions_images.json). "
        "--format kitti writes one "
        "KITTI result file per image, named after the image's file stem.",
    )
    p.add_argument(
        "checkpoint",
        metavar="CKPT",
        help="a liafkd checkpoint (final.pt, best.pt) or an exported MODEL.onnx",
    )
    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files or folders")
    p.add_argument("--format", choices=["coco", "kitti"], default="coco", dest="fmt")
    p.add_argument(
        "--out",
        metavar="PATH",
        help="coco: the JSON file (default predictions.json); "
        "kitti: the folder (default predictions_kitti)",
    )
    p.add_argument(
        "--config",
        metavar="CONFIG",
        help="the run's experiment YAML, for its preprocessing (data.augment); defaults otherwise",
    )
    p.add_argument(
        "--score-thr",
        type=float,
        metavar="T",
        help="keep detections scoring at least T (default: the model's, 0.05)",
    )
    p.add_argument(
        "--draw",
        metavar="DIR",
        help="also write each image with its boxes to DIR/<stem>.png (DIR may not be an "
        "input image folder or inside one)",
    )
    p.add_argument(
        "--draw-thr",
        type=float,
        default=0.3,
        metavar="T",
        help="draw only detections scoring at least T (default 0.3)",
    )
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    add_threads_arg(p)
    p.set_defaults(func=run)


def collect_images(inputs: list[str]) -> list[Path]:
    """Image files in the order given; a folder contributes its image files by name."""
    from liafkd.config import ConfigError

    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ConfigError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)})")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"{path}: no such file or folder")
    return files


def image_ids(files: list[Path]) -> list[int]:
    """The readers' ids of the files' stems (liafkd.data.image_ids)."""
    from liafkd.data.image_ids import assign_image_ids

    return assign_image_ids([path.stem for path in files])


def image_records(files: list[Path]) -> list[ImageRecord]:
    """One annotation-free record per file (ids from `image_ids`); reads each header
    (size as displayed, EXIF orientation applied). A file whose header cannot be read
    is reported on stderr and left out."""
    import numpy as np

    from liafkd.data.images import ImageReadError, header_size
    from liafkd.data.records import ImageRecord

    records = []
    for image_id, path in zip(image_ids(files), files, strict=True):
        try:
            width, height = header_size(path)
        except ImageReadError as e:
            print(f"skipped an unreadable image: {e}", file=sys.stderr)
            continue
        records.append(
            ImageRecord(
                image_id=image_id,
                file_name=str(path.resolve()),
                width=width,
                height=height,
                boxes_xyxy=np.zeros((0, 4), np.float32),
                labels=np.zeros(0, np.int64),
            )
        )
    return records


def check_unique_stems(files: list[Path]) -> None:
    from liafkd.config import ConfigError

    repeated = sorted(s for s, n in Counter(path.stem for path in files).items() if n > 1)
    if repeated:
        raise ConfigError(
            "--format kitti and --draw name their files after the image file stems, "
            f"and these stems repeat: {', '.join(repeated[:5])}"
        )


def image_table_path(out: Path) -> Path:
    """The id -> file table written beside the COCO results `out`."""
    return out.with_name(f"{out.stem}_images.json")


def check_predict_outputs(args: argparse.Namespace, out: Path, files: list[Path]) -> None:
    """Before any work: no output over the checkpoint, the config or an image, no
    drawing or KITTI result file inside an input folder, no file where a folder is."""
    from liafkd.outputs import Input, Output, check_outputs

    if args.fmt == "coco":
        outputs = [Output(out, "--out"), Output(image_table_path(out), "the image table")]
    else:
        outputs = [Output(out, "--out (--format kitti)", folder=True, per_image=True)]
    if args.draw:
        outputs.append(Output(Path(args.draw), "--draw", folder=True, per_image=True))
    inputs = [Input(Path(args.checkpoint), "checkpoint")]
    if args.config:
        inputs.append(Input(Path(args.config), "config"))
    folders = [Path(item) for item in args.images if Path(item).is_dir()]
    inputs += [Input(folder, "image folder", images=True) for folder in folders]
    inputs += [Input(path, "image", images=True) for path in files]
    check_outputs(outputs, inputs)


def write_coco(out: Path, dets: dict[int, dict[str, Any]], records: list[ImageRecord]) -> Path:
    """COCO results to `out`, the id -> file table to `out`'s stem + "_images.json"."""
    from liafkd.engine.evaluate import to_coco_results
    from liafkd.outputs import write_text_atomic

    write_text_atomic(out, json.dumps(to_coco_results(dets)))
    images = [
        {"id": r.image_id, "file_name": r.file_name, "width": r.width, "height": r.height}
        for r in records
    ]
    table = image_table_path(out)
    write_text_atomic(table, json.dumps(images, indent=1))
    return table


def run(args: argparse.Namespace) -> int:
    from liafkd.cli.export import preprocessing
    from liafkd.data.dataset import DataLoadError
    from liafkd.data.records import DatasetIndex
    from liafkd.engine.distributed import resolve_device
    from liafkd.engine.evaluate import predict_dataset
    from liafkd.export import load_student

    apply_threads(args.threads)
    files = collect_images(args.images)
    if args.fmt == "kitti" or args.draw:
        check_unique_stems(files)
    out = Path(args.out or ("predictions.json" if args.fmt == "coco" else "predictions_kitti"))
    check_predict_outputs(args, out, files)
    records = image_records(files)
    if not records:
        print(f"error: none of the {len(files)} image(s) could be read", file=sys.stderr)
        return 2
    if Path(args.checkpoint).suffix.lower() == ".onnx":
        from liafkd.onnx_model import load_onnx_detector

        detector, meta = load_onnx_detector(args.checkpoint, args.score_thr, args.threads)
    else:
        detector, meta = load_student(args.checkpoint, args.score_thr)
    class_names = list(meta["class_names"])
    aug = preprocessing(args.config, meta)
    device = resolve_device(args.device)
    index = DatasetIndex(records, class_names)
    try:
        dets = predict_dataset(
            detector.to(device),
            index,
            aug,
            device,
            args.batch_size,
            drop_unreadable=True,
            desc="predict",
        )
    except DataLoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    records = [r for r in records if r.image_id in dets]  # the unreadable ones reported
    stems = [Path(r.file_name).stem for r in records]
    if len(records) < len(files):
        print(f"skipped {len(files) - len(records)} unreadable image(s)", file=sys.stderr)
    if not records:
        print(f"error: none of the {len(files)} image(s) could be read", file=sys.stderr)
        return 2
    total = sum(len(d["scores"]) for d in dets.values())
    if args.fmt == "coco":
        table = write_coco(out, dets, records)
        print(f"{total} detections on {len(records)} images: {out} (image ids: {table})")
    else:
        from liafkd.evaluation.kitti import write_kitti_results

        write_kitti_results(out, stems, [dets[r.image_id] for r in records], class_names)
        print(f"{total} detections on {len(records)} images: KITTI result files in {out}")
    if args.draw:
        from liafkd.viz import draw_detections

        Path(args.draw).mkdir(parents=True, exist_ok=True)
        for record, stem in zip(records, stems, strict=True):
            draw_detections(
                record.file_name, dets[record.image_id], class_names, args.draw_thr
            ).save(Path(args.draw) / f"{stem}.png")
        print(f"drawn (score >= {args.draw_thr}): {args.draw}")
    return 0
