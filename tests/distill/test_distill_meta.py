"""LIAF-KD's `meta` objective (meta.py, probe.py) on a toy student whose FPN features
are linear in its weights, so the sign of every instance's helpfulness is known."""

from __future__ import annotations

import copy
import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liafkd.cli.main import main
from liafkd.config import ModelConfig
from liafkd.distill.base import DistillInputs
from liafkd.distill.config import load_distill_config
from liafkd.distill.distiller import build_distiller
from liafkd.distill.liaf import LIAF
from liafkd.distill.meta import helpfulness, image_halves, meta_target
from liafkd.distill.probe import StudentProbe
from liafkd.engine.checkpoint import load_checkpoint
from liafkd.engine.guardrails.step import StepProbe, part_results, term_result
from liafkd.engine.runs import train_detector
from liafkd.models.gfl import GFL

IMAGES_SHAPE = (32, 48)  # P3 4 x 6, P4 2 x 3, as the fake inputs of conftest.py
BOXES = [[[0.0, 0.0, 16.0, 16.0], [32.0, 0.0, 48.0, 16.0]], []]  # both on image 0
SPLIT_X = 28.0  # the teacher is right left of this, wrong right of it


class _GreyPool(nn.Module):
    def forward(self, images: Tensor) -> Tensor:
        return F.avg_pool2d(images.mean(dim=1, keepdim=True), 8)


class ToyStudent(nn.Module):
    """P3 = w * x (x: an 8 x 8 cell's mean grey value, w: 4 channels), P4 = P3 pooled 2x2,
    optionally with a BatchNorm. Detection loss 0.5 * sum_l |P_l(w) - P_l(w_star)|^2 / B:
    its gradient points from w_star to w."""

    strides = (8, 16)

    def __init__(self, w: Tensor, w_star: Tensor, batch_norm: bool = False) -> None:
        super().__init__()
        conv = nn.Conv2d(1, 4, 1, bias=False)
        with torch.no_grad():
            conv.weight.copy_(w.reshape(4, 1, 1, 1))
        parts = [_GreyPool(), conv] + ([nn.BatchNorm2d(4)] if batch_norm else [])
        self.backbone = nn.Sequential(*parts)
        self.neck = nn.Identity()
        self.w_star = w_star

    def extract_feats(self, images: Tensor) -> list[Tensor]:
        p3 = self.neck(self.backbone(images))
        return [p3, F.avg_pool2d(p3, 2)]

    def goal_feats(self, images: Tensor) -> list[Tensor]:
        p3 = self.w_star.reshape(1, 4, 1, 1) * _GreyPool()(images)
        return [p3, F.avg_pool2d(p3, 2)]

    def forward_train(self, images: Tensor, targets: list[dict]) -> SimpleNamespace:
        feats = self.extract_feats(images)
        gaps = [(f - g).pow(2).sum() for f, g in zip(feats, self.goal_feats(images), strict=True)]
        return SimpleNamespace(losses={"loss_det": 0.5 * sum(gaps) / images.shape[0]})


