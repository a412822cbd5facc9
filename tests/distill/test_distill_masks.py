import pytest
import torch
from distill_reference import cell_mask, fgd_mask
from hypothesis import given, settings
from hypothesis import strategies as st

from liafkd.distill.masks import box_cell_ranges, instance_masks, level_masks


def test_box_cell_ranges_by_cell_centre():
    boxes = torch.tensor(
        [
            [0.0, 0.0, 16.0, 16.0],  # centres 4 and 12 inside -> cells 0, 1
            [4.0, 4.0, 12.0, 12.0],  # centre 4 inside, 12 excluded (half-open) -> cell 0
            [5.0, 9.0, 6.0, 10.0],  # no centre inside -> the cell of its centre (0, 1)
            [30.0, 0.0, 90.0, 8.0],  # beyond the grid -> clipped
        ]
    )
    x0, x1, y0, y1 = box_cell_ranges(boxes, stride=8, height=4, width=6)
    assert x0.tolist() == [0, 0, 0, 4]
    assert x1.tolist() == [2, 1, 1, 6]
    assert y0.tolist() == [0, 0, 1, 0]
    assert y1.tolist() == [2, 1, 2, 1]


def test_scale_normalised_masks_hand_values():
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0], [20.0, 4.0, 44.0, 28.0]])
    masks = instance_masks(boxes, stride=8, height=4, width=6)
    # box 0: 2x2 cells -> 1/4 each; box 1: cell centres 20, 28, 36 in [20, 44) (columns
    # 2..4) and 4, 12, 20 in [4, 28) (rows 0..2) -> 3x3 cells of 1/9
    assert masks[0, :2, :2].tolist() == [[0.25, 0.25], [0.25, 0.25]]
    assert masks[0].sum() == pytest.approx(1.0)
    assert torch.allclose(masks[1, 0:3, 2:5], torch.full((3, 3), 1 / 9))
    assert masks[1].count_nonzero() == 9
    assert masks.sum(dim=(1, 2)).tolist() == pytest.approx([1.0, 1.0])


def test_tiny_box_covers_one_cell():
    masks = instance_masks(torch.tensor([[17.0, 1.0, 18.0, 2.0]]), stride=16, height=2, width=3)
    assert masks.count_nonzero() == 1
    assert masks[0, 0, 1] == 1.0


def test_fg_is_max_and_bg_normalised():
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0], [0.0, 0.0, 8.0, 8.0], [8.0, 8.0, 40.0, 24.0]])
    image_index = torch.tensor([0, 0, 1])
    m = level_masks(boxes, image_index, batch_size=2, stride=8, height=4, width=6)
    # image 0: the small box gives 1 at (0, 0), the larger 1/4 on the rest of its 2x2
    assert m.fg[0, 0, 0] == 1.0
    assert m.fg[0, 1, 1] == 0.25
    assert m.fg[0].count_nonzero() == 4
    assert m.bg[0].sum() == pytest.approx(1.0)
    assert (m.bg[0][m.fg[0] > 0] == 0).all()
    assert torch.allclose(m.bg[0][m.fg[0] == 0], torch.tensor(1 / 20))
    # image 1: rows 1..2, columns 1..4 -> 8 cells of 1/8
    assert torch.allclose(m.fg[1][m.fg[1] > 0], torch.tensor(1 / 8))
    assert m.fg[1].count_nonzero() == 8
    assert m.bg[1].sum() == pytest.approx(1.0)


def test_image_without_instances():
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    m = level_masks(boxes, torch.tensor([1]), batch_size=2, stride=8, height=4, width=6)
    assert (m.fg[0] == 0).all()
    assert torch.allclose(m.bg[0], torch.tensor(1 / 24))
    empty = level_masks(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 1, 8, 4, 6)
    assert empty.instance.shape == (0, 4, 6)
    assert (empty.fg == 0).all() and empty.bg.sum() == pytest.approx(1.0)


def test_gaussian_masks_sum_to_one_inside_box_peak_at_centre():
    boxes = torch.tensor([[0.0, 0.0, 48.0, 32.0]])
    masks = instance_masks(boxes, stride=8, height=4, width=6, gaussian=True)
    assert masks.sum() == pytest.approx(1.0)
    assert masks[0, 1:3, 2:4].min() == masks[0].max()
    assert masks[0, 0, 0] < masks[0, 1, 2]


@settings(max_examples=60, deadline=None)
@given(
    x1=st.floats(0, 60),
    y1=st.floats(0, 40),
    w=st.floats(0.5, 60),
    h=st.floats(0.5, 40),
    stride=st.sampled_from([4, 8, 16]),
)
def test_masks_match_loop_reference(x1, y1, w, h, stride):
    height, width = 48 // stride, 64 // stride
    box = [x1, y1, min(x1 + w, 64.0), min(y1 + h, 48.0)]
    got = instance_masks(torch.tensor([box]), stride, height, width)[0]
    expected = torch.tensor(cell_mask(box, stride, height, width))
    assert torch.allclose(got, expected, atol=1e-6)


