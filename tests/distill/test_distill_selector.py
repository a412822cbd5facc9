import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from liafkd.distill.fgd import FocalImitation, build_level_masks, instance_losses
from liafkd.distill.selector import (
    NUM_SIGNALS,
    InstanceSelector,
    alignment_scores,
    assign_fpn_levels,
    build_descriptors,
    entropy_term,
    grad_reverse,
    instance_weights,
    kl_to_target,
    listwise_alignment_loss,
    roi_descriptors,
)


@settings(max_examples=50, deadline=None)
@given(
    logits=st.lists(st.floats(-30, 30), min_size=1, max_size=40),
    lam=st.floats(0, 1),
    tau=st.floats(0.1, 5),
)
def test_weights_average_one_never_below_one_minus_lam(logits, lam, tau):
    w = instance_weights(torch.tensor(logits, dtype=torch.float64), lam, tau)
    assert w.mean().item() == pytest.approx(1.0, abs=1e-9)
    assert w.min().item() >= 1 - lam - 1e-12


def test_weights_hand_value():
    w = instance_weights(torch.tensor([0.0, math.log(3.0)]), lam=0.5, tau_w=1.0)
    assert w.tolist() == pytest.approx([0.5 + 0.5 * 2 * 0.25, 0.5 + 0.5 * 2 * 0.75])


def test_gradient_reversal_flips_sign():
    z = torch.tensor([0.3, -1.0, 2.0], requires_grad=True)
    losses = torch.tensor([1.0, 2.0, 5.0])
    (instance_weights(z, 0.5, 1.0) * losses).sum().backward()
    plain = z.grad.clone()
    z.grad = None
    (instance_weights(grad_reverse(z, 2.0), 0.5, 1.0) * losses).sum().backward()
    assert torch.allclose(z.grad, -2.0 * plain)
    assert torch.equal(grad_reverse(z, 1.0), z)


def test_entropy_term_known_distribution():
    probs = [0.5, 0.25, 0.25]
    z = torch.log(torch.tensor(probs)) * 2.0  # tau_w = 2 undoes the factor
    expected = sum(p * math.log(p) for p in probs)  # -1.0397
    assert entropy_term(z, 2.0).item() == pytest.approx(expected, rel=1e-6)
    assert entropy_term(torch.zeros(4), 1.0).item() == pytest.approx(-math.log(4))


STRIDES = [8, 16, 32, 64, 128]
COCO_INPUT = (800, 1333)


def _square_boxes(sides: list[float]) -> torch.Tensor:
    side = torch.tensor(sides)
    return torch.stack([torch.zeros_like(side), torch.zeros_like(side), side, side], dim=1)


def test_fpn_level_mapping():
    boxes = _square_boxes([50.0, 224.0, 448.0, 2000.0])
    assert assign_fpn_levels(boxes, STRIDES, COCO_INPUT).tolist() == [0, 1, 2, 4]
    assert assign_fpn_levels(boxes, STRIDES, COCO_INPUT, canonical_size=56).tolist() == [
        0,
        3,
        4,
        4,
    ]


def test_fpn_level_mapping_scales_with_the_input_size():
    # the same scene at 1/4 of the side: every box keeps its level
    boxes = _square_boxes([50.0, 224.0, 448.0, 2000.0])
    small = assign_fpn_levels(boxes / 4, STRIDES, (200, 333.25))
    assert small.tolist() == assign_fpn_levels(boxes, STRIDES, COCO_INPUT).tolist()
    # synthetic 192x320 inputs with objects of 12-100 pixels: no longer all on P3
    synthetic = assign_fpn_levels(_square_boxes([12.0, 30.0, 60.0, 100.0]), STRIDES, (192, 320))
    assert synthetic.tolist() == [0, 0, 1, 1]
    assert synthetic.unique().numel() > 1


