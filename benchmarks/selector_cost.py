"""Step cost of LIAF-KD's selector objectives (joint, adversarial, coop, aligned, meta)
against the floor.

    python benchmarks/selector_cost.py cpu [--steps 8 --rounds 4]
    python benchmarks/selector_cost.py cuda [--steps 40 --rounds 4 --batch-size 8]

The synthetic setting of configs/synthetic (GFL student gfl_student_cpu.yaml, teacher
gfl_teacher_cpu.yaml, batch 8 at 192x320, fp32), the teacher randomly initialised and
saved to a temporary folder (a step's cost does not depend on its weights). Variants:
`none`, `liaf` (the default: lam 0, no selector), `liaf-joint`, `liaf-adversarial`,
`liaf-coop` (lam 1), `liaf-aligned`, `liaf-meta` and `liaf-meta-every4` (meta_every 4),
each learnt one at lam 0.5 unless said, plus the floor (`none` and the teacher's forward).

cpu: process CPU time of each training step with one thread, variants taking turns
for `--rounds` rounds of `--steps` steps; mean and median per variant. CPU time rather
than wall time, so that other processes on a shared machine barely move it; the mean,
so that meta_every 4 counts its meta steps. cuda: the bench's cost machinery
(liafkd.bench.cost.measure_cost: median wall time per step, rounds, memory, KD share).
Writes benchmarks/results/selector_cost_<device>[_b<batch>].json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml

from liafkd.bench.config import CostConfig
from liafkd.bench.cost import FLOOR, build_trainers, fixed_batch, measure_cost
from liafkd.config import load_config
from liafkd.engine.build import build_student

REPO = Path(__file__).resolve().parents[1]
SELECTORS: dict[str, dict | None] = {
    "none": None,
    "liaf": {},  # the default, lam 0: uniform weights, no selector built
    "liaf-joint": {"objective": "joint", "lam": 0.5},
    "liaf-adversarial": {"objective": "adversarial", "lam": 0.5},
    "liaf-coop": {"objective": "coop", "lam": 1.0},
    "liaf-aligned": {"objective": "aligned", "lam": 0.5},
    "liaf-meta": {"objective": "meta", "lam": 0.5},
    "liaf-meta-every4": {"objective": "meta", "meta_every": 4, "lam": 0.5},
}
CLASSES = ["Car", "Pedestrian", "Cyclist"]  # the synthetic dataset's


def _experiment(name: str, device: str) -> dict:
    raw = yaml.safe_load((REPO / "configs" / "synthetic" / name).read_text())
    for split in ("train", "val"):
        raw["data"][split]["root"] = str(REPO / "data" / "synthetic")
    raw["train"]["device"] = device
    return raw


def write_configs(work: Path, device: str) -> tuple[dict[str, Path], Path, Path]:
    """Experiment YAMLs of every variant, the teacher's YAML and a random teacher."""
    teacher_yaml = work / "teacher.yaml"
    teacher_yaml.write_text(yaml.safe_dump(_experiment("gfl_teacher_cpu.yaml", device)))
    torch.manual_seed(0)
    teacher = build_student(load_config(teacher_yaml).model, len(CLASSES))
    checkpoint = work / "teacher.pt"
    torch.save({"model": teacher.state_dict(), "meta": {"class_names": CLASSES}}, checkpoint)
    configs = {}
    for name, selector in SELECTORS.items():
        raw = _experiment("gfl_student_cpu.yaml", device) | {"name": name}
        raw["output_dir"] = str(work / "out" / name)
        raw["distill"] = {"method": "none"}
        if selector is not None:
            teacher_block = {"config": str(teacher_yaml), "checkpoint": str(checkpoint)}
            raw["distill"] = {"method": "liaf", "teacher": teacher_block}
            raw["distill"]["liaf"] = {"selector": selector}
        configs[name] = work / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump(raw))
    return configs, teacher_yaml, checkpoint


def cpu_times(configs: dict[str, Path], teacher: Path, checkpoint: Path, steps: int, rounds: int):
    """Process CPU seconds per training step of every variant (one thread)."""
    torch.set_num_threads(1)
    trainers, base_cfg, index = build_trainers(configs, teacher, checkpoint)
    batch = fixed_batch(index, base_cfg, base_cfg.data.batch_size, torch.device("cpu"))
    for trainer in trainers.values():
        trainer.module.train()
        for _ in range(2):
            trainer.train_step(*batch)
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(rounds):
        for name, trainer in trainers.items():
            for _ in range(steps):
                tic = time.process_time()
                trainer.train_step(*batch)
                times[name].append(time.process_time() - tic)
    floor = statistics.fmean(times[FLOOR])
    return {
        name: {
            "cpu_ms_mean": 1e3 * statistics.fmean(ts),
            "cpu_ms_median": 1e3 * statistics.median(ts),
            "x_floor_mean": statistics.fmean(ts) / floor,
            "steps": len(ts),
        }
        for name, ts in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("device", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        configs, teacher, checkpoint = write_configs(Path(tmp), args.device)
        if args.device == "cpu":
            result = cpu_times(configs, teacher, checkpoint, args.steps or 8, args.rounds)
        else:
            cost = CostConfig(
                steps=args.steps or 40, rounds=args.rounds, batch_size=args.batch_size
            )
            result = measure_cost(configs, teacher, checkpoint, cost)
    suffix = f"_b{args.batch_size}" if args.batch_size else ""
    out = REPO / "benchmarks" / "results" / f"selector_cost_{args.device}{suffix}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result.get("variants", result), indent=1))


if __name__ == "__main__":
    main()
