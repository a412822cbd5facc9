"""CrossKD: hand-checked loss pieces, the cut, the cross-head path on real tiny GFL
heads (gradients reach the student's features, never the teacher's weights), and
liaf+crosskd."""

import copy
import math

import pytest
import torch

from liafkd.config import ModelConfig
from liafkd.distill.base import HeadPair
from liafkd.distill.config import load_distill_config
from liafkd.distill.crosskd import (
    CrossKD,
    box_distribution_kl,
    kd_quality_focal_loss,
    resolve_cut,
)
from liafkd.distill.distiller import build_distiller
from liafkd.models.gfl import GFL

TEACHER = {"config": "teacher.yaml", "checkpoint": "teacher.pth"}
SMALL = dict(depth=18, reg_max=4, head_convs=2)
IMAGES_SHAPE = (64, 96)


def targets():
    return [
        {
            "boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0], [50.0, 10.0, 90.0, 30.0]]),
            "labels": torch.tensor([0, 2]),
        },
        {"boxes": torch.tensor([[20.0, 20.0, 60.0, 60.0]]), "labels": torch.tensor([1])},
    ]


@pytest.fixture(scope="module")
def pair():
    """A narrower student (head width 8, FPN 16) and a wider teacher (16, 24)."""
    torch.manual_seed(0)
    student = GFL(ModelConfig(width=8, fpn_channels=16, head_channels=8, **SMALL), 3)
    teacher = GFL(ModelConfig(width=8, fpn_channels=24, head_channels=16, **SMALL), 3).eval()
    return student, teacher


def distill(student, teacher, method="crosskd", **blocks):
    raw = {"method": method, "teacher": TEACHER, **blocks}
    cfg = load_distill_config(raw, "exp.yaml")
    fpn_s, fpn_t = student.neck.out_channels, teacher.neck.out_channels
    return build_distiller(cfg, fpn_s, fpn_t, 5, heads=HeadPair(student.head, teacher.head))


def run(distiller, student, teacher):
    images = torch.randn(2, 3, *IMAGES_SHAPE, generator=torch.Generator().manual_seed(1))
    cut = distiller.branch_cut
    out_s = student.forward_train(images, targets(), branch_cut=cut)
    with torch.no_grad():
        out_t = teacher.forward_train(images, targets(), branch_cut=cut)
    det_loss = sum(out_s.losses.values())
    losses = distiller(out_s, out_t, targets(), IMAGES_SHAPE, list(student.strides), det_loss)
    return out_s, out_t, losses


# --- loss pieces, by hand ----------------------------------------------------------


def test_kd_quality_focal_loss_by_hand():
    teacher = torch.tensor([[math.log(3.0), 0.0]])  # sigmoid -> 0.75, 0.5
    student = torch.tensor([[0.0, 0.0]])  # sigmoid -> 0.5, 0.5
    # class 0: BCE(0, 0.75) = ln 2, focal |0.5 - 0.75| = 0.25; class 1: focal 0
    assert kd_quality_focal_loss(student, teacher, 1.0).item() == pytest.approx(0.25 * math.log(2))
    assert kd_quality_focal_loss(student, teacher, 2.0).item() == pytest.approx(
        0.0625 * math.log(2)
    )
    assert kd_quality_focal_loss(teacher, teacher, 1.0).item() == 0.0


def test_box_distribution_kl_by_hand():
    # reg_max 1: 2 bins per edge; teacher uniform, student logits (0, ln 3) on every edge
    teacher = torch.zeros(1, 8)
    student = torch.tensor([[0.0, math.log(3.0)] * 4])
    # KL((.5, .5) || (.25, .75)) = .5 ln 2 + .5 ln(2/3), summed over bins, mean over edges
    expected = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
    assert box_distribution_kl(student, teacher, 1.0).item() == pytest.approx(expected, rel=1e-6)
    # T = 2: softmax(0, ln 3 / 2) = (1, sqrt 3) / (1 + sqrt 3), times T^2
    p = 1 / (1 + math.sqrt(3))
    expected_t2 = 4 * (0.5 * math.log(0.5 / p) + 0.5 * math.log(0.5 / (1 - p)))
    assert box_distribution_kl(student, teacher, 2.0).item() == pytest.approx(expected_t2, rel=1e-6)
    with pytest.raises(ValueError, match="box-edge distributions"):
        box_distribution_kl(torch.zeros(1, 4), torch.zeros(1, 4), 1.0)


