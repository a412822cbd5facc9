"""The GPU check: one command that runs every CUDA path of liafkd once and measures it.

    python -m liafkd.bench.gpu_check --out DIR [--tiny] [--suite]
    (benchmarks/gpu_check.sh installs the project on the GPU machine, then runs this)

Stages, each timed, each failure recorded without stopping the others:
1. `env`: GPU, torch / torchvision / CUDA / cuDNN versions, liafkd commit.
2. `cuda_tests`: `pytest -m cuda tests/cuda` (fp16 with GradScaler, bf16, SyncBN,
   deterministic GPU runs, a GPU checkpoint loaded on CPU).
3. `data`: the synthetic set, drawn by all cores.
4. `teacher`: a GFL teacher trained for a fixed number of minutes.
5. `cost`: the paper's scale (GFL R101 teacher, R50 student, FPN 256, 4 head convs,
   batch 2 at 800x1333), fp32 and bf16 AMP: step ms, x floor, distillation share, peak
   memory and images/s for `none`, the floor, `fgd`, every LIAF-KD selector objective,
   `ld` and `crosskd` (liafkd.bench.cost, as `liafkd bench` measures it).
6. `students`: the student distilled with `liaf` and trained alone (`none`) for the
   same minutes (bf16 AMP): loss curves and the AP each reaches.
7. `suite` (with --suite): the whole test suite on this machine's torch, in parallel.

Minutes become step counts from each run's measured step time on a fixed batch, so
`none` and `liaf` get the same wall time, not the same steps. `--tiny` runs the same
code at toy sizes on a CPU in about a minute; the test suite runs it so.

Written under --out (at most 8 files, as the GPU machine returns them): results.json,
summary.md, loss_curves.png, cuda_tests.txt, suite.txt, log.txt.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Scale:
    """Every size the check uses; PAPER on the GPU, TINY for a CPU dry run."""

    synth_images: int
    synth_size: tuple[int, int]
    batch_size: int
    num_workers: int
    teacher_model: dict[str, Any]
    student_model: dict[str, Any]
    teacher_minutes: float
    student_minutes: float
    steps_range: tuple[int, int]  # the minutes' step count is clamped into this range
    timing_steps: int
    log_interval: int
    cost_size: tuple[int, int]
    cost_batch: int
    cost: dict[str, int] = field(default_factory=dict)
    cost_rows: tuple[str, ...] | None = None  # None: every row
    lr: float = 0.01


PAPER_HEAD = {"fpn_channels": 256, "head_convs": 4, "head_channels": 256}
PAPER = Scale(
    synth_images=1600,
    synth_size=(384, 640),
    batch_size=16,
    num_workers=8,
    teacher_model={"depth": 101, **PAPER_HEAD},
    student_model={"depth": 50, **PAPER_HEAD},
    teacher_minutes=0.5,
    student_minutes=0.35,
    steps_range=(50, 5000),
    timing_steps=6,
    log_interval=10,
    cost_size=(800, 1333),
    cost_batch=2,
    cost={"warmup": 2, "steps": 6, "rounds": 1, "inference_runs": 5},
)
TINY_HEAD = {"fpn_channels": 16, "head_convs": 1, "head_channels": 16}
TINY = Scale(
    synth_images=16,
    synth_size=(96, 160),
    batch_size=4,
    num_workers=0,
    teacher_model={"depth": 18, "width": 8, **TINY_HEAD},
    student_model={"depth": 18, "width": 8, **TINY_HEAD},
    teacher_minutes=0.02,
    student_minutes=0.02,
    steps_range=(2, 4),
    timing_steps=1,
    log_interval=1,
    cost_size=(96, 160),
    cost_batch=2,
    cost={"warmup": 1, "steps": 1, "rounds": 1, "inference_runs": 1},
    cost_rows=("none", "liaf-joint"),
    lr=0.001,
)

COST_METHODS = ("fgd", "ld", "crosskd")
TRAINED_METHODS = ("liaf", "none")
PRECISIONS = {"fp32": "none", "bf16": "bf16"}


def selector_objectives() -> list[str]:
    from liafkd.distill.config import SelectorConfig

    return list(typing.get_args(SelectorConfig.model_fields["objective"].annotation))


class Check:
    """The run's folders, its log and its results, written as each stage ends."""

    def __init__(self, out: Path, work: Path, scale: Scale, tiny: bool) -> None:
        self.out = out
        self.work = work
        self.scale = scale
        self.device = "cuda" if not tiny else "cpu"
        self.amp = "bf16" if not tiny else "none"
        self.results: dict[str, Any] = {"tiny": tiny, "stages": {}}
        self.log_path = out / "log.txt"
        self.teacher_dir = work / "runs" / "teacher"
        self.started = time.perf_counter()

    def say(self, text: str) -> None:
        line = f"[{time.perf_counter() - self.started:7.1f} s] {text}"
        print(line, flush=True)
        with self.log_path.open("a") as f:
            f.write(line + "\n")

    def stage(self, name: str, run: Callable[[], Any]) -> Any:
        self.say(f"== {name}")
        tic = time.perf_counter()
        record: dict[str, Any] = {}
        try:
            record["result"] = run()
            record["ok"] = True
        except Exception as e:  # a broken stage is a finding: keep it, run the others
            record["ok"] = False
            record["error"] = f"{type(e).__name__}: {e}"
            with self.log_path.open("a") as f:
                f.write(traceback.format_exc())
            self.say(f"{name} FAILED: {record['error'][:500]}")
        record["seconds"] = round(time.perf_counter() - tic, 1)
        self.results["stages"][name] = record
        self.write_results()
        return record.get("result")

    def write_results(self) -> None:
        (self.out / "results.json").write_text(json.dumps(self.results, indent=2) + "\n")

    def run_logged(self, cmd: list[str], timeout: float, log_name: str | None = None) -> str:
        """Run `cmd` from the repository root; its output goes to log.txt (and to
        `log_name` under --out); returns the output's last line."""
        self.say("$ " + " ".join(cmd))
        try:
            done = subprocess.run(
                cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
            )
            output, code = done.stdout + done.stderr, done.returncode
        except subprocess.TimeoutExpired as e:
            output = f"{_text(e.stdout)}{_text(e.stderr)}\nTIMEOUT after {timeout:.0f} s"
            code = -1
        with self.log_path.open("a") as f:
            f.write(output)
        if log_name:
            (self.out / log_name).write_text(output)
        last = _outcome_line(output)
        if code != 0:
            raise RuntimeError(f"exit {code}: {last}")
        return last