def _toy(batch_norm: bool = False, seed: int = 0) -> tuple[ToyStudent, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    w_star = torch.tensor([1.0, -0.5, 0.8, 0.3])
    w = w_star + torch.tensor([0.6, 0.4, -0.7, 0.5])
    images = torch.rand(2, 3, *IMAGES_SHAPE, generator=gen) + 0.5
    return ToyStudent(w, w_star, batch_norm), images


def _teacher_feats(student: ToyStudent, images: Tensor) -> list[Tensor]:
    """w_star * x left of SPLIT_X (imitating it moves w toward w_star, as the detection
    loss does), (2 w - w_star) * x right of it (imitating it moves w away)."""
    with torch.no_grad():
        good = student.goal_feats(images)
        bad = [2 * f - g for f, g in zip(student.extract_feats(images), good, strict=True)]
    out = []
    for g, b, stride in zip(good, bad, student.strides, strict=True):
        centres = (torch.arange(g.shape[-1]) + 0.5) * stride
        out.append(torch.where(centres < SPLIT_X, g, b))
    return out


def _inputs(make_inputs, student: ToyStudent, images: Tensor, boxes=BOXES) -> DistillInputs:
    """conftest's fake inputs (targets, instance states) with the toy's features."""
    inputs = make_inputs(boxes_per_image=boxes, images_shape=IMAGES_SHAPE)
    inputs.teacher_feats = _teacher_feats(student, images)
    inputs.student_feats = student.extract_feats(images)
    inputs.student_probe = StudentProbe(student, images, inputs.targets)
    return inputs


def _autograd_helpfulness(student: ToyStudent, inputs: DistillInputs, method: LIAF) -> Tensor:
    """h_i = <grad_theta L_det(other half), grad_theta L_fg_i(own half)> * |half| / B
    (theta: every backbone parameter), by plain autograd, one instance at a time."""
    images = inputs.student_probe.images
    theta = list(student.backbone.parameters())
    out = []
    for half, other in zip(image_halves(2), reversed(image_halves(2)), strict=True):
        det = student.forward_train(images[other], inputs.targets[other]).losses["loss_det"]
        d = torch.autograd.grad(det, theta)
        half_inputs = DistillInputs(
            images_shape=IMAGES_SHAPE,
            targets=inputs.targets[half],
            teacher_feats=[t[half] for t in inputs.teacher_feats],
            student_feats=student.extract_feats(images[half]),
            strides=inputs.strides,
        )
        losses = method._instance_losses(half_inputs) * (half.stop - half.start) / 2
        for loss in losses:
            g = torch.autograd.grad(loss, theta, retain_graph=True)
            out.append(sum((a * b).sum() for a, b in zip(g, d, strict=True)))
    return torch.stack(out)


def test_meta_target_hand_values():
    assert meta_target(torch.tensor([-1.0, 2.0, 0.0, 6.0])).tolist() == [0, 0.25, 0, 0.75]
    assert meta_target(torch.tensor([-1.0, 0.0])) is None


def test_helpfulness_signs_on_the_toy(make_inputs):
    # imitating instance 0 (teacher = w_star) moves w toward w_star, as the detection
    # loss on the other image does: h_0 > 0; instance 1's teacher pulls the other way
    student, images = _toy()
    method = LIAF(4, 2, lam=0.5, objective="meta")
    scores = helpfulness(_inputs(make_inputs, student, images), method._instance_losses)
    assert scores.shape == (2,)
    assert scores[0] > 0 > scores[1]


@pytest.mark.parametrize("batch_norm", [False, True])
def test_helpfulness_is_the_exact_inner_product(batch_norm, make_inputs):
    boxes = [BOXES[0], [[8.0, 8.0, 40.0, 24.0]]]  # an instance on each image
    student, images = _toy(batch_norm)
    inputs = _inputs(make_inputs, student, images, boxes)
    method = LIAF(4, 2, lam=0.5, objective="meta")
    fast = helpfulness(inputs, method._instance_losses)
    expected = _autograd_helpfulness(student, inputs, method)
    assert fast.tolist() == pytest.approx(expected.tolist(), rel=1e-4, abs=1e-8)


def test_probe_leaves_the_student_untouched(make_inputs):
    student, images = _toy(batch_norm=True)
    student.train()
    inputs = _inputs(make_inputs, student, images, [BOXES[0], [[8.0, 8.0, 40.0, 24.0]]])
    before = copy.deepcopy(student.state_dict())  # after the main forward's BN update
    helpfulness(inputs, LIAF(4, 2, lam=0.5, objective="meta")._instance_losses)
    after = student.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in student.parameters())


def test_meta_up_weights_the_helpful_instance(make_inputs):
    student, images = _toy()
    inputs = _inputs(make_inputs, student, images)
    method = LIAF(4, 2, lam=0.5, objective="meta", entropy_beta=0.0, width=8)
    assert "student_probe" in method.needs
    losses = method(inputs)
    assert losses["loss_liaf_meta"].item() > 0
    # the imitation term does not train the selector under `meta`; the meta term does
    losses["loss_liaf_fg"].backward(retain_graph=True)
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in method.selector.parameters())
    losses["loss_liaf_meta"].backward()
    assert method.selector.score[-1].weight.grad.abs().sum() > 0
    optimizer = torch.optim.SGD(method.selector.parameters(), lr=0.5)
    for _ in range(30):
        optimizer.zero_grad()
        method(inputs)["loss_liaf_meta"].backward()
        optimizer.step()
    method(inputs)
    rows = method.instance_records()
    assert rows[0]["helpfulness"] > 0 > rows[1]["helpfulness"]
    # target q = (1, 0): the weights approach (1 - lam + 2 lam, 1 - lam) = (1.5, 0.5)
    assert rows[0]["weight"] > 1.4 and rows[1]["weight"] < 0.6


def test_meta_every_and_one_image_batches(make_inputs):
    student, images = _toy()
    method = LIAF(4, 2, lam=0.5, objective="meta", meta_every=3)
    values, scored = [], []
    for _ in range(4):  # meta steps on calls 0 and 3
        values.append(method(_inputs(make_inputs, student, images))["loss_liaf_meta"].item())
        scored.append("helpfulness" in method.instance_records()[0])
    assert values[0] > 0 and values[3] > 0 and values[1] == values[2] == 0
    assert scored == [True, False, False, True]
    one = _inputs(make_inputs, student, images[:1], BOXES[:1])
    assert method(one)["loss_liaf_meta"].item() == 0  # no held-out half
    with pytest.raises(ValueError, match="meta_every"):
        LIAF(4, 2, lam=0.5, objective="meta", meta_every=0)


