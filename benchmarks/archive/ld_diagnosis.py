"""Where LD pulls a student: box quality and distance to the teacher at its positives.

    python benchmarks/archive/ld_diagnosis.py [--config configs/bench/archive/cpu-bccd.yaml]
        [--batches 4]

Reads the finished `cpu-bccd` bench's checkpoints (run `liafkd bench
configs/bench/archive/cpu-bccd.yaml` first): the teacher and, for each seed, the
students trained with `none`, `ld` and the LD ablation rows. On the first training
batches (augmented as in training, loader seed 0; every model in eval mode) it takes the
student's positive locations and reports, per student: the mean IoU of the student's and
of the teacher's decoded boxes with the assigned ground truth, and the mean LD distance
to the teacher (bin-mean KL summed over the 4 edges, times T^2) at temperature 10 and at
temperature 1. Writes benchmarks/results/ld_diagnosis.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from liafkd.bench.config import load_bench
from liafkd.bench.runner import plan_runs, plan_teacher
from liafkd.config import load_config
from liafkd.data.dataset import build_loader
from liafkd.distill.config import TeacherConfig
from liafkd.distill.ld import edge_distribution_kl
from liafkd.engine.build import load_indices
from liafkd.engine.guardrails import load_teacher
from liafkd.models.box_coder import aligned_box_iou, decode_boxes

RESULTS = Path(__file__).resolve().parents[1] / "results" / "ld_diagnosis.json"
ROWS = ("none", "ld", "ld-x0.1", "ld-T1")
TEMPERATURES = (10.0, 1.0)


@torch.no_grad()
def positives_figures(student, teacher, batches: list) -> dict[str, float]:
    iou_student, iou_teacher, kl = [], [], {t: [] for t in TEMPERATURES}
    for images, targets in batches:
        s_out = student.forward_train(images, targets)
        t_out = teacher.forward_train(images, targets)
        assign = s_out.assign
        positive = assign.gt_index >= 0
        batch = images.shape[0]
        points = assign.points.expand(batch, -1, -1)[positive]
        strides = assign.strides.expand(batch, -1)[positive]
        s_box, t_box = s_out.head.flat_box()[positive], t_out.head.flat_box()[positive]
        reg_max = s_box.shape[-1] // 4 - 1
        gt = torch.cat([t["boxes"] for t in targets])[assign.gt_index[positive]]
        iou_student.append(aligned_box_iou(decode_boxes(points, s_box, strides, reg_max), gt))
        iou_teacher.append(aligned_box_iou(decode_boxes(points, t_box, strides, reg_max), gt))
        for temperature in TEMPERATURES:
            kl[temperature].append(edge_distribution_kl(s_box, t_box, temperature))
    figures = {
        "positives": int(sum(x.numel() for x in iou_student)),
        "student_iou": torch.cat(iou_student).mean().item(),
        "teacher_iou": torch.cat(iou_teacher).mean().item(),
    }
    for temperature in TEMPERATURES:
        figures[f"kl_T{temperature:g}"] = torch.cat(kl[temperature]).mean().item()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/bench/archive/cpu-bccd.yaml")
    parser.add_argument("--batches", type=int, default=4)
    args = parser.parse_args()
    bench = load_bench(args.config)
    (dataset,) = bench.datasets
    teacher_run = plan_teacher(bench, dataset)
    if not teacher_run.checkpoint.is_file():
        raise SystemExit(
            f"{teacher_run.checkpoint}: no teacher checkpoint; "
            f"run `liafkd bench {args.config}` first"
        )
    cfg = load_config(str(teacher_run.config))
    train_index, _val = load_indices(cfg)
    classes = train_index.class_names
    teacher_spec = TeacherConfig(
        config=str(teacher_run.config), checkpoint=str(teacher_run.checkpoint)
    )
    teacher = load_teacher(teacher_spec, classes)
    loader = build_loader(
        train_index,
        cfg.data.augment,
        batch_size=cfg.data.batch_size,
        train=True,
        num_workers=0,
        seed=0,
    )
    batches = []
    for images, targets, _sizes in loader:
        batches.append((images, targets))
        if len(batches) == args.batches:
            break
    finished = {
        (run.method.name, run.seed): run
        for run in plan_runs(bench, dataset, teacher_run)
        if (run.output_dir / "final.pt").is_file()
    }
    rows: dict[str, dict] = {}
    for row in ROWS:
        per_seed = {}
        for seed in bench.cfg.seeds:
            run = finished.get((row, seed))
            if run is None:
                continue
            final = run.output_dir / "final.pt"
            spec = TeacherConfig(config=str(run.config), checkpoint=str(final))
            student = load_teacher(spec, classes)  # frozen, eval mode: as evaluated
            per_seed[seed] = positives_figures(student, teacher, batches)
            print(row, seed, {k: round(v, 4) for k, v in per_seed[seed].items()})
        if per_seed:
            keys = next(iter(per_seed.values()))
            mean = {k: statistics.fmean(s[k] for s in per_seed.values()) for k in keys}
            rows[row] = {"per_seed": per_seed, "mean": mean}
    RESULTS.write_text(
        json.dumps({"bench": bench.cfg.name, "batches": args.batches, "rows": rows}, indent=1)
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