def test_roi_descriptor_of_linear_ramp():
    # channel 0 holds the column index, channel 1 the row index: RoIAlign (aligned) of a
    # linear map averages to its value at the box centre, (centre / stride - 0.5).
    ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(10.0), indexing="ij")
    feat = torch.stack([xs, ys])[None]
    boxes = torch.tensor([[16.0, 8.0, 48.0, 24.0]])
    desc = roi_descriptors([feat], boxes, torch.tensor([0]), torch.tensor([0]), [8])
    assert desc[0].tolist() == pytest.approx([3.5, 1.5], abs=1e-5)


def test_descriptors_and_zero_init_selector(make_inputs):
    inputs = make_inputs()
    desc = build_descriptors(inputs)
    assert desc.teacher.shape == (3, 4) and desc.signals.shape == (3, NUM_SIGNALS)
    assert not desc.teacher.requires_grad and not desc.student.requires_grad
    # box 1 of image 0 is 24 x 24 in a 32 x 48 image; every box spans a third of the
    # image or more, so the input-scaled level mapping puts them on the coarser level
    assert desc.signals[1, 5].item() == pytest.approx(math.log(24 * 24 / (32 * 48)))
    assert desc.signals[1, 6].item() == pytest.approx(0.0)
    assert desc.signals[:, 7].tolist() == [1.0, 1.0, 1.0]
    assert desc.signals[:, 4].tolist() == pytest.approx(
        torch.log1p(inputs.teacher_instances.loss).tolist()
    )
    selector = InstanceSelector(4, width=8)
    logits = selector(desc)
    assert logits.tolist() == [0.0, 0.0, 0.0]
    assert instance_weights(logits, 0.5, 1.0).tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_alignment_scores_match_autograd(make_inputs):
    # r_i = <dL_det/dF_S, dL_fg_i/dF_S>: positive when imitating i also lowers L_det
    inputs = make_inputs()
    gen = torch.Generator().manual_seed(1)
    inputs.det_grads = [torch.randn(f.shape, generator=gen) for f in inputs.student_feats]
    masks = build_level_masks(inputs, gaussian=False)
    fast = alignment_scores(inputs, masks, temperature=0.5)
    per_instance = instance_losses(
        FocalImitation(4, 2, use_global=False).level_errors(inputs), masks, inputs.batch_size
    )
    expected = []
    for i in range(per_instance.numel()):
        grads = torch.autograd.grad(per_instance[i], inputs.student_feats, retain_graph=True)
        expected.append(sum((g * d).sum() for g, d in zip(inputs.det_grads, grads, strict=True)))
    assert fast.tolist() == pytest.approx(torch.stack(expected).tolist(), rel=1e-4, abs=1e-7)


def test_listwise_alignment_loss():
    scores = torch.tensor([1.0, 3.0, -2.0])
    target_logits = (scores - scores.mean()) / scores.std()
    assert listwise_alignment_loss(target_logits, scores, 1.0, 1.0).item() == pytest.approx(
        0, abs=1e-6
    )
    z = torch.zeros(3, requires_grad=True)
    loss = listwise_alignment_loss(z, scores, 1.0, 1.0)
    loss.backward()
    assert loss.item() > 0
    assert z.grad.argmin().item() == 1  # descent raises the best-aligned instance's logit
    assert listwise_alignment_loss(torch.zeros(1), torch.ones(1), 1.0, 1.0).item() == 0.0


def test_kl_to_target_hand_value():
    target = torch.tensor([0.25, 0.75, 0.0])
    # p = softmax(0) = 1/3 each: KL = 0.25 log(0.75) + 0.75 log(2.25); zero-mass entries add 0
    expected = 0.25 * math.log(0.25 * 3) + 0.75 * math.log(0.75 * 3)
    assert kl_to_target(torch.zeros(3), target, 1.0).item() == pytest.approx(expected, rel=1e-6)
    logits = torch.log(torch.tensor([0.25, 0.75, 1e-9])) * 2.0
    assert kl_to_target(logits, target, 2.0).item() == pytest.approx(0.0, abs=1e-6)