def test_meta_config_validation():
    teacher = {"config": "t.yaml", "checkpoint": "t.pth"}

    def load(selector: dict):
        raw = {"method": "liaf", "teacher": teacher, "liaf": {"selector": selector}}
        return load_distill_config(raw, "exp.yaml").liaf.selector

    sel = load({"objective": "meta", "lam": 0.5, "meta_every": 4, "meta_weight": 2.0})
    assert (sel.meta_every, sel.meta_weight) == (4, 2.0)
    assert load({}).objective == "joint"  # the default is unchanged
    with pytest.raises(Exception, match="meta_every"):
        load({"objective": "joint", "meta_every": 4})
    with pytest.raises(Exception, match="meta_every"):
        load({"objective": "meta", "lam": 0.5, "meta_every": 0})
    with pytest.raises(Exception, match="meta_weight"):
        load({"objective": "meta", "lam": 0.5, "meta_weight": -1.0})


def test_meta_on_tiny_gfl_through_the_distiller():
    torch.manual_seed(0)
    small = dict(depth=18, head_channels=16, head_convs=1, reg_max=4)
    student = GFL(ModelConfig(width=8, fpn_channels=16, **small), 3)
    teacher = GFL(ModelConfig(width=16, fpn_channels=24, **small), 3).eval()
    images = torch.randn(2, 3, 64, 96)
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0]]), "labels": torch.tensor([0])},
        {"boxes": torch.tensor([[50.0, 10.0, 90.0, 30.0]]), "labels": torch.tensor([2])},
    ]
    raw = {
        "method": "liaf",
        "teacher": {"config": "t.yaml", "checkpoint": "t.pth"},
        "liaf": {"selector": {"objective": "meta", "lam": 0.5}},
    }
    distiller = build_distiller(load_distill_config(raw, "exp.yaml"), 16, 24, 5)
    out_s = student.forward_train(images, targets)
    with torch.no_grad():
        out_t = teacher.forward_train(images, targets)
    state = copy.deepcopy(student.state_dict())
    args = (out_s, out_t, targets, images.shape[-2:], list(student.strides))
    with pytest.raises(ValueError, match="probe"):
        distiller(*args)
    losses = distiller(*args, probe=StudentProbe(student, images, targets))
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in state.items())
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_liaf_meta"].item() > 0
    losses["loss_liaf_meta"].backward()
    assert all(p.grad is None for p in student.parameters())
    assert distiller.method.selector.score[-1].weight.grad.abs().sum() > 0
    assert len(distiller.instance_records()) == 2
    assert all("helpfulness" in r for r in distiller.instance_records())


def test_guardrails_accept_a_meta_term_that_is_zero_on_its_batch():
    grads = {"loss_liaf_meta": {"student": 0.0, "selector": 0.0}}
    zero = StepProbe({"loss_liaf_meta": 0.0}, ["loss_liaf_meta"], grads, det_grad=1.0)
    assert term_result(zero, "loss_liaf_meta", None, []).status == "PASS"
    assert [r.status for r in part_results(zero)] == ["PASS"]
    broken = StepProbe({"loss_liaf_meta": 0.3}, ["loss_liaf_meta"], grads, det_grad=1.0)
    assert term_result(broken, "loss_liaf_meta", None, []).status == "FAIL"
    assert [r.status for r in part_results(broken)] == ["FAIL"]


@pytest.mark.slow
def test_distill_with_meta_end_to_end(tmp_path, experiment_writer):
    """`liafkd distill` with objective meta on the tiny synthetic config: a one-epoch
    teacher, then two epochs of the student with guardrails on."""
    tiny_experiment, write_yaml = experiment_writer
    schedule = {"epochs": 1, "warmup_iters": 2, "policy": "cosine"}
    teacher = write_yaml(
        tiny_experiment(tmp_path, "teacher", schedule=schedule), tmp_path / "t.yaml"
    )
    train_detector(str(teacher), [])
    raw = tiny_experiment(tmp_path, "meta")
    raw["distill"] = {
        "method": "liaf",
        "teacher": {"config": str(teacher), "checkpoint": str(tmp_path / "teacher" / "final.pt")},
        "liaf": {"selector": {"objective": "meta", "lam": 0.5, "meta_every": 2}},
        "checks": {"teacher_sanity": False},  # a one-epoch teacher scores about 0
    }
    config = write_yaml(raw, tmp_path / "meta.yaml")
    assert main(["distill", str(config)]) == 0
    out = tmp_path / "meta"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["type"] == "train"]
    assert len(steps) == 6  # 9 training images, batch 3, two epochs
    assert all(math.isfinite(r["loss_liaf_meta"]) and r["loss_liaf_meta"] >= 0 for r in steps)
    assert any(r["loss_liaf_meta"] > 0 for r in steps)
    rows = [
        json.loads(line) for line in (out / "instances" / "epoch_1.jsonl").read_text().splitlines()
    ]
    assert any("helpfulness" in row for row in rows)
    saved = load_checkpoint(out / "final.pt")["model"]
    assert not any("selector" in k or "adapters" in k for k in saved)
