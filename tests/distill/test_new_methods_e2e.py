"""`liafkd distill` end to end with each new variant (crosskd, crosskd+pkd, fgd+crosskd,
pkd, liaf+crosskd, fgd and liaf with inherit) on the tiny synthetic config: one epoch from
a one-epoch teacher, every term finite, the saved student free of training-only parts."""

import json
from pathlib import Path

import pytest
import torch

from liafkd.cli.main import main
from liafkd.config import ModelConfig
from liafkd.engine.checkpoint import load_checkpoint
from liafkd.engine.runs import train_detector
from liafkd.models.gfl import GFL

TEACHER_MODEL = {"depth": 18, "width": 8, "fpn_channels": 16, "head_convs": 2, "head_channels": 16}
# same backbone and FPN (so inherit copies the whole neck), a narrower head
STUDENT_MODEL = TEACHER_MODEL | {"head_channels": 8}

VARIANTS = {
    "crosskd": ({"method": "crosskd", "crosskd": {"cut": 1}}, {"qfl", "kl"}),
    "crosskd+pkd": ({"method": "crosskd+pkd"}, {"qfl", "kl", "pkd"}),
    "fgd+crosskd": ({"method": "fgd+crosskd"}, {"qfl", "kl", "fgd_fg"}),
    "pkd": ({"method": "pkd"}, {"pkd"}),
    "liaf+crosskd": ({"method": "liaf+crosskd"}, {"qfl", "kl", "liaf_fg"}),
    "fgd_inherit": ({"method": "fgd", "inherit": True}, {"fgd_fg"}),
    "liaf_inherit": ({"method": "liaf", "inherit": True}, {"liaf_fg"}),
}
TERM_NAMES = {
    "qfl": "loss_crosskd_qfl",
    "kl": "loss_crosskd_kl",
    "pkd": "loss_pkd",
    "liaf_fg": "loss_liaf_fg",
    "fgd_fg": "loss_fgd_fg",
}


@pytest.fixture(scope="module")
def one_epoch(experiment_writer):
    """Writes the shared tiny synthetic experiment (12 images at 96x160), one epoch, with
    `model` and extra top-level keys; returns the config's path."""
    tiny_experiment, write_yaml = experiment_writer
    schedule = {"epochs": 1, "warmup_iters": 2, "policy": "cosine"}

    def write(root: Path, name: str, model: dict, **extra) -> Path:
        raw = tiny_experiment(root, name, schedule=schedule) | {"model": dict(model), **extra}
        return write_yaml(raw, root / f"{name}.yaml")

    return write


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, one_epoch) -> dict:
    root = tmp_path_factory.mktemp("new_methods")
    config = one_epoch(root, "teacher", TEACHER_MODEL)
    train_detector(str(config), [])
    return {"root": root, "config": str(config), "checkpoint": str(root / "teacher" / "final.pt")}


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_distill_runs_end_to_end(teacher, one_epoch, variant, capsys):
    block, terms = VARIANTS[variant]
    root = teacher["root"]
    distill = {
        **block,
        "teacher": {"config": teacher["config"], "checkpoint": teacher["checkpoint"]},
        "checks": {"teacher_sanity": False},  # a one-epoch teacher scores about 0
    }
    config = one_epoch(root, variant, STUDENT_MODEL, distill=distill)
    assert main(["distill", str(config)]) == 0
    printed = capsys.readouterr().out
    assert ("inherit: copied" in printed) == bool(block.get("inherit"))

    out = root / variant
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["type"] == "train"]
    assert len(steps) == 3  # 9 training images, batch 3
    for term in terms:
        values = [r[TERM_NAMES[term]] for r in steps]
        assert all(torch.isfinite(torch.tensor(v)) and v > 0 for v in values), (term, values)
    plain = GFL(ModelConfig(**STUDENT_MODEL), 3).state_dict()
    saved = load_checkpoint(out / "final.pt")["model"]
    assert set(saved) == set(plain)  # no adapters, selector or teacher head
    assert all(saved[k].shape == plain[k].shape for k in plain)
