import pytest
import torch
from distill_reference import cell_mask
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
