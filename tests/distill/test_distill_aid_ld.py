import dataclasses
import math

import pytest
import torch
from distill_reference import focal_terms

from liafkd.distill.aid import AID, AIDInstance, teacher_trust_weights
from liafkd.distill.base import DistillInputs
from liafkd.distill.fgd import FGD
from liafkd.distill.ld import LocalizationDistillation
from liafkd.models.outputs import AssignResult, HeadOutputs


def test_aid_weights_lower_teacher_loss_more_weight():
    loss = torch.tensor([0.1, 2.0, 1.0])
    w = teacher_trust_weights(loss, torch.ones(3, dtype=torch.long), temperature=1.0)
    exps = [math.exp(-0.1), math.exp(-2.0), math.exp(-1.0)]
    assert w.tolist() == pytest.approx([3 * e / sum(exps) for e in exps])
    assert w[0] > w[2] > w[1]
    assert w.mean().item() == pytest.approx(1.0)


def test_aid_unassigned_instance_gets_neutral_loss():
    loss = torch.tensor([1.0, 0.0, 3.0])  # instance 1 has no assigned location
    w = teacher_trust_weights(loss, torch.tensor([2, 0, 1]), temperature=1.0)
    exps = [math.exp(-1.0), math.exp(-2.0), math.exp(-3.0)]
    assert w.tolist() == pytest.approx([3 * e / sum(exps) for e in exps])
    none = teacher_trust_weights(loss, torch.zeros(3, dtype=torch.long), 1.0)
    assert none.tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert teacher_trust_weights(torch.zeros(0), torch.zeros(0), 1.0).numel() == 0


def test_aid_instance_golden_fg(make_inputs):
    inputs = make_inputs(teacher_loss=[0.5, 1.5, 0.2])
    losses = AIDInstance(4, 2, alpha_fg=1.0, weight_temperature=2.0)(inputs)
    _, _, per_instance = focal_terms(inputs)
    exps = [math.exp(-v / 2.0) for v in (0.5, 1.5, 0.2)]
    weights = [3 * e / sum(exps) for e in exps]
    expected = sum(w * v for w, v in zip(weights, per_instance, strict=True))
    assert losses["loss_aid_fg"].item() == pytest.approx(expected, rel=1e-5)


def test_aid_instance_records_and_stats(make_inputs):
    method = AIDInstance(4, 2)
    method(make_inputs(teacher_loss=[0.5, 1.5, 0.2]))
    records = method.instance_records()
    assert [r["image"] for r in records] == [0, 0, 1]
    assert records[2]["box"] == [8.0, 8.0, 40.0, 24.0]
    assert records[2]["weight"] == max(r["weight"] for r in records)
    stats = method.stats()
    assert stats["weight_mean"] == pytest.approx(1.0)
    assert stats["num_instances"] == 3
    method.reset_stats()
    assert method.stats() == {}


@pytest.mark.parametrize("method", [AID, AIDInstance])
def test_aid_without_instances(make_inputs, method):
    losses = method(4, 2)(make_inputs(boxes_per_image=[[], []], teacher_loss=[]))
    assert losses["loss_aid_fg"].item() == 0.0
    assert all(torch.isfinite(v) for v in losses.values())


def _level_fg(inputs, level):
    """FGD's fg term of one level alone (the loop reference on that level)."""
    one_level = dataclasses.replace(
        inputs,
        teacher_feats=inputs.teacher_feats[level : level + 1],
        student_feats=inputs.student_feats[level : level + 1],
        strides=inputs.strides[level : level + 1],
    )
    return focal_terms(one_level)[0]


def test_aid_as_authored_per_level_unnormalised_weights(make_inputs):
    # the fixture puts each instance's teacher loss on level 0, one location each:
    # L_T,0 = (0.5 + 1.5 + 0.2) / 3 positives, L_T,1 = 0
    inputs = make_inputs(teacher_loss=[0.5, 1.5, 0.2])
    losses = AID(4, 2, alpha_fg=1.0)(inputs)
    w0, w1 = math.exp(-0.1 * 2.2 / 3), 1.0
    expected = w0 * _level_fg(inputs, 0) + w1 * _level_fg(inputs, 1)
    assert losses["loss_aid_fg"].item() == pytest.approx(expected, rel=1e-5)
    # not normalised: weights stay in (0, 1], so AID is FGD's fg damped where the teacher errs
    fgd = FGD(4, 2, alpha_fg=1.0)(inputs)["loss_fgd_fg"].item()
    assert losses["loss_aid_fg"].item() < fgd
    perfect_teacher = make_inputs(teacher_loss=[0.0, 0.0, 0.0])
    assert AID(4, 2, alpha_fg=1.0)(perfect_teacher)["loss_aid_fg"].item() == pytest.approx(
        FGD(4, 2, alpha_fg=1.0)(perfect_teacher)["loss_fgd_fg"].item(), rel=1e-6
    )
    stats = AID(4, 2)
    stats(inputs)
    assert stats.stats()["weight_max"] <= 1.0
    assert stats.stats()["weight_min"] >= w0 - 1e-6


