"""The cooperative instance filter (selector objective `coop`, coop_selector.py): its
parts on hand-checked tensors, and a toy with a known answer where the teacher is wrong
on some instances that are also the easiest to imitate."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from liafkd.config import ConfigError
from liafkd.distill.base import DistillInputs
from liafkd.distill.config import load_distill_config
from liafkd.distill.coop_selector import (
    CoopLIAF,
    coop_view,
    dice_overlap,
    filter_kl,
    filtered_instance_losses,
    trust_target,
)
from liafkd.distill.fgd import instance_losses
from liafkd.distill.liaf import LIAF
from liafkd.distill.registry import build_method
from liafkd.models.outputs import AssignResult, HeadOutputs, InstanceState

TEACHER = {"config": "t.yaml", "checkpoint": "t.pt"}


def test_trust_target_is_the_normalised_sigmoid_of_the_lead():
    target = trust_target(torch.tensor([0.0, 0.0, 10.0]), tau=0.1)
    # sigmoid(0) = 0.5, sigmoid(100) = 1: [0.5, 0.5, 1] / 2
    assert torch.allclose(target, torch.tensor([0.25, 0.25, 0.5]), atol=1e-6)
    # bounded: however large one lead is, that instance gets at most 1 / (0.5 * n + 0.5)
    huge = trust_target(torch.tensor([0.0] * 9 + [1e6]), tau=0.1)
    assert float(huge.max()) == pytest.approx(1 / 5.5, rel=1e-5)


def test_dice_overlap_is_one_for_equal_maps_and_zero_for_disjoint_ones():
    same = torch.tensor([[[0.5, 0.5, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]]])
    apart = torch.tensor([[[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]]])
    assert float(dice_overlap(same)) == pytest.approx(1.0)
    assert float(dice_overlap(apart)) == pytest.approx(0.0)


def test_uniform_filter_gives_the_plain_instance_terms(make_inputs):
    inputs = make_inputs(channels=4)
    method = CoopLIAF(4, 2, lam=1.0, width=8)
    masks, errors = method.masks(inputs), method.level_errors(inputs)
    n = inputs.all_boxes().shape[0]
    uniform = torch.full((n, 49), 1 / 49)
    filtered = filtered_instance_losses(
        errors, masks, inputs.all_boxes(), uniform, inputs.strides, 1.0, inputs.batch_size
    )
    plain = instance_losses(errors, masks, inputs.batch_size)
    assert torch.allclose(filtered, plain, rtol=1e-5)


def test_filter_on_the_left_half_weighs_the_left_cells():
    """One 16x8 box on a stride-8 map covering cells x = 0, 1 (x0 = 0, x1 = 2 by FGD's
    rule, clipped to the map: cells 0..2). A filter that puts all its mass on the left
    half of the 7x7 grid weighs the cell at x = 0 (centre 4 px, left half) and not the
    cell at x = 1 (centre 12 px, right half)."""
    method = CoopLIAF(1, 1, lam=1.0, width=4)
    boxes = torch.tensor([[0.0, 0.0, 16.0, 8.0]])
    feats = [torch.zeros(1, 1, 1, 4)]
    inputs = DistillInputs(
        images_shape=(8, 32),
        targets=[{"boxes": boxes, "labels": torch.zeros(1, dtype=torch.int64)}],
        teacher_feats=feats,
        student_feats=feats,
        strides=[8],
    )
    masks = method.masks(inputs)
    errors = [torch.ones(1, 1, 4)]
    left = torch.zeros(7, 7)
    left[:, :3] = 1.0
    left = (left / left.sum()).reshape(1, 49)
    filtered = filtered_instance_losses(errors, masks, boxes, left, [8], 1.0, 1)
    mask = masks[0].instance[0, 0]  # the mask's cells
    # cell 0: u = 2 * 4 / 16 - 1 = -0.5 -> grid column 1.75 (left); cell 1: u = 0.5 -> 5.25
    # (right: 0); cell 2 (centre 20 px, outside the box): the border column, 0
    expected = mask[0] * 49 / 21 * 1.0
    assert float(filtered[0]) == pytest.approx(float(expected), rel=1e-5)


def test_the_selector_gets_no_gradient_from_the_loss_it_weights(make_inputs):
    inputs = make_inputs(channels=4)
    method = CoopLIAF(4, 2, lam=1.0, width=8)
    losses = method(inputs)
    losses["loss_liaf_fg"].backward(retain_graph=True)
    assert all(p.grad is None for p in method.selector.parameters())
    assert inputs.student_feats[0].grad is not None  # the student is taught
    (losses["loss_liaf_coop"] + losses["loss_liaf_coop_filter"]).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.selector.parameters())


# --- the toy with a known answer ---------------------------------------------------

NUM_IMAGES, PER_IMAGE, CHANNELS, CLASSES = 4, 4, 8, 2
BAD = {1, 6, 11, 12}  # instances the teacher is wrong on


def toy_inputs(seed: int) -> DistillInputs:
    """4 images 64x96, 4 boxes each. On the BAD instances the teacher is wrong: its
    features there are noise, its quality low (0.05) and its class score low; there
    the student already matches the teacher's features (the easiest instances to
    imitate). On the others the teacher is right (quality 0.8, class score high on the
    box's left half, where its features carry an evidence pattern) and the student is
    not there yet (quality 0.3)."""
    gen = torch.Generator().manual_seed(seed)
    strides = [8, 16]
    sizes = [(8, 12), (4, 6)]
    teacher = [torch.randn(NUM_IMAGES, CHANNELS, h, w, generator=gen) for h, w in sizes]
    student = [torch.randn(NUM_IMAGES, CHANNELS, h, w, generator=gen) for h, w in sizes]
    cls_teacher = [torch.full((NUM_IMAGES, CLASSES, h, w), -3.0) for h, w in sizes]
    cls_student = [torch.full((NUM_IMAGES, CLASSES, h, w), -1.0) for h, w in sizes]
    evidence = torch.randn(CHANNELS, 1, 1, generator=gen)  # what the teacher scores from
    targets, n = [], 0
    for b in range(NUM_IMAGES):
        boxes = []
        for k in range(PER_IMAGE):
            x0 = 4 + 22 * k + float(torch.randint(0, 3, (1,), generator=gen))
            y0 = 4 + float(torch.randint(0, 20, (1,), generator=gen))
            box = [x0, y0, x0 + 18, y0 + 30]
            boxes.append(box)
            for level, stride in enumerate(strides):
                xs = slice(int(box[0] // stride), int(box[2] // stride) + 1)
                ys = slice(int(box[1] // stride), int(box[3] // stride) + 1)
                mid = int((box[0] + box[2]) / 2 // stride)
                if n in BAD:
                    noise = torch.randn(CHANNELS, 1, 1, generator=gen) * 3
                    teacher[level][b, :, ys, xs] = noise
                    student[level][b, :, ys, xs] = noise + 0.01
                else:
                    cls_teacher[level][b, k % CLASSES, ys, xs.start : mid + 1] = 3.0
                    teacher[level][b, :, ys, xs.start : mid + 1] += 2 * evidence
            n += 1
        targets.append(
            {
                "boxes": torch.tensor(boxes),
                "labels": torch.arange(PER_IMAGE) % CLASSES,
                "image_id": b,
            }
        )
    bad = torch.tensor([i in BAD for i in range(n)])

    def state(quality: Tensor) -> InstanceState:
        return InstanceState(
            loss=torch.ones(n),
            quality=quality,
            num_pos=torch.ones(n, dtype=torch.int64),
            level_loss=torch.ones(n, 2) / 2,
        )

    dims = [torch.zeros(NUM_IMAGES, 16, h, w) for h, w in sizes]
    return DistillInputs(
        images_shape=(64, 96),
        targets=targets,
        teacher_feats=teacher,
        student_feats=[s.requires_grad_() for s in student],
        strides=strides,
        teacher_head=HeadOutputs(cls_teacher, dims),
        student_head=HeadOutputs(cls_student, dims),
        student_assign=AssignResult(torch.zeros(0, 2), torch.zeros(0), sizes, torch.zeros(0)),
        teacher_instances=state(torch.where(bad, 0.05, 0.8)),
        student_instances=state(torch.full((n,), 0.3)),
    )


def train_selector(method: LIAF, steps: int, selector_terms: tuple[str, ...]) -> Tensor:
    """Adam on the selector's parameters alone, a fresh toy batch each step (as in a
    run); returns the weights on an unseen batch."""
    optimizer = torch.optim.Adam(method.selector.parameters(), lr=0.01)
    for step in range(steps):
        losses = method(toy_inputs(step))
        optimizer.zero_grad()
        sum(losses[name] for name in selector_terms).backward()
        optimizer.step()
    method(toy_inputs(10_000))
    return method.weight_log.weights[-1]


def test_coop_moves_weight_off_the_instances_the_teacher_gets_wrong():
    torch.manual_seed(0)
    bad = torch.tensor([i in BAD for i in range(NUM_IMAGES * PER_IMAGE)])
    method = CoopLIAF(CHANNELS, 2, lam=1.0, width=16)
    method(toy_inputs(99))
    start = method.weight_log.weights[-1]
    assert torch.allclose(start, torch.ones_like(start))  # zero-initialised: uniform
    terms = ("loss_liaf_entropy", "loss_liaf_coop", "loss_liaf_coop_filter")
    weights = train_selector(method, 150, terms + ("loss_liaf_coop_diversity",))
    # the right way: off the wrong teacher (fixed point: 16 * 0.076 / 12.22 = 0.10 there,
    # and 16 * 0.993 / 12.22 = 1.30 on the others)
    assert float(weights[bad].max()) < 0.6
    assert float(weights[~bad].min()) > 0.8
    assert float(weights[~bad].mean()) > 1.15
    # neither collapsed onto one instance nor uniform: the good ones share the weight
    assert float(weights.max()) < 2 * float(weights[~bad].min())
    assert float(weights.std()) > 0.3


def test_joint_on_the_same_toy_moves_weight_onto_the_easiest_instances():
    """The contrast: trained on the loss it weights, the selector favours the instances
    the student imitates best, here exactly those the teacher gets wrong."""
    torch.manual_seed(0)
    bad = torch.tensor([i in BAD for i in range(NUM_IMAGES * PER_IMAGE)])
    method = LIAF(CHANNELS, 2, lam=0.5, objective="joint", width=16)
    weights = train_selector(method, 150, ("loss_liaf_fg", "loss_liaf_entropy"))
    assert float(weights[bad].mean()) > float(weights[~bad].mean())


def test_coop_filter_moves_toward_where_the_teacher_leads():
    """In the toy the teacher's class score is high on the left half of each good box
    (its target r puts more mass on the grid's left columns than on its right ones), so
    the filter, near uniform at the start, learns more mass on the left."""
    torch.manual_seed(0)
    method = CoopLIAF(CHANNELS, 2, lam=1.0, width=16)
    inputs = toy_inputs(10_000)
    view = coop_view(inputs, method.canonical_size, method.roi_size)
    good = torch.tensor([i not in BAD for i in range(view.levels.numel())])
    target = trust_target(view.lead_grid.flatten(1), method.target_tau)[good]

    def left_minus_right(maps: Tensor) -> float:
        grid = maps.reshape(-1, 7, 7)
        return float((grid[:, :, :3].sum(dim=(1, 2)) - grid[:, :, 4:].sum(dim=(1, 2))).mean())

    def filters() -> Tensor:
        return method.selector(view.teacher, view.student, view.signals).filters.detach()[good]

    before = filters()
    assert left_minus_right(target) > 0.08
    assert abs(left_minus_right(before)) < 0.05
    optimizer = torch.optim.Adam(method.selector.parameters(), lr=0.01)
    for step in range(150):
        losses = method(toy_inputs(step))
        optimizer.zero_grad()
        (losses["loss_liaf_coop_filter"] + losses["loss_liaf_coop_diversity"]).backward()
        optimizer.step()
    after = filters()
    assert left_minus_right(after) > left_minus_right(before) + 0.03
    assert float(filter_kl(after, target)) < 0.8 * float(filter_kl(before, target))


# --- config and registry -----------------------------------------------------------


def test_coop_is_built_from_the_config_as_its_own_class():
    block = {
        "method": "liaf",
        "teacher": TEACHER,
        "liaf": {"selector": {"objective": "coop", "lam": 1.0, "coop": {"units": 3}}},
    }
    method = build_method(load_distill_config(block, "exp.yaml"), 16, 5)
    assert isinstance(method, CoopLIAF)
    assert method.selector.units.shape[0] == 3
    assert method.needs == frozenset({"feats", "instances", "head"})


@pytest.mark.parametrize(
    "block, message",
    [
        ({"method": "liaf", "liaf": {"selector": {"objective": "coop"}}}, "lam 0"),
        (
            {"method": "liaf", "liaf": {"selector": {"lam": 0.5, "coop": {"units": 3}}}},
            "used by 'coop' only",
        ),
        (
            {"method": "liaf+ld", "liaf": {"selector": {"objective": "coop", "lam": 1.0}}},
            "method 'liaf' only",
        ),
        ({"method": "liaf", "liaf": {"selector": {"objective": "oracle"}}}, "teacher_corruption"),
    ],
)
def test_coop_and_oracle_misuse_is_refused(block, message):
    with pytest.raises(ConfigError, match=message):
        load_distill_config(block | {"teacher": TEACHER}, "exp.yaml")
