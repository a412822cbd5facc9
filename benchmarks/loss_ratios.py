"""Step-0 loss ratios: every loss term of every bench row against the detection loss.

    python benchmarks/loss_ratios.py [--config configs/bench/archive/cpu-synthetic.yaml]
        [--batches 4] [--seed 0] [--teacher-checkpoint PATH | --random-teacher]

For each row of the bench (its method and options), builds the student exactly as the
bench's run of seed `--seed` starts (same config, same seed, `inherit` applied) with the
bench's teacher, runs the first `--batches` training batches (augmented as in training,
loader seed 0) through student, teacher and distiller in training mode, no update, and
reports each loss term divided by the student's detection loss (sum of its head's
losses; so the detection loss is 1). Feature rows are measured twice: as configured
(features divided by the teacher's per-level RMS, `distill.feature_norm: teacher_rms`)
and with `feature_norm: none` (raw features, the former behaviour). Also reports the
teacher's per-level RMS and how many cells and channels its FGD attention (tau 0.5)
really uses, exp(entropy) of the softmax as a share of the level's cells / channels,
on raw and on normalised features.

The teacher is the bench's own (`liafkd bench CONFIG` trains it), another checkpoint of
the same model (`--teacher-checkpoint`), or a randomly initialised one
(`--random-teacher`, said so in the output). Writes benchmarks/results/loss_ratios.json
and loss_ratios.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml

from liafkd.bench.config import LoadedBench, MethodEntry, load_bench
from liafkd.bench.runner import TeacherRun, plan_run, plan_teacher
from liafkd.config import load_config
from liafkd.data.dataset import build_loader
from liafkd.distill.capabilities import method_requirements
from liafkd.distill.config import TeacherConfig
from liafkd.distill.scale import effective_count
from liafkd.engine.build import build_student, load_indices
from liafkd.engine.guardrails import load_teacher
from liafkd.engine.runs import build_train_module
from liafkd.engine.trainer import seed_everything

RESULTS = Path(__file__).resolve().parent / "results"
ATTENTION_TAU = 0.5  # FGD's

Batches = list[tuple[torch.Tensor, list[dict[str, torch.Tensor]]]]


def first_batches(cfg_path: Path, count: int) -> tuple[Batches, list[str]]:
    cfg = load_config(str(cfg_path))
    train_index, _ = load_indices(cfg)
    loader = build_loader(
        train_index,
        cfg.data.augment,
        batch_size=cfg.data.batch_size,
        train=True,
        num_workers=0,
        seed=0,
    )
    batches: Batches = []
    for images, targets, _sizes in loader:
        batches.append((images, targets))
        if len(batches) == count:
            break
    return batches, train_index.class_names


def random_teacher(teacher: TeacherRun, classes: list[str], folder: Path) -> Path:
    """A checkpoint of the teacher's model at its seed-0 random initialisation."""
    cfg = load_config(str(teacher.config))
    seed_everything(0)
    model = build_student(cfg.model.model_copy(update={"pretrained": None}), len(classes))
    path = folder / "random_teacher.pt"
    torch.save({"model": model.state_dict(), "meta": {"class_names": classes}}, path)
    return path


def row_config(
    bench: LoadedBench,
    dataset: str,
    teacher: TeacherRun,
    method: MethodEntry,
    seed: int,
    feature_norm: str | None,
    folder: Path,
) -> Path:
    """The bench run's experiment config, with the teacher checkpoint to use and, when
    given, `distill.feature_norm` overridden."""
    experiment = copy.deepcopy(plan_run(bench, dataset, teacher, method, seed).experiment)
    distill = experiment["distill"]
    if "teacher" in distill:
        distill["teacher"]["checkpoint"] = str(teacher.checkpoint)
    if feature_norm is not None:
        distill["feature_norm"] = feature_norm
    suffix = "" if feature_norm is None else f"-{feature_norm}"
    path = folder / f"{method.name}{suffix}.yaml"
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    return path


def step_zero_ratios(cfg_path: Path, classes: list[str], batches: Batches) -> dict[str, Any]:
    """{"detection_loss": mean over batches, "terms": {term: sum / sum of detection}}."""
    cfg = load_config(str(cfg_path))
    seed_everything(cfg.train.seed)  # the student's initialisation, as the bench run's
    module = build_train_module(cfg, str(cfg_path), classes).train()
    det_terms = set(module.student.forward_train(*batches[0]).losses)
    det_total = 0.0
    totals: dict[str, float] = {}
    for images, targets in batches:
        losses = module(images, targets)
        det_total += sum(losses[k].item() for k in det_terms)
        for name, value in losses.items():
            if name not in det_terms:
                totals[name] = totals.get(name, 0.0) + value.item()
    return {
        "detection_loss": det_total / len(batches),
        "terms": {name: value / det_total for name, value in totals.items()},
    }