def _ld_inputs(student_box, teacher_box, cls, gt_index):
    """One image, one level of 1x2 locations."""
    feat = torch.zeros(1, 1, 1, 2)
    return DistillInputs(
        images_shape=(8, 16),
        targets=[{"boxes": torch.tensor([[0.0, 0.0, 8.0, 8.0]]), "labels": torch.tensor([0])}],
        teacher_feats=[feat],
        student_feats=[feat],
        strides=[8],
        teacher_head=HeadOutputs([cls.clone()], [teacher_box]),
        student_head=HeadOutputs([cls], [student_box]),
        student_assign=AssignResult(
            points=torch.tensor([[4.0, 4.0], [12.0, 4.0]]),
            strides=torch.tensor([8, 8]),
            level_sizes=[(1, 2)],
            gt_index=torch.tensor([gt_index]),
        ),
    )


def test_ld_golden_value_tiny_distribution():
    temperature = 2.0
    # reg_max = 1: two bins per edge. Teacher: uniform; student: softmax(s / T) = [0.8, 0.2].
    student = torch.zeros(1, 8, 1, 2)
    s_logits = torch.tensor([math.log(0.8), math.log(0.2)]) * temperature
    student[0, :, 0, 0] = s_logits.repeat(4)
    student[0, :, 0, 1] = torch.tensor([9.0, -9.0]).repeat(4)  # background: must not count
    teacher = torch.zeros(1, 8, 1, 2)
    cls = torch.tensor([[[[math.log(3.0), 0.0]]]])  # sigmoid(log 3) = 0.75 at the positive
    inputs = _ld_inputs(student.requires_grad_(), teacher, cls, [0, -1])
    kl = 0.5 * math.log(0.5 / 0.8) + 0.5 * math.log(0.5 / 0.2)
    per_edge = kl / 2 * temperature**2  # mean over 2 bins, times T^2
    plain = LocalizationDistillation(weight=0.25, temperature=temperature, score_weighting=False)
    assert plain(inputs)["loss_ld"].item() == pytest.approx(0.25 * 4 * per_edge / 4, rel=1e-5)
    scored = LocalizationDistillation(weight=0.25, temperature=temperature)
    assert scored(inputs)["loss_ld"].item() == pytest.approx(0.25 * 0.75 * per_edge, rel=1e-5)
    weights = torch.tensor([[3.0, 100.0]])
    assert plain.loss(inputs, weights).item() == pytest.approx(3 * 0.25 * per_edge, rel=1e-5)


def test_ld_zero_when_distributions_match_and_no_positive():
    box = torch.randn(1, 8, 1, 2)
    cls = torch.zeros(1, 1, 1, 2)
    ld = LocalizationDistillation()
    assert ld(_ld_inputs(box.clone(), box, cls, [0, 1]))["loss_ld"].item() == pytest.approx(
        0, abs=1e-6
    )
    other = torch.randn(1, 8, 1, 2)
    assert ld(_ld_inputs(box, other, cls, [-1, -1]))["loss_ld"].item() == 0.0


def test_ld_rejects_plain_distances():
    inputs = _ld_inputs(
        torch.zeros(1, 4, 1, 2), torch.zeros(1, 4, 1, 2), torch.zeros(1, 1, 1, 2), [0, -1]
    )
    with pytest.raises(ValueError, match="reg_max"):
        LocalizationDistillation()(inputs)


def test_ld_gradient_only_to_student(make_inputs):
    inputs = make_inputs()
    LocalizationDistillation()(inputs)["loss_ld"].backward()
    assert inputs.student_head.box_dists[0].grad.abs().sum() > 0
    assert inputs.teacher_head.box_dists[0].grad is None
