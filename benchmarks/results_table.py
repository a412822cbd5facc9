"""README tables from committed results files (never typed by hand).

    python benchmarks/results_table.py bccd|retinanet|demo|ld_diagnosis [--readme README.md]
    python benchmarks/results_table.py standing --readme README.md   # the ranking benches
    python benchmarks/results_table.py mechanism_altered --readme docs/benchmarks.md

Prints the markdown table of one results set; with --readme, replaces the text between
`<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->` in the README.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from liafkd.bench.report import replace_between_markers

RESULTS = Path(__file__).resolve().parent / "results"


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def wall_time(time_txt: Path) -> tuple[str, float]:
    """(wall clock, user + system CPU seconds) from a `/usr/bin/time -v` report."""
    text = time_txt.read_text()
    wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", text).group(1)
    cpu = sum(float(x) for x in re.findall(r"(?:User|System) time \(seconds\): (\S+)", text))
    return wall, cpu


def bccd() -> str:
    folder = RESULTS / "bccd_gfl_student_cpu"
    final = json.loads((folder / "summary.json").read_text())["final"]
    wall, cpu = wall_time(folder / "time.txt")
    keys = ("AP", "AP50", "AP75", "APs", "APm", "APl")
    classes = final["per_class"]
    header = [*keys, *(f"AP {c}" for c in classes), "wall", "CPU"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * (len(keys) + len(classes) + 2),
        "| "
        + " | ".join(pct(final[k]) for k in keys)
        + " | "
        + " | ".join(pct(v) for v in classes.values())
        + f" | {wall} | {cpu / 60:.1f} min |",
    ]
    return "\n".join(lines)


def retinanet() -> str:
    folder = RESULTS / "retinanet_from_gfl"
    lines = [
        "| RetinaNet student | AP | AP50 | AP75 | KITTI Moderate (R40) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for method in ("none", "fgd", "liaf"):
        final = json.loads((folder / f"{method}.json").read_text())["final"]
        kitti = final.get("kitti", {}).get("moderate_mean")
        lines.append(
            f"| `{method}` | {pct(final['AP'])} | {pct(final['AP50'])} | {pct(final['AP75'])} "
            f"| {'-' if kitti is None else f'{kitti:.1f}'} |"
        )
    onnx = json.loads((RESULTS / "onnx_check.json").read_text())
    lines.append(
        f"\nONNX check (`{onnx['checkpoint']}`, {onnx['images']} validation images): max abs "
        f"difference before NMS {onnx['max_abs_diff_scores_before_nms']:.1e} (scores), "
        f"{onnx['max_abs_diff_boxes_before_nms']:.1e} px (boxes); same detections after NMS: "
        f"{onnx['same_detections_after_nms']}; onnxruntime "
        f"{1000 * onnx['onnxruntime_s_per_image']:.0f} ms/image, PyTorch "
        f"{1000 * onnx['pytorch_s_per_image']:.0f} ms/image (CPU, 1 thread)."
    )
    return "\n".join(lines)


def demo() -> str:
    folder = RESULTS / "demo"
    result = json.loads((folder / "demo_results.json").read_text())
    wall, cpu = wall_time(folder / "time.txt")
    lines = ["| run | params | AP | AP50 | AP75 |", "| --- | --- | --- | --- | --- |"]
    for row in result["rows"]:
        lines.append(
            f"| {row['run']} | {row['params_M']:.2f} M | {pct(row['AP'])} | "
            f"{pct(row['AP50'])} | {pct(row['AP75'])} |"
        )
    lines.append(f"\nWall time {wall} ({cpu / 60:.1f} min of CPU time).")
    return "\n".join(lines)


def ld_diagnosis() -> str:
    result = json.loads((RESULTS / "ld_diagnosis.json").read_text())
    lines = [
        "| student | seeds | student IoU | teacher IoU | LD distance T=10 | LD distance T=1 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in result["rows"].items():
        m = row["mean"]
        lines.append(
            f"| `{name}` | {len(row['per_seed'])} | {m['student_iou']:.3f} | "
            f"{m['teacher_iou']:.3f} | {m['kl_T10']:.3f} | {m['kl_T1']:.4f} |"
        )
    positives = next(iter(result["rows"].values()))["mean"]["positives"]
    lines.append(
        f"\nMeans over seeds, at the student's {positives:.0f} positive locations of the first "
        f"{result['batches']} training batches of `{result['bench']}`."
    )
    return "\n".join(lines)


def standing(page_dir: Path) -> str:
    """The ranking benches side by side (liafkd.bench.standing), links from `page_dir`."""
    from liafkd.bench.standing import RANKING_BENCHES, standing_table

    return standing_table([RESULTS.parent / name for name in RANKING_BENCHES], page_dir)


def mechanism_altered() -> str:
    """cpu-mechanism's weights on the altered and the clean instances, from the file
    `python -m liafkd.bench.mechanism benchmarks/cpu-mechanism` wrote."""
    from liafkd.bench.mechanism import OUTPUT_FILE, separation_table

    path = RESULTS.parent / "cpu-mechanism" / OUTPUT_FILE
    return separation_table(json.loads(path.read_text()))


TABLES = {
    "bccd": bccd,
    "retinanet": retinanet,
    "demo": demo,
    "ld_diagnosis": ld_diagnosis,
    "standing": standing,
    "mechanism_altered": mechanism_altered,
}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(TABLES))
    parser.add_argument("--readme", type=Path)
    args = parser.parse_args()
    page_dir = args.readme.parent if args.readme else Path(".")
    body = standing(page_dir) if args.name == "standing" else TABLES[args.name]()
    print(body)
    if args.readme:
        text = args.readme.read_text()
        args.readme.write_text(replace_between_markers(text, args.name, body, str(args.readme)))