def _outcome_line(output: str) -> str:
    """pytest's result line ("3 passed, 2 skipped in 4.1s") if there is one, else the
    output's last line."""
    lines = [ln.strip("= ") for ln in output.strip().splitlines() if ln.strip()]
    words = (" passed", " failed", " skipped", " error", " deselected")
    results = [ln for ln in lines if " in " in ln and any(w in ln for w in words)]
    return (results or lines or [""])[-1]


def _text(raw: bytes | str | None) -> str:
    if raw is None:
        return ""
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw


# --- stages --------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    import torch
    import torchvision

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda_runtime": torch.version.cuda,
        "cpu_count": os.cpu_count(),
        "liafkd_commit": _git_commit(),
        "uncommitted_files": _git_dirty(),
        "dev_shm_gib": _shm_gib(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}",
            cudnn=torch.backends.cudnn.version(),
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
    return info


def _git_dirty() -> int | None:
    """How many files differ from the commit (the check may run on a working tree)."""
    try:
        done = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return len(done.stdout.splitlines())


def _shm_gib() -> float | None:
    """DataLoader workers pass batches through /dev/shm; a small one breaks them."""
    import shutil

    try:
        return round(shutil.disk_usage("/dev/shm").total / 2**30, 1)
    except OSError:
        return None


def _git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git checkout)"


def experiment(check: Check, name: str, model: dict[str, Any], **train: Any) -> dict[str, Any]:
    s = check.scale
    synth = {
        "format": "synthetic",
        "root": str(check.work / "data" / "synthetic"),
        "synth_images": s.synth_images,
        "synth_size": list(s.synth_size),
    }
    return {
        "name": name,
        "output_dir": str(check.work / "runs" / name),
        "data": {
            "train": {**synth, "split": "train"},
            "val": {**synth, "split": "val"},
            "augment": {"image_size": list(s.synth_size), "hflip": 0.5},
            "batch_size": s.batch_size,
            "num_workers": s.num_workers,
        },
        "model": {"type": "gfl", **model},
        "train": {
            "optim": {"type": "sgd", "lr": s.lr, "momentum": 0.9, "weight_decay": 1e-4},
            "schedule": {"epochs": 1, "warmup_iters": 20, "policy": "cosine"},
            "device": check.device,
            "log_interval": s.log_interval,
            **train,
        },
    }