def test_resolve_cut(pair):
    student, teacher = pair
    assert resolve_cut(-1, student.head, teacher.head) == 1  # all but the last block
    assert resolve_cut(0, student.head, teacher.head) == 0
    assert resolve_cut(2, student.head, teacher.head) == 2
    for bad in (3, -3):
        with pytest.raises(ValueError, match="distill.crosskd.cut"):
            resolve_cut(bad, student.head, teacher.head)


# --- the detector side ---------------------------------------------------------------


def test_forward_train_branch_cut_keeps_outputs(pair):
    student, _ = pair
    images = torch.randn(2, 3, *IMAGES_SHAPE)
    plain = student.forward_train(images, targets())
    split = student.forward_train(images, targets(), branch_cut=1)
    assert plain.branches is None and split.branches.cut == 1
    assert {k: v.item() for k, v in plain.losses.items()} == {
        k: v.item() for k, v in split.losses.items()
    }
    for a, b in zip(plain.head.cls_logits, split.head.cls_logits, strict=True):
        assert torch.equal(a, b)
    assert [tuple(f.shape[:2]) for f in split.branches.cls_feats] == [(2, 8)] * 5
    assert [tuple(f.shape[:2]) for f in split.branches.reg_feats] == [(2, 8)] * 5


# --- the cross-head path ------------------------------------------------------------


def test_gradient_reaches_student_features_not_teacher_weights(pair):
    student, teacher = pair
    distiller = distill(student, teacher)
    assert distiller.branch_cut == 1
    assert all(not p.requires_grad for p in teacher.head.parameters())
    _, _, losses = run(distiller, student, teacher)
    assert set(losses) == {"loss_crosskd_qfl", "loss_crosskd_kl"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    student.zero_grad()
    sum(losses.values()).backward()  # the cross-head terms alone
    assert all(p.grad is None for p in teacher.parameters())
    head = student.head
    # student blocks before the cut, its neck and backbone learn from the cross head ...
    for module in (head.cls_convs[0], head.reg_convs[0], student.neck, student.backbone):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    # ... while its own blocks after the cut and its outputs learn from the ground truth only
    for module in (head.cls_convs[1], head.reg_convs[1], head.gfl_cls, head.gfl_reg):
        assert all(p.grad is None for p in module.parameters())
    assert distiller.method.cls_adapter.weight.grad.abs().sum() > 0
    assert distiller.method.reg_adapter.weight.grad.abs().sum() > 0
    student.zero_grad(set_to_none=True)


def test_student_branch_features_get_gradient(pair):
    student, teacher = pair
    distiller = distill(student, teacher)
    images = torch.randn(2, 3, *IMAGES_SHAPE)
    out_s = student.forward_train(images, targets(), branch_cut=1)
    for f in out_s.branches.cls_feats + out_s.branches.reg_feats:
        f.retain_grad()
    with torch.no_grad():
        out_t = teacher.forward_train(images, targets(), branch_cut=1)
    losses = distiller(out_s, out_t, targets(), IMAGES_SHAPE, list(student.strides))
    sum(losses.values()).backward()
    branches = out_s.branches.cls_feats + out_s.branches.reg_feats
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in branches)
    student.zero_grad(set_to_none=True)


def test_teacher_head_stays_out_of_the_distiller(pair):
    student, teacher = pair
    distiller = distill(student, teacher)
    assert distiller.teacher_head is teacher.head
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not teacher_ids & {id(p) for p in distiller.parameters()}
    assert set(distiller.state_dict()) == {
        "method.cls_adapter.weight",
        "method.cls_adapter.bias",
        "method.reg_adapter.weight",
        "method.reg_adapter.bias",
    }


