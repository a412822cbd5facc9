"""How fast the `liafkd` command starts: `liafkd --help`, every sub-command's `--help`,
and `liafkd kitti-eval` on a KITTI-val-sized synthetic set (3,769 images, about 10
detections each, written as label / result files by the generator of
benchmarks/kitti_eval_speed.py), all as fresh processes, wall time, best of --repeats.

Each run of the script records its figures under a label (`--label before` on the code
before the lazy-import change, `--label after` on it) in
benchmarks/results/cli_startup.json, keeping the other labels' figures.

    python benchmarks/cli_startup.py --label after [--repeats 5]

The command is the installed console script beside the running interpreter
(`bin/liafkd`), so a version manager's shim (pyenv) is not timed; without one,
`python -m liafkd`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULT_PATH = HERE / "results" / "cli_startup.json"
SUBCOMMANDS = [
    ["data"],
    ["data", "check"],
    ["data", "convert"],
    ["data", "synth"],
    ["train"],
    ["distill"],
    ["eval"],
    ["kitti-eval"],
    ["doctor"],
    ["bench"],
    ["export"],
    ["predict"],
    ["viz"],
    ["import-mmdet"],
    ["demo"],
]


def liafkd_command() -> list[str]:
    script = Path(sys.executable).parent / "liafkd"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "liafkd"]


def wall(cmd: list[str], repeats: int) -> dict[str, float]:
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - tic)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr}")
    return {"best_s": round(min(times), 3), "median_s": round(float(np.median(times)), 3)}


def kitti_speed_module():
    spec = importlib.util.spec_from_file_location("kitti_eval_speed", HERE / "kitti_eval_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_frames(folder: Path, frames, with_score: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for frame in frames:
        lines = []
        for i, name in enumerate(frame.names):
            x1, y1, x2, y2 = frame.bbox[i]
            fields = [
                name,
                f"{frame.truncated[i]:.2f}",
                str(int(frame.occluded[i])),
                "-10",
                f"{x1:.2f}",
                f"{y1:.2f}",
                f"{x2:.2f}",
                f"{y2:.2f}",
                "-1 -1 -1 -1000 -1000 -1000 -10",
            ]
            if with_score:
                fields.append(f"{frame.score[i]:.4f}")
            lines.append(" ".join(fields))
        (folder / f"{frame.image_id}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))


def kitti_eval_wall(images: int, repeats: int) -> dict[str, float]:
    gen = kitti_speed_module()
    rng = np.random.default_rng(0)
    gt = [gen.ground_truth_frame(rng, f"{i:06d}") for i in range(images)]
    dt = [gen.detection_frame(rng, g, 10) for g in gt]
    with tempfile.TemporaryDirectory() as tmp:
        write_frames(Path(tmp) / "label_2", gt, with_score=False)
        write_frames(Path(tmp) / "results", dt, with_score=True)
        cmd = liafkd_command() + [
            "kitti-eval",
            "--labels",
            str(Path(tmp) / "label_2"),
            "--results",
            str(Path(tmp) / "results"),
        ]
        return {
            "images": images,
            "detections": int(sum(len(d) for d in dt)),
            **wall(cmd, repeats),
        }


def imports_torch(args: list[str]) -> bool:
    """Whether building the parser and parsing `args` (a --help) imports torch."""
    code = (
        "import sys\nfrom liafkd.cli.main import build_parser\n"
        f"try:\n    build_parser().parse_args({args!r})\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return out.stdout.strip().endswith("True")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="e.g. before / after")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", type=int, default=3769)
    args = parser.parse_args()

    cmd = liafkd_command()
    python_alone = wall([sys.executable, "-c", "pass"], args.repeats)
    help_all = wall(cmd + ["--help"], args.repeats)
    print(f"liafkd --help: {help_all}")
    sub = {}
    for words in SUBCOMMANDS:
        sub[" ".join(words)] = wall(cmd + words + ["--help"], args.repeats)
        print(f"liafkd {' '.join(words)} --help: {sub[' '.join(words)]}")
    kitti = kitti_eval_wall(args.images, max(1, min(args.repeats, 3)))
    print(f"liafkd kitti-eval ({args.images} images): {kitti}")
    record = {
        "command": " ".join(cmd),
        "python_startup": python_alone,
        "help": help_all,
        "subcommand_help": sub,
        "subcommand_help_slowest_s": max(v["best_s"] for v in sub.values()),
        "kitti_eval": kitti,
        "help_imports_torch": imports_torch(["--help"]),
        "machine": kitti_speed_module().machine_info(),
        "repeats": args.repeats,
    }
    results = json.loads(RESULT_PATH.read_text()) if RESULT_PATH.is_file() else {}
    results["benchmark"] = (
        "wall time of fresh `liafkd` processes: --help, each sub-command's --help, "
        "kitti-eval on synthetic KITTI-val-sized files (benchmarks/cli_startup.py)"
    )
    results[args.label] = record
    RESULT_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULT_PATH.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULT_PATH} [{args.label}]")


if __name__ == "__main__":
    main()