def write_config(check: Check, raw: dict[str, Any]) -> Path:
    path = check.work / "configs" / f"{raw['name']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def make_data(check: Check) -> dict[str, Any]:
    from liafkd.config import load_config
    from liafkd.data.synthetic import ensure_synthetic

    cfg = load_config(write_config(check, experiment(check, "data", check.scale.student_model)))
    root = ensure_synthetic(cfg.data.train, workers=os.cpu_count() or 1)
    return {"root": str(root), "images": check.scale.synth_images}


def build_trainer(config: Path):
    """A Trainer exactly as `liafkd train` / `liafkd distill` builds it."""
    from liafkd.config import load_config
    from liafkd.engine.build import load_indices
    from liafkd.engine.runs import build_train_module
    from liafkd.engine.trainer import Trainer, seed_everything

    cfg = load_config(config)
    train_index, val_index = load_indices(cfg)
    seed_everything(cfg.train.seed)
    module = build_train_module(cfg, str(config), train_index.class_names)
    return Trainer(cfg, module, train_index, val_index), train_index


def step_seconds(check: Check, config: Path) -> float:
    """Median seconds of one training step on a fixed batch, after warm-up."""
    import statistics

    from liafkd.bench.cost import fixed_batch, timed_step

    trainer, train_index = build_trainer(config)
    batch = fixed_batch(train_index, trainer.cfg, trainer.cfg.data.batch_size, trainer.device)
    for _ in range(2):
        trainer.train_step(*batch)
    return statistics.median(timed_step(trainer, batch) for _ in range(check.scale.timing_steps))


def timed_run(check: Check, command: str, raw: dict[str, Any], minutes: float) -> dict[str, Any]:
    """Train `raw` for `minutes` of measured step time (one cosine schedule over exactly
    those steps), evaluate once at the end; the run's summary and curve."""
    s = check.scale
    probe = {**raw, "name": raw["name"] + "_probe", "output_dir": str(check.work / "probe")}
    seconds = step_seconds(check, write_config(check, probe))
    steps = min(max(round(60 * minutes / seconds), s.steps_range[0]), s.steps_range[1])
    train_images = math.ceil(s.synth_images * 0.75)  # the generator's train split
    per_epoch = math.ceil(train_images / s.batch_size)
    epochs = math.ceil(steps / per_epoch)
    raw["train"].update(max_steps=steps, val_interval=epochs, checkpoint_interval=epochs)
    raw["train"]["schedule"]["epochs"] = epochs
    config = write_config(check, raw)
    check.say(f"{raw['name']}: {1e3 * seconds:.1f} ms/step -> {steps} steps ({epochs} epochs)")
    tic = time.perf_counter()
    cmd = [sys.executable, "-m", "liafkd.cli.main", command, str(config)]
    run_dir = Path(raw["output_dir"])
    try:
        check.run_logged(cmd, timeout=max(600.0, 20 * 60 * minutes))
    except RuntimeError as e:
        if raw["data"]["num_workers"] == 0:
            raise
        # loader workers are the usual casualty of a small /dev/shm: once more without
        check.say(f"{raw['name']} failed ({e}); once more with data.num_workers 0")
        run_dir = run_dir.with_name(run_dir.name + "_workers0")
        overrides = ["--set", "data.num_workers=0", "--set", f"output_dir={run_dir}"]
        check.run_logged(cmd + overrides, timeout=max(600.0, 20 * 60 * minutes))
    summary = json.loads((run_dir / "summary.json").read_text())
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    curve = [r for r in records if r.get("type") == "train"]
    return {
        "config": str(config),
        "run_dir": str(run_dir),
        "step_ms_fixed_batch": 1e3 * seconds,
        "steps": steps,
        "wall_s": round(time.perf_counter() - tic, 1),
        "final": summary.get("final", {}),
        "train_wall_s": summary.get("wall_time_s"),
        "curve": [
            {k: v for k, v in r.items() if k == "step" or k.startswith("loss")} for r in curve
        ],
    }


def train_teacher(check: Check) -> dict[str, Any]:
    raw = experiment(check, "teacher", check.scale.teacher_model, amp=check.amp)
    run = timed_run(check, "train", raw, check.scale.teacher_minutes)
    check.teacher_dir = Path(run["run_dir"])
    return run