@pytest.mark.parametrize("align_stats", [False, True])
def test_student_equal_to_teacher_mimics_exactly(pair, align_stats):
    """Same weights, identity adapters: the cross head is the teacher's head, losses ~0."""
    _, teacher = pair
    twin = copy.deepcopy(teacher).requires_grad_(True)  # eval: same BatchNorm statistics
    distiller = distill(twin, teacher, crosskd={"align_stats": align_stats})
    assert torch.equal(distiller.method.cls_adapter.weight[:, :, 0, 0], torch.eye(16))
    _, _, losses = run(distiller, twin, teacher)
    assert losses["loss_crosskd_qfl"].item() == pytest.approx(0.0, abs=1e-5)
    assert losses["loss_crosskd_kl"].item() == pytest.approx(0.0, abs=1e-5)


def test_normalisers_and_location_weights(pair):
    student, teacher = pair
    distiller = distill(student, teacher, crosskd={"weight_qfl": 2.0, "weight_kl": 3.0})
    out_s, out_t, _ = run(distiller, student, teacher)
    inputs = distiller.build_inputs(out_s, out_t, targets(), IMAGES_SHAPE, list(student.strides))
    method = distiller.method
    cross = method.cross_head(inputs)
    qfl = kd_quality_focal_loss(cross.flat_cls(), out_t.head.flat_cls(), 1.0)
    dims = cross.flat_box().shape[-1]
    kl = box_distribution_kl(
        cross.flat_box().reshape(-1, dims), out_t.head.flat_box().reshape(-1, dims), 1.0
    ).reshape(qfl.shape)
    scores = out_t.head.flat_cls().sigmoid().max(dim=-1).values
    num_pos = int((out_s.assign.gt_index >= 0).sum())
    assert num_pos > 0
    losses = method.prediction_losses(inputs)
    assert losses["loss_crosskd_qfl"].item() == pytest.approx(
        2.0 * qfl.sum().item() / num_pos, rel=1e-5
    )
    assert losses["loss_crosskd_kl"].item() == pytest.approx(
        3.0 * (scores * kl).sum().item() / scores.sum().item(), rel=1e-5
    )
    # weights scale each location's terms; the normalisers stay unweighted
    doubled = method.prediction_losses(inputs, torch.full_like(scores, 2.0))
    for name, value in losses.items():
        assert doubled[name].item() == pytest.approx(2 * value.item(), rel=1e-5)


@pytest.mark.parametrize(("cut", "resolved"), [(0, 0), (2, 2), (-2, 0)])
def test_cut_switch(pair, cut, resolved):
    """cut 0: FPN features through the whole teacher head (adapters 16 -> 24 channels);
    cut 2 = every block: only the teacher's output convs."""
    student, teacher = pair
    distiller = distill(student, teacher, crosskd={"cut": cut})
    assert distiller.branch_cut == resolved
    expected_in = 16 if resolved == 0 else 8
    assert distiller.method.cls_adapter.in_channels == expected_in
    _, _, losses = run(distiller, student, teacher)
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    student.zero_grad(set_to_none=True)


def test_crosskd_plus_pkd(pair):
    student, teacher = pair
    distiller = distill(student, teacher, method="crosskd+pkd", pkd={"weight": 6.0})
    assert distiller.adapters is not None  # PKD reads adapted FPN features
    _, _, losses = run(distiller, student, teacher)
    assert set(losses) == {"loss_crosskd_qfl", "loss_crosskd_kl", "loss_pkd"}
    assert losses["loss_pkd"] > 0


