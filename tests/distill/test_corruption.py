"""distill.teacher_corruption and the `oracle` selector objective (corruption.py): which
instances are altered, what the alteration does, that the oracle's weights are exactly
the altered instances, and that nothing else can read them."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import yaml
from torch import nn

from liafkd.config import ModelConfig
from liafkd.distill.base import DistillInputs
from liafkd.distill.config import load_distill_config
from liafkd.distill.corruption import (
    OracleLIAF,
    TeacherCorruption,
    box_cells,
    corrupted_teacher,
)
from liafkd.distill.fgd import instance_losses
from liafkd.distill.registry import METHODS, build_method
from liafkd.models.gfl import GFL

TEACHER = {"config": "t.yaml", "checkpoint": "t.pt"}
CORRUPTION = {"fraction": 0.3, "seed": 0}


def targets_of(boxes_per_image: list[list[list[float]]], first_id: int = 0) -> list[dict]:
    return [
        {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.zeros(len(boxes), dtype=torch.int64),
            "image_id": first_id + b,
        }
        for b, boxes in enumerate(boxes_per_image)
    ]


def test_the_altered_share_is_fixed_by_seed_image_and_index():
    corruption = TeacherCorruption(0.3, seed=0)
    targets = targets_of([[[0, 0, 8, 8]] * 10 for _ in range(300)])
    altered = corruption.altered(targets)
    assert altered.shape == (3000,)
    assert 0.27 < float(altered.float().mean()) < 0.33
    assert torch.equal(altered, corruption.altered(targets))  # a hash, not a draw
    assert not torch.equal(altered, TeacherCorruption(0.3, seed=1).altered(targets))
    # an image's instances depend on its id and their index only, not on the batch
    alone = corruption.altered(targets_of([[[0, 0, 8, 8]] * 10], first_id=7))
    assert torch.equal(alone, altered[70:80])


def test_targets_without_image_ids_are_refused():
    with pytest.raises(ValueError, match="image_id"):
        TeacherCorruption(0.3).altered([{"boxes": torch.zeros(1, 4)}])


def test_box_cells_follow_fgds_rule():
    # box 5..19 x 0..8 on stride 8: x from floor(5/8)=0 to ceil(19/8)=3, y 0..1
    region = box_cells(torch.tensor([[5.0, 0.0, 19.0, 8.0]]), torch.tensor([0]), 1, 8, (4, 5))
    expected = torch.zeros(1, 4, 5, dtype=torch.bool)
    expected[0, 0:2, 0:4] = True
    assert torch.equal(region, expected)


def test_apply_mirrors_the_altered_boxes_cells_only():
    corruption = TeacherCorruption(1.0, strength=1.0)  # every instance altered
    feat = torch.arange(2 * 1 * 4 * 6, dtype=torch.float32).reshape(2, 1, 4, 6)
    targets = targets_of([[[0.0, 0.0, 8.0, 8.0]], []])  # one box, image 0, cells (0..1, 0..1)
    (out,) = corruption.apply([feat], targets, [8])
    region = torch.zeros(2, 1, 4, 6, dtype=torch.bool)
    region[0, :, 0:2, 0:2] = True
    mirrored = torch.flip(feat, dims=(-2, -1))
    assert torch.equal(out[region], mirrored[region])
    assert torch.equal(out[~region], feat[~region])
    half = TeacherCorruption(1.0, strength=0.5).apply([feat], targets, [8])[0]
    assert torch.allclose(half[region], 0.5 * (feat[region] + mirrored[region]))


def oracle_inputs(make_inputs) -> DistillInputs:
    boxes = [[[0, 0, 16, 16], [20, 4, 44, 28], [2, 2, 30, 30]], [[8, 8, 40, 24], [0, 0, 9, 9]]]
    inputs = make_inputs(boxes_per_image=boxes)
    for image_id, target in zip((11, 12), inputs.targets, strict=True):
        target["image_id"] = image_id
    return inputs


def test_oracle_weights_are_exactly_the_unaltered_instances(make_inputs):
    inputs = oracle_inputs(make_inputs)
    corruption = TeacherCorruption(0.5, seed=3)
    altered = corruption.altered(inputs.targets)
    assert 0 < int(altered.sum()) < altered.numel()  # the case is not trivial
    oracle = OracleLIAF(4, 2, corruption)
    losses = oracle(inputs)
    weights = oracle.weight_log.weights[-1]
    assert torch.equal(weights, (~altered).float())
    masks = oracle.masks(inputs)
    per_instance = instance_losses(oracle.level_errors(inputs), masks, inputs.batch_size)
    expected = 1e-3 * per_instance[~altered].sum()
    assert torch.allclose(losses["loss_liaf_fg"], expected)
    assert [r["altered"] for r in oracle.instance_records()] == altered.float().tolist()


def holders_of_corruption(module: nn.Module) -> list[str]:
    """The attributes of `module` and of every submodule that hold a TeacherCorruption."""
    found = []
    for name, sub in module.named_modules():
        for attr, value in vars(sub).items():
            if isinstance(value, TeacherCorruption):
                found.append(f"{name}.{attr}")
    return found


OBJECTIVES = {
    "joint": {"lam": 0.5},
    "adversarial": {"objective": "adversarial", "lam": 0.5},
    "aligned": {"objective": "aligned", "lam": 0.5},
    "meta": {"objective": "meta", "lam": 0.5},
    "coop": {"objective": "coop", "lam": 1.0},
    "uniform": {},
}


@pytest.mark.parametrize(
    "method, selector",
    [(m, None) for m in sorted(METHODS)] + [("liaf", s) for s in sorted(OBJECTIVES)],
)
def test_no_other_row_can_read_the_corruption(method, selector):
    """Built with distill.teacher_corruption set, no method but the oracle holds it, and
    DistillInputs has no field that could carry it."""
    block = {"method": method, "teacher": TEACHER, "teacher_corruption": CORRUPTION}
    if selector is not None:
        block["liaf"] = {"selector": OBJECTIVES[selector]}
    from liafkd.distill.base import HeadPair

    heads = HeadPair(GFL(ModelConfig(**TINY), 3).head, GFL(ModelConfig(**TINY), 3).head)
    built = build_method(load_distill_config(block, "exp.yaml"), 16, 5, heads)
    assert holders_of_corruption(built) == []
    field_types = " ".join(str(f.type) for f in dataclasses.fields(DistillInputs))
    assert "Corruption" not in field_types


def test_only_the_oracle_holds_it():
    block = {
        "method": "liaf",
        "teacher": TEACHER,
        "teacher_corruption": CORRUPTION,
        "liaf": {"selector": {"objective": "oracle"}},
    }
    built = build_method(load_distill_config(block, "exp.yaml"), 16, 5)
    assert isinstance(built, OracleLIAF)
    assert holders_of_corruption(built) == [".corruption"]
    assert built.needs == frozenset({"feats"})


def test_the_skip_seed_control_skips_as_many_instances_but_not_the_altered_ones():
    block = {
        "method": "liaf",
        "teacher": TEACHER,
        "teacher_corruption": CORRUPTION,
        "liaf": {"selector": {"objective": "oracle", "oracle_skip_seed": 7}},
    }
    control = build_method(load_distill_config(block, "exp.yaml"), 16, 5)
    assert isinstance(control, OracleLIAF)
    altered = TeacherCorruption(**CORRUPTION)
    assert (control.corruption.fraction, control.corruption.seed) == (0.3, 7)
    pairs = [(image, index) for image in range(400) for index in range(3)]
    skipped = {p for p in pairs if control.corruption.is_altered(*p)}
    hit = {p for p in pairs if altered.is_altered(*p)}
    assert abs(len(skipped) / len(pairs) - 0.3) < 0.05  # the same share...
    assert abs(len(skipped & hit) / len(skipped) - 0.3) < 0.06  # ...independent of which
    other = {"method": "liaf", "teacher": TEACHER, "teacher_corruption": CORRUPTION}
    other["liaf"] = {"selector": {"lam": 0.5, "oracle_skip_seed": 7}}
    with pytest.raises(ValueError, match="oracle_skip_seed: set with objective 'joint'"):
        load_distill_config(other, "exp.yaml")


TINY = {"depth": 18, "width": 8, "fpn_channels": 16, "head_convs": 1, "head_channels": 16}


def test_the_teacher_sees_altered_features_inside_the_block_only():
    """On a GFL teacher: inside `corrupted_teacher` its FPN features (and so its head's
    input) differ from the clean ones exactly on the altered boxes' cells; the targets
    are not touched; after the block the teacher is clean again."""
    torch.manual_seed(0)
    teacher = GFL(ModelConfig(**TINY), 3).eval()
    images = torch.randn(2, 3, 64, 96)
    targets = targets_of([[[0, 0, 30, 30], [40, 10, 90, 60]], [[10, 10, 50, 40]]])
    for t in targets:
        t["labels"] = torch.tensor([0, 1, 2][: len(t["boxes"])])
    before = [dict(t) for t in targets]
    corruption = TeacherCorruption(1.0)  # all altered: every box's cells must change
    with torch.no_grad():
        clean = teacher.forward_train(images, targets)
        with corrupted_teacher(teacher, corruption, targets):
            altered = teacher.forward_train(images, targets)
        again = teacher.forward_train(images, targets)
    boxes = torch.cat([t["boxes"] for t in targets])
    images_of = torch.tensor([0, 0, 1])
    for level, stride in enumerate(teacher.strides):
        shape = clean.feats[level].shape[-2:]
        region = box_cells(boxes, images_of, 2, stride, shape)[:, None].expand_as(
            clean.feats[level]
        )
        expected = torch.flip(clean.feats[level], dims=(-2, -1))
        assert torch.equal(altered.feats[level][region], expected[region])
        assert torch.equal(altered.feats[level][~region], clean.feats[level][~region])
        assert torch.equal(again.feats[level], clean.feats[level])
    assert not torch.equal(altered.instances.quality, clean.instances.quality)
    assert [set(t) for t in targets] == [set(t) for t in before]


@pytest.mark.slow
def test_oracle_and_coop_distill_end_to_end(tiny_distill_runs, tmp_path):
    """`liafkd distill` with the corruption: the oracle's dumped weights are 0 exactly
    where the corruption says (by image id and box index), coop's terms are finite."""
    from liafkd.cli.main import main

    teacher_config = tiny_distill_runs["teacher"]
    raw = yaml.safe_load(tiny_distill_runs["none"].read_text())
    for name, selector in (("oracle", {"objective": "oracle"}), ("coop", OBJECTIVES["coop"])):
        raw = raw | {"name": name, "output_dir": str(tmp_path / name)}
        raw["train"] = raw["train"] | {"schedule": {"epochs": 1, "warmup_iters": 1}}
        raw["distill"] = {
            "method": "liaf",
            "teacher": {
                "config": str(teacher_config),
                "checkpoint": str(teacher_config.parent / "teacher" / "final.pt"),
            },
            "checks": {"teacher_sanity": False},
            "teacher_corruption": {"fraction": 0.5, "seed": 1},
            "liaf": {"selector": selector},
        }
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump(raw))
        assert main(["distill", str(config)]) == 0
    corruption = TeacherCorruption(0.5, seed=1)
    rows = [
        json.loads(line)
        for dump in (tmp_path / "oracle" / "instances").glob("*.jsonl")
        for line in dump.read_text().splitlines()
    ]
    by_image: dict[int, list[float]] = {}
    for row in rows:  # one epoch: each image once, its boxes in order
        by_image.setdefault(row["image_id"], []).append(row["weight"])
    assert by_image
    for image_id, weights in by_image.items():
        expected = [0.0 if corruption.is_altered(image_id, k) else 1.0 for k in range(len(weights))]
        assert weights == expected, image_id
    assert 0 < sum(w == 0.0 for ws in by_image.values() for w in ws) < len(rows)
    metrics = [
        json.loads(line) for line in (tmp_path / "coop" / "metrics.jsonl").read_text().splitlines()
    ]
    steps = [r for r in metrics if r["type"] == "train"]
    assert steps and all(
        torch.isfinite(torch.tensor(r["loss_liaf_coop"])) and r["loss_liaf_fg"] > 0 for r in steps
    )