def teacher_paths(check: Check) -> tuple[Path, Path]:
    config = check.work / "configs" / "teacher.yaml"
    checkpoint = check.teacher_dir / "final.pt"
    if not checkpoint.is_file():
        raise RuntimeError(f"{checkpoint}: the teacher stage wrote no final.pt")
    return config, checkpoint


def distill_block(check: Check, method: str, **options: Any) -> dict[str, Any]:
    if method == "none":  # the student alone: no teacher forward in its step
        return {"method": "none"}
    config, checkpoint = teacher_paths(check)
    block: dict[str, Any] = {
        "method": method,
        "teacher": {"config": str(config), "checkpoint": str(checkpoint)},
        "checks": {"teacher_sanity": False},  # a teacher of a few minutes is weak on purpose
    }
    block.update(options)
    return block


def cost_variants(check: Check) -> dict[str, dict[str, Any]]:
    """Row name -> distill block, `none` first (the cost's baseline)."""
    variants = {"none": distill_block(check, "none")}
    for method in COST_METHODS[:1]:
        variants[method] = distill_block(check, method)
    for objective in selector_objectives():
        # lam 0 builds no selector: 0.5 (the tuning's stage 1) measures each one's cost
        options = {"liaf": {"selector": {"objective": objective, "lam": 0.5}}}
        variants[f"liaf-{objective}"] = distill_block(check, "liaf", **options)
    for method in COST_METHODS[1:]:
        variants[method] = distill_block(check, method)
    return variants


def measure_costs(check: Check) -> dict[str, Any]:
    from liafkd.bench.config import CostConfig
    from liafkd.bench.cost import measure_cost

    s = check.scale
    teacher_config, teacher_checkpoint = teacher_paths(check)
    tables = {}
    for label, amp in PRECISIONS.items():
        if check.device == "cpu" and amp != "none":
            continue  # autocast on CPU is not what this stage measures
        configs = {}
        for row, block in cost_variants(check).items():
            if s.cost_rows is not None and row not in s.cost_rows:
                continue
            raw = experiment(check, f"cost_{label}_{row}", s.student_model, amp=amp)
            raw["data"]["augment"]["image_size"] = list(s.cost_size)
            raw["distill"] = block
            configs[row] = write_config(check, raw)
        cost = CostConfig(**s.cost, batch_size=s.cost_batch)
        tables[label] = measure_cost(configs, teacher_config, teacher_checkpoint, cost)
        check.say(cost_table(tables[label], label))
    return tables


def train_students(check: Check) -> dict[str, Any]:
    runs = {}
    for method in TRAINED_METHODS:
        raw = experiment(check, f"student_{method}", check.scale.student_model, amp=check.amp)
        raw["distill"] = distill_block(check, method)
        runs[method] = timed_run(check, "distill", raw, check.scale.student_minutes)
        check.say(f"{method}: AP {_percent(runs[method]['final'].get('AP'))}")
    return runs


