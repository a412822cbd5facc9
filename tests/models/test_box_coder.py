import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.ops import box_iou

from liafkd.models.box_coder import (
    aligned_box_iou,
    boxes_to_distances,
    decode_boxes,
    distances_to_boxes,
    encode_distance_targets,
    integral,
)

REG_MAX = 16
coord = st.floats(min_value=-500, max_value=500, allow_nan=False)
distance = st.floats(min_value=0.0, max_value=REG_MAX - 0.1, allow_nan=False)
stride = st.sampled_from([8, 16, 32, 64, 128])


def two_hot_logits(distances: torch.Tensor, reg_max: int) -> torch.Tensor:
    """Logits whose softmax puts (1 - frac) on floor(d) and frac on floor(d) + 1."""
    left = distances.floor().long().clamp(max=reg_max - 1)
    frac = distances - left
    probs = torch.zeros(*distances.shape, reg_max + 1, dtype=torch.float64)
    probs.scatter_(-1, left[..., None], (1 - frac)[..., None])
    probs.scatter_add_(-1, (left + 1)[..., None], frac[..., None])
    return probs.clamp(min=1e-30).log().reshape(*distances.shape[:-1], -1)


def test_distances_hand_checked():
    points = torch.tensor([[10.0, 20.0]])
    boxes = torch.tensor([[4.0, 15.0, 30.0, 21.0]])
    assert boxes_to_distances(points, boxes).tolist() == [[6.0, 5.0, 20.0, 1.0]]
    assert distances_to_boxes(points, torch.tensor([[6.0, 5.0, 20.0, 1.0]])).tolist() == [
        [4.0, 15.0, 30.0, 21.0]
    ]


def test_encode_clamps_to_last_bin_minus_eps():
    points = torch.tensor([[100.0, 100.0]])
    boxes = torch.tensor([[0.0, 99.0, 101.0, 300.0]])  # left 100 px = 12.5 strides of 8
    targets = encode_distance_targets(points, boxes, torch.tensor([8.0]), reg_max=4)
    assert torch.allclose(targets, torch.tensor([[3.9, 0.125, 0.125, 3.9]]))


def test_integral_uniform_is_midpoint():
    # a uniform distribution over bins 0..16 has expectation 8 on every side
    assert torch.allclose(integral(torch.zeros(3, 4 * 17), 16), torch.full((3, 4), 8.0))


@settings(max_examples=60, deadline=None)
@given(x=coord, y=coord, dists=st.lists(distance, min_size=4, max_size=4), s=stride)
def test_encode_decode_round_trip(x, y, dists, s):
    points = torch.tensor([[x, y]], dtype=torch.float64)
    strides = torch.tensor([float(s)], dtype=torch.float64)
    stride_distances = torch.tensor([dists], dtype=torch.float64)
    boxes = distances_to_boxes(points, stride_distances * s)
    encoded = encode_distance_targets(points, boxes, strides, REG_MAX)
    assert torch.allclose(encoded, stride_distances, atol=1e-6)
    logits = two_hot_logits(encoded, REG_MAX)
    assert torch.allclose(integral(logits, REG_MAX), stride_distances, atol=1e-6)
    assert torch.allclose(decode_boxes(points, logits, strides, REG_MAX), boxes, atol=1e-4)


box = st.tuples(coord, coord, st.floats(0.5, 300), st.floats(0.5, 300))


@settings(max_examples=60, deadline=None)
@given(a=box, b=box)
def test_aligned_iou_matches_torchvision(a, b):
    boxes_a = torch.tensor([[a[0], a[1], a[0] + a[2], a[1] + a[3]]], dtype=torch.float64)
    boxes_b = torch.tensor([[b[0], b[1], b[0] + b[2], b[1] + b[3]]], dtype=torch.float64)
    expected = box_iou(boxes_a, boxes_b)[0, 0]
    assert math.isclose(aligned_box_iou(boxes_a, boxes_b)[0].item(), expected.item(), abs_tol=1e-9)