@torch.no_grad()
def teacher_features(teacher_cfg: Path, checkpoint: Path, classes: list[str], batches: Batches):
    """Per level: RMS, and the FGD attention's effective share of cells and channels
    (mean over images of exp(entropy) / count) on raw and on RMS-normalised features."""
    spec = TeacherConfig(config=str(teacher_cfg), checkpoint=str(checkpoint))
    teacher = load_teacher(spec, classes)
    images = torch.cat([images for images, _ in batches])
    levels = []
    for stride, feat in zip(teacher.strides, teacher.extract_feats(images), strict=True):
        rms = feat.pow(2).mean().sqrt()
        row = {"stride": stride, "rms": rms.item()}
        for name, f in (("raw", feat), ("normalised", feat / rms)):
            cells = f.abs().mean(dim=1).flatten(1) / ATTENTION_TAU
            channels = f.abs().mean(dim=(2, 3)) / ATTENTION_TAU
            row[f"cells_{name}"] = (effective_count(cells) / cells.shape[1]).mean().item()
            row[f"channels_{name}"] = (effective_count(channels) / channels.shape[1]).mean().item()
        levels.append(row)
    return levels


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Step-0 loss terms / detection loss (= 1) on `{results['bench']}`, seed "
        f"{results['seed']}, {results['batches']} training batches; teacher: "
        f"{results['teacher']}. Imitation sum: every term except the selector's own "
        "(entropy, align, meta); raw: the same with `feature_norm: none`.",
        "",
        "| row | terms (x detection loss) | imitation sum | raw |",
        "| --- | --- | ---: | ---: |",
    ]
    for name, row in results["rows"].items():
        terms = ", ".join(
            f"{term.removeprefix('loss_')} {value:.3g}" for term, value in row["terms"].items()
        )
        raw = row.get("raw_imitation_sum")
        raw_text = "" if raw is None else f"{raw:.3g}"
        lines.append(f"| {name} | {terms or '-'} | {row['imitation_sum']:.3g} | {raw_text} |")
    lines += [
        "",
        "Teacher FPN features: RMS, and the share of cells / channels its attention uses "
        "(exp(entropy) of the softmax at tau 0.5 / count), raw -> normalised.",
        "",
        "| level | RMS | cells | channels |",
        "| --- | ---: | ---: | ---: |",
    ]
    for level in results["teacher_features"]:
        lines.append(
            f"| P{level['stride'].bit_length() - 1} | {level['rms']:.2f} | "
            f"{level['cells_raw']:.2f} -> {level['cells_normalised']:.2f} | "
            f"{level['channels_raw']:.2f} -> {level['channels_normalised']:.2f} |"
        )
    return "\n".join(lines) + "\n"


SELECTOR_TERMS = ("_entropy", "_align", "_meta")


def imitation_sum(terms: dict[str, float]) -> float:
    return sum(v for k, v in terms.items() if not k.endswith(SELECTOR_TERMS))


def uses_features(cfg_path: Path) -> bool:
    """Whether the row's method reads FPN features (feature_norm changes it)."""
    distill = load_config(str(cfg_path)).distill
    return distill is not None and "fpn_feats" in method_requirements(distill["method"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/bench/archive/cpu-synthetic.yaml")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--teacher-checkpoint", help="default: the bench's trained teacher")
    source.add_argument("--random-teacher", action="store_true")
    parser.add_argument("--teacher-note", help="how the teacher was trained, for the table")
    parser.add_argument("--out", default=str(RESULTS / "loss_ratios"), help="path stem")
    args = parser.parse_args()

    bench = load_bench(args.config)
    (dataset,) = bench.datasets
    planned = plan_teacher(bench, dataset)
    batches, classes = first_batches(planned.config, args.batches)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.random_teacher:
            checkpoint, described = random_teacher(planned, classes, folder), "random init"
        else:
            checkpoint = Path(args.teacher_checkpoint or planned.checkpoint).resolve()
            if not checkpoint.is_file():
                raise SystemExit(
                    f"{checkpoint}: no teacher checkpoint; run `liafkd bench {args.config}` "
                    "first, or pass --teacher-checkpoint PATH or --random-teacher"
                )
            described = args.teacher_note or str(checkpoint)
        teacher = TeacherRun(planned.dataset, planned.key, planned.config, checkpoint)
        rows = {}
        for method in bench.cfg.methods:
            cfg = row_config(bench, dataset, teacher, method, args.seed, None, folder)
            row = step_zero_ratios(cfg, classes, batches)
            row["imitation_sum"] = imitation_sum(row["terms"])
            if uses_features(cfg):
                raw_cfg = row_config(bench, dataset, teacher, method, args.seed, "none", folder)
                raw = step_zero_ratios(raw_cfg, classes, batches)
                row["raw_terms"] = raw["terms"]
                row["raw_imitation_sum"] = imitation_sum(raw["terms"])
            rows[method.name] = row
            print(method.name, {k: round(v, 4) for k, v in row["terms"].items()})
        results = {
            "bench": bench.cfg.name,
            "seed": args.seed,
            "batches": args.batches,
            "teacher": described,
            "rows": rows,
            "teacher_features": teacher_features(planned.config, checkpoint, classes, batches),
        }
    stem = Path(args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")


if __name__ == "__main__":
    main()