# FGD's official rule (mask_rule: fgd), by hand. Image 32x48; two boxes of one image:
#   A = (4, 4, 28, 10), B = (24, 16, 32, 32).
# Stride 8, grid 4x6 (scale 6/48 = 4/32 = 1/8):
#   A: x' 0.5..3.5 -> columns floor 0 .. ceil 4 (5), y' 0.5..1.25 -> rows 0 .. 2 (3): 1/15
#   B: x' 3..4 -> columns 3..4 (2), y' 2..4 -> rows 2..4 (3), clipped to 2..3: 1/6 each,
#      its mask sums to 4/6 (the area counts the row beyond the grid, as FGD's does)
#   fg = max: 1/6 where B covers (rows 2..3, columns 3..4), 1/15 on the rest of A;
#   bg: the 7 cells neither covers (column 5 of rows 0..2, columns 0..2 and 5 of row 3).
# Stride 16, grid 2x3 (scale 1/16):
#   A: x' 0.25..1.75 -> columns 0..2 (3), y' 0.25..0.625 -> rows 0..1 (2): 1/6
#   B: x' 1.5..2 -> columns 1..2 (2), y' 1..2 -> rows 1..2 (2), clipped to row 1: 1/4
#   every cell is covered: bg is 0 everywhere.
FGD_BOXES = torch.tensor([[4.0, 4.0, 28.0, 10.0], [24.0, 16.0, 32.0, 32.0]])
A, B = 1 / 15, 1 / 6


def _fgd_level(stride: int, height: int, width: int):
    return level_masks(
        FGD_BOXES,
        torch.tensor([0, 0]),
        batch_size=1,
        stride=stride,
        height=height,
        width=width,
        rule="fgd",
        image_shape=(32, 48),
    )


def test_fgd_rule_golden_two_boxes_stride_8():
    m = _fgd_level(8, 4, 6)
    expected_fg = torch.tensor(
        [
            [A, A, A, A, A, 0],
            [A, A, A, A, A, 0],
            [A, A, A, B, B, 0],
            [0, 0, 0, B, B, 0],
        ]
    )
    assert torch.allclose(m.fg[0], expected_fg)
    expected_bg = (expected_fg == 0).float() / 7
    assert torch.allclose(m.bg[0], expected_bg)
    assert m.instance.sum(dim=(1, 2)).tolist() == pytest.approx([1.0, 4 / 6])
    assert torch.allclose(m.instance[1][m.instance[1] > 0], torch.tensor(1 / 6))


def test_fgd_rule_golden_two_boxes_stride_16():
    m = _fgd_level(16, 2, 3)
    expected_fg = torch.tensor([[1 / 6, 1 / 6, 1 / 6], [1 / 6, 1 / 4, 1 / 4]])
    assert torch.allclose(m.fg[0], expected_fg)
    assert (m.bg == 0).all()  # every cell is foreground


def test_center_rule_differs_on_the_same_boxes():
    center = level_masks(FGD_BOXES, torch.tensor([0, 0]), 1, 8, 4, 6, rule="center")
    # A's extent holds cell centres x = 4, 12, 20 and y = 4 only: 3 cells of 1/3
    assert torch.allclose(center.instance[0][center.instance[0] > 0], torch.tensor(1 / 3))
    assert center.instance[0].count_nonzero() == 3
    with pytest.raises(ValueError, match="image shape"):
        level_masks(FGD_BOXES, torch.tensor([0, 0]), 1, 8, 4, 6, rule="fgd")


def _eighths(low: float, high: float) -> st.SearchStrategy[float]:
    """Multiples of 1/8: exact in float32 and float64, so floor/ceil agree."""
    return st.integers(int(low * 8), int(high * 8)).map(lambda v: v / 8)


@settings(max_examples=60, deadline=None)
@given(
    x1=_eighths(0, 60),
    y1=_eighths(0, 40),
    w=_eighths(0.5, 60),
    h=_eighths(0.5, 40),
    stride=st.sampled_from([4, 8, 16]),
)
def test_fgd_rule_matches_loop_reference(x1, y1, w, h, stride):
    height, width = 48 // stride, 64 // stride
    box = [x1, y1, min(x1 + w, 64.0), min(y1 + h, 48.0)]
    got = instance_masks(
        torch.tensor([box]), stride, height, width, rule="fgd", image_shape=(48, 64)
    )[0]
    expected = torch.tensor(fgd_mask(box, (48, 64), height, width))
    assert torch.allclose(got, expected, atol=1e-6)