def run_suite(check: Check, timeout: float) -> str:
    workers = ["-n", str(min(16, os.cpu_count() or 1))] if _has_xdist() else []
    cmd = [sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", *workers]
    return check.run_logged(cmd, timeout=timeout, log_name="suite.txt")


def _has_xdist() -> bool:
    try:
        import xdist  # noqa: F401
    except ImportError:
        return False
    return True


# --- report --------------------------------------------------------------------------


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def cost_table(cost: dict[str, Any], label: str) -> str:
    variants = cost["variants"]
    floor_ms = variants["floor"]["step_ms"]
    images = cost["batch_size"]
    h, w = cost["image_shape"]
    lines = [
        f"cost, {label}: {cost['device']}, batch {images} at {h}x{w}",
        "| row | step ms | x floor | KD share | peak MiB | images/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, v in variants.items():
        share = "" if v["distill_share"] is None else f"{100 * v['distill_share']:.0f}%"
        lines.append(
            f"| {name} | {v['step_ms']:.1f} | {v['step_ms'] / floor_ms:.2f} | {share} "
            f"| {v['peak_mib']:.0f} | {1e3 * images / v['step_ms']:.1f} |"
        )
    return "\n".join(lines)


def summary_markdown(results: dict[str, Any]) -> str:
    stages = results["stages"]
    env = stages.get("env", {}).get("result", {})
    lines = [
        "# GPU check" + (" (--tiny, CPU dry run)" if results["tiny"] else ""),
        "",
        f"- machine: {env.get('gpu', 'no GPU')}, torch {env.get('torch')}, "
        f"torchvision {env.get('torchvision')}, CUDA {env.get('cuda_runtime')}, "
        f"cuDNN {env.get('cudnn')}, Python {env.get('python')}",
        f"- liafkd commit: {env.get('liafkd_commit')}",
        "",
        "| stage | ok | seconds | result |",
        "| --- | --- | ---: | --- |",
    ]
    for name, record in stages.items():
        detail = record.get("error") or _stage_line(name, record.get("result"))
        lines.append(
            f"| {name} | {'yes' if record['ok'] else 'NO'} | {record['seconds']} | {detail} |"
        )
    for label, cost in (stages.get("cost", {}).get("result") or {}).items():
        lines += ["", cost_table(cost, label)]
    students = stages.get("students", {}).get("result") or {}
    if students:
        lines += [
            "",
            "| student run | steps | step ms (fixed batch) | wall s | AP | AP50 |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for method, run in students.items():
            final = run["final"]
            lines.append(
                f"| {method} | {run['steps']} | {run['step_ms_fixed_batch']:.1f} "
                f"| {run['train_wall_s']:.0f} | {_percent(final.get('AP'))} "
                f"| {_percent(final.get('AP50'))} |"
            )
    return "\n".join(lines) + "\n"


def _stage_line(name: str, result: Any) -> str:
    if isinstance(result, str):
        return result.replace("|", "/")
    if name in ("teacher",) and isinstance(result, dict):
        return f"AP {_percent(result['final'].get('AP'))} after {result['steps']} steps"
    return ""


def plot_curves(students: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    det_keys = None
    for method, run in students.items():
        curve = run["curve"]
        if not curve:
            continue
        if det_keys is None:  # the student's own terms: what `none` logs
            det_keys = [k for k in curve[0] if k.startswith("loss_")]
        steps = [r["step"] for r in curve]
        ax.plot(steps, [sum(r.get(k, 0.0) for k in det_keys) for r in curve], label=method)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("detection loss (student's own terms)")
    ax.set_title("GPU check: student alone vs LIAF-KD, same minutes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- main ----------------------------------------------------------------------------


def run_check(
    out: Path, work: Path, scale: Scale, tiny: bool, suite: bool, budget_minutes: float
) -> int:
    out.mkdir(parents=True, exist_ok=True)
    check = Check(out, work, scale, tiny)
    check.stage("env", environment)
    pytest_cuda = [sys.executable, "-m", "pytest", "-m", "cuda", "tests/cuda", "-rs"]
    check.stage("cuda_tests", lambda: check.run_logged(pytest_cuda, 300, "cuda_tests.txt"))
    check.stage("data", lambda: make_data(check))
    check.stage("teacher", lambda: train_teacher(check))
    check.stage("cost", lambda: measure_costs(check))
    students = check.stage("students", lambda: train_students(check))
    if students:
        check.stage("plot", lambda: plot_curves(students, out / "loss_curves.png"))
    if suite:
        left = 60 * budget_minutes - (time.perf_counter() - check.started) - 20
        check.stage("suite", lambda: run_suite(check, max(left, 60.0)))
    (out / "summary.md").write_text(summary_markdown(check.results))
    print(summary_markdown(check.results), flush=True)
    return 0 if all(r["ok"] for r in check.results["stages"].values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m liafkd.bench.gpu_check", description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="folder for the results")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new temp dir)")
    parser.add_argument("--tiny", action="store_true", help="toy sizes, CPU, about a minute")
    parser.add_argument("--suite", action="store_true", help="also run the whole test suite")
    parser.add_argument(
        "--budget-minutes", type=float, default=8.0, help="the suite gets what is left of it"
    )
    parser.add_argument("--teacher-minutes", type=float, help=f"default {PAPER.teacher_minutes}")
    parser.add_argument("--student-minutes", type=float, help=f"default {PAPER.student_minutes}")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="liafkd_gpu_check_"))
    if work.exists() and any(work.iterdir()):
        parser.error(f"--work {work}: not empty; give a new folder")
    scale = TINY if args.tiny else PAPER
    minutes = {"teacher_minutes": args.teacher_minutes, "student_minutes": args.student_minutes}
    scale = replace(scale, **{k: v for k, v in minutes.items() if v is not None})
    return run_check(args.out, work, scale, args.tiny, args.suite, args.budget_minutes)


if __name__ == "__main__":
    sys.exit(main())