def test_fgd_plus_crosskd_adds_fgd_terms_to_the_same_cross_head_terms(pair):
    student, teacher = pair
    alone = distill(student, teacher, method="crosskd")
    both = distill(student, teacher, method="fgd+crosskd")
    both.method.load_state_dict(alone.method.state_dict(), strict=False)  # same adapters
    _, _, alone_losses = run(alone, student, teacher)
    _, _, losses = run(both, student, teacher)
    fgd_terms = {"loss_fgd_fg", "loss_fgd_bg", "loss_fgd_att", "loss_fgd_global"}
    assert set(losses) == {"loss_crosskd_qfl", "loss_crosskd_kl"} | fgd_terms
    for name in ("loss_crosskd_qfl", "loss_crosskd_kl"):
        torch.testing.assert_close(losses[name], alone_losses[name])
    assert all(torch.isfinite(losses[n]) and losses[n] > 0 for n in fgd_terms)
    # FGD's own modules (its global-context blocks) train with the method
    sum(losses.values()).backward()
    fgd_params = list(both.method.feature.parameters())
    assert fgd_params and any(p.grad is not None for p in fgd_params)
    assert all(p.grad is None for p in teacher.parameters())
    student.zero_grad(set_to_none=True)


def test_liaf_plus_crosskd_weights_the_cross_head_terms(pair):
    student, teacher = pair
    # a learnt weighting (lam > 0; the shipped default, lam 0, holds every weight at 1)
    distiller = distill(student, teacher, method="liaf+crosskd", liaf={"selector": {"lam": 0.5}})
    method = distiller.method
    assert isinstance(method.crosskd, CrossKD) and distiller.branch_cut == 1
    _, _, losses = run(distiller, student, teacher)
    assert {"loss_liaf_fg", "loss_crosskd_qfl", "loss_crosskd_kl"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    # the instance weights reach the cross-head terms: the selector learns from them
    (losses["loss_crosskd_qfl"] + losses["loss_crosskd_kl"]).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.selector.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    student.zero_grad(set_to_none=True)


def test_liaf_plus_crosskd_at_lam_zero_runs_crosskd_unweighted(pair):
    student, teacher = pair
    distiller = distill(student, teacher, method="liaf+crosskd")  # the default, lam 0
    method = distiller.method
    assert method.selector is None and "instances" not in distiller.needs
    out_s, out_t, losses = run(distiller, student, teacher)
    assert "loss_liaf_entropy" not in losses
    inputs = distiller.build_inputs(out_s, out_t, targets(), IMAGES_SHAPE, list(student.strides))
    plain = method.crosskd.prediction_losses(inputs)  # CrossKD alone, no location weights
    for name in ("loss_crosskd_qfl", "loss_crosskd_kl"):
        assert torch.equal(losses[name], plain[name])
    student.zero_grad(set_to_none=True)


def test_liaf_crosskd_location_weights_follow_assignment(pair):
    student, teacher = pair
    distiller = distill(student, teacher, method="liaf+crosskd")
    out_s, out_t, _ = run(distiller, student, teacher)
    inputs = distiller.build_inputs(out_s, out_t, targets(), IMAGES_SHAPE, list(student.strides))
    weights = torch.tensor([0.5, 2.0, 3.0])
    location = distiller.method._location_weights(inputs, weights)
    gt = out_s.assign.gt_index
    assert torch.equal(location[gt < 0], torch.ones(int((gt < 0).sum())))
    assert torch.equal(location[gt == 1], torch.full((int((gt == 1).sum()),), 2.0))


def test_clear_errors(pair):
    student, teacher = pair
    cfg = load_distill_config({"method": "crosskd", "teacher": TEACHER}, "x")
    with pytest.raises(ValueError, match="heads=HeadPair"):
        build_distiller(cfg, 16, 24, 5)
    distiller = distill(student, teacher)
    images = torch.randn(2, 3, *IMAGES_SHAPE)
    out_s = student.forward_train(images, targets())  # no branch_cut
    with torch.no_grad():
        out_t = teacher.forward_train(images, targets(), branch_cut=1)
    with pytest.raises(ValueError, match="branch_cut=1"):
        distiller(out_s, out_t, targets(), IMAGES_SHAPE, list(student.strides))
    other_classes = GFL(ModelConfig(width=8, fpn_channels=24, head_channels=16, **SMALL), 4)
    with pytest.raises(ValueError, match="must match"):
        CrossKD.from_heads(HeadPair(student.head, other_classes.head), -1)
    teacher.train()
    try:
        with pytest.raises(ValueError, match="eval mode"):
            run(distiller, student, teacher)
    finally:
        teacher.eval()
    student.zero_grad(set_to_none=True)
