"""Where a distillation step's time goes on cpu-synthetic-v2, and what two switches buy.

    python benchmarks/time_breakdown.py [--bench cpu-synthetic-v2] [--repeats 7]

One thread, process CPU time (other processes on a shared machine barely move it),
median over `--repeats` rounds in which the parts take turns. Parts, for one batch of
the bench's recipe (batch 8 at 192x320):

- `load (decode)`: a training batch read from PNG and augmented (the loader as shipped);
- `load (cached)`: the same with `data.cache_images` after the first epoch;
- `teacher forward`: the frozen teacher's no-grad forward, NCHW and channels_last
  (`train.channels_last: teacher`); its outputs are compared, so the speed-up is shown
  to change no value beyond float rounding;
- `student step`: the student's training step alone (`none`: forward, backward, AdamW).

Random weights (a step's cost does not depend on them). Writes
benchmarks/results/time_breakdown.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from liafkd.bench.config import load_bench, resolve_bench_path
from liafkd.bench.runner import data_block
from liafkd.config import ExperimentConfig
from liafkd.data.dataset import build_loader
from liafkd.data.formats import read_dataset
from liafkd.engine.build import build_student
from liafkd.engine.trainer import DetectorTrainModule, Trainer

OUT = Path(__file__).resolve().parent / "results"


def cpu_ms(action: Callable[[], object]) -> float:
    start = time.process_time()
    action()
    return 1000 * (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", default="cpu-synthetic-v2")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bench = load_bench(resolve_bench_path(args.bench))
    dataset = next(iter(bench.datasets))
    train_cfg, _val_cfg = bench.datasets[dataset]
    index = read_dataset(train_cfg)
    classes = len(index.class_names)
    cfg = ExperimentConfig.model_validate(
        {
            "data": data_block(bench, dataset),
            "model": bench.cfg.student.model.model_dump(),
            "train": bench.cfg.student.train.model_dump() | {"device": "cpu"},
        }
    )
    aug, batch_size = cfg.data.augment, cfg.data.batch_size

    def loader():
        return iter(build_loader(index, aug, batch_size, True, 0, seed=0))

    plain = loader()
    cached_loader = build_loader(index, aug, batch_size, True, 0, seed=0, cache_images=True)
    for _ in cached_loader:  # the first epoch decodes and keeps every image
        pass
    hot = iter(cached_loader)

    torch.manual_seed(0)
    teacher = build_student(bench.teachers[dataset].model, classes).eval()
    teacher_nhwc = build_student(bench.teachers[dataset].model, classes).eval()
    teacher_nhwc.load_state_dict(teacher.state_dict())
    teacher_nhwc.to(memory_format=torch.channels_last)
    student = build_student(cfg.model, classes)
    trainer = Trainer(cfg, DetectorTrainModule(student), index, index)
    images, targets, _ = next(loader())
    trainer.train_step(images, targets)  # warm-up

    def teacher_forward(model):
        with torch.no_grad():
            return model.forward_train(images, targets).losses

    ref, nhwc = teacher_forward(teacher), teacher_forward(teacher_nhwc)
    max_rel = max(float((ref[k] - nhwc[k]).abs() / ref[k].abs().clamp_min(1e-12)) for k in ref)

    parts: dict[str, Callable[[], object]] = {
        "load (decode)": lambda: next(plain),
        "load (cached)": lambda: next(hot),
        "teacher forward (NCHW)": lambda: teacher_forward(teacher),
        "teacher forward (channels_last)": lambda: teacher_forward(teacher_nhwc),
        "student step (none)": lambda: trainer.train_step(images, targets),
    }
    times: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(args.repeats):
        for name, action in parts.items():
            times[name].append(cpu_ms(action))
    medians = {name: statistics.median(values) for name, values in times.items()}
    before = medians["load (decode)"] + medians["teacher forward (NCHW)"]
    after = medians["load (cached)"] + medians["teacher forward (channels_last)"]
    step = medians["student step (none)"]
    result = {
        "bench": bench.cfg.name,
        "batch": [batch_size, *aug.image_size],
        "threads": 1,
        "clock": "process CPU time, median over rounds",
        "repeats": args.repeats,
        "load_average": os.getloadavg()[0],
        "torch": torch.__version__,
        "ms": {name: round(v, 1) for name, v in medians.items()},
        "all_ms": {name: [round(v, 1) for v in values] for name, values in times.items()},
        "teacher_loss_max_rel_diff_nchw_vs_channels_last": max_rel,
        "distill_step_floor_ms": {
            "before": round(before + step, 1),
            "after": round(after + step, 1),
        },
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "time_breakdown.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Where a step's time goes: {bench.cfg.name}",
        "",
        f"`python benchmarks/time_breakdown.py`; batch {batch_size} at "
        f"{aug.image_size[0]}x{aug.image_size[1]}, 1 thread, process CPU time (median of "
        f"{args.repeats}), load average {result['load_average']:.1f}, torch {torch.__version__}.",
        "",
        "| part | ms |",
        "| --- | --- |",
        *(f"| {name} | {v:.1f} |" for name, v in medians.items()),
        "",
        f"Floor of a distillation step (load + teacher forward + student step): "
        f"{before + step:.0f} ms as shipped before, {after + step:.0f} ms with "
        f"`data.cache_images` and `train.channels_last: teacher` "
        f"({(before + step) / (after + step):.2f}x). The two teachers' losses differ by "
        f"at most {max_rel:.1e} (relative).",
    ]
    (OUT / "time_breakdown.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
