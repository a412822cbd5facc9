"""The shipped default of every distillation method passes `liafkd doctor` (its
function, liafkd.engine.doctor.diagnose) on a tutorial-like dataset with one object per
image and on the synthetic default (small): no default may depend on the data to run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from liafkd.config import load_config
from liafkd.distill.registry import METHODS
from liafkd.engine.build import build_student
from liafkd.engine.doctor import diagnose

# every method in the registry, and LIAF-KD starting from the teacher's neck and head
CASES = [pytest.param(method, {}, id=method) for method in sorted(METHODS)]
CASES.append(pytest.param("liaf", {"inherit": True}, id="liaf+inherit"))
DATASETS = ("one-object", "synthetic")
SIZE = [96, 160]  # height, width
TEACHER_MODEL = {"width": 16, "fpn_channels": 24, "head_channels": 24}  # wider: adapters


def one_object_dataset(root: Path, count: int = 12) -> dict:
    """`count` photos with exactly one box each, two classes, as a CSV a labelling tool
    writes; the same images serve as train and val (doctor trains nothing)."""
    (root / "images").mkdir(parents=True)
    lines = ["filename,class,xmin,ymin,xmax,ymax"]
    for i in range(count):
        name = f"{i:03d}.png"
        image = Image.new("RGB", (SIZE[1], SIZE[0]), (40, 40, 40))
        box = (10 + 5 * i, 12 + 2 * i, 60 + 5 * i, 70 + 2 * i)
        image.paste((200, 90 + 10 * i, 60), box)
        image.save(root / "images" / name)
        lines.append(f"{name},{'ab'[i % 2]},{box[0]},{box[1]},{box[2]},{box[3]}")
    (root / "boxes.csv").write_text("\n".join(lines) + "\n")
    split = {
        "format": "csv",
        "root": str(root),
        "ann_file": "boxes.csv",
        "images_dir": "images",
        "classes": ["a", "b"],
    }
    return {"train": dict(split), "val": dict(split)}


def save_teacher(config: Path, out: Path, classes: list[str], seed: int) -> Path:
    torch.manual_seed(seed)  # a teacher unlike the student, so imitation terms are not 0
    state = build_student(load_config(config).model, len(classes)).state_dict()
    torch.save({"model": state, "meta": {"class_names": classes}}, out)
    return out


@pytest.fixture(scope="module")
def setups(tmp_path_factory, experiment_writer) -> dict[str, dict]:
    """dataset -> {"raw": student experiment, "teachers": {"wide" | "same": (yaml, pt)}}."""
    tiny_experiment, write_yaml = experiment_writer
    root = tmp_path_factory.mktemp("default_methods")
    found = {}
    for dataset in DATASETS:
        folder = root / dataset
        folder.mkdir()
        raw = tiny_experiment(folder, "student")
        raw["data"]["augment"] = {"image_size": SIZE}
        if dataset == "one-object":
            raw["data"].update(one_object_dataset(folder / "photos"))
            classes = ["a", "b"]
        else:
            classes = ["Car", "Pedestrian", "Cyclist"]  # the synthetic set's
        teachers = {}
        for kind, model in (("wide", TEACHER_MODEL), ("same", {})):
            teacher = {**raw, "name": f"teacher-{kind}", "model": {**raw["model"], **model}}
            yaml_path = write_yaml(teacher, folder / f"teacher-{kind}.yaml")
            teachers[kind] = (yaml_path, save_teacher(yaml_path, folder / f"{kind}.pt", classes, 1))
        found[dataset] = {"raw": raw, "teachers": teachers, "folder": folder}
    return found


@pytest.mark.slow
@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("method,options", CASES)
def test_shipped_default_passes_doctor(setups, experiment_writer, dataset, method, options):
    _, write_yaml = experiment_writer
    setup = setups[dataset]
    teacher_yaml, checkpoint = setup["teachers"]["same" if options.get("inherit") else "wide"]
    raw = {**setup["raw"], "name": "student"}
    raw["distill"] = {
        "method": method,
        "teacher": {"config": str(teacher_yaml), "checkpoint": str(checkpoint)},
        # a random teacher detects nothing: its sanity check is not what is tested here
        "checks": {"min_teacher_ap50": 0.0, "teacher_batches": 1},
        **options,
    }
    name = method.replace("+", "_") + ("_inherit" if options else "")
    config = write_yaml(raw, setup["folder"] / f"{name}.yaml")
    results = diagnose(str(config), [])
    failed = [f"{r.name}: {r.detail} (fix: {r.fix})" for r in results if r.failed]
    assert not failed, "\n".join(failed)
    names = {r.name for r in results}
    if method != "none":
        assert any(n.startswith("term ") for n in names)  # the step check ran on its terms
    if method.startswith("liaf"):
        assert "distiller selector" not in names  # lam 0, the default: no selector


def _student_config(setup: dict, write_yaml, method: str, options: dict, name: str) -> Path:
    teacher_yaml, checkpoint = setup["teachers"]["same" if options.get("inherit") else "wide"]
    raw = {**setup["raw"], "name": name, "output_dir": str(setup["folder"] / "runs" / name)}
    raw["train"] = {**raw["train"], "schedule": {"epochs": 1, "warmup_iters": 1}, "max_steps": 2}
    raw["distill"] = {
        "method": method,
        "teacher": {"config": str(teacher_yaml), "checkpoint": str(checkpoint)},
        "checks": {"min_teacher_ap50": 0.0, "teacher_batches": 1},
        **options,
    }
    return write_yaml(raw, setup["folder"] / f"{name}.yaml")


@pytest.mark.slow
@pytest.mark.parametrize(
    "dataset,method,options",
    [pytest.param("one-object", p.values[0], p.values[1], id=p.id) for p in CASES]
    + [pytest.param("synthetic", "liaf", {}, id="synthetic-liaf")],
)
def test_shipped_default_trains(setups, experiment_writer, dataset, method, options):
    """Past doctor: `liafkd distill` with the method's defaults trains and finishes."""
    from liafkd.engine.runs import distill_student

    _, write_yaml = experiment_writer
    name = f"train-{method.replace('+', '_')}{'-inherit' if options else ''}"
    config = _student_config(setups[dataset], write_yaml, method, options, name)
    summary = distill_student(str(config), [])
    assert summary["steps"] == 2 and summary["nonfinite_steps"] == 0
    assert (setups[dataset]["folder"] / "runs" / name / "final.pt").is_file()
