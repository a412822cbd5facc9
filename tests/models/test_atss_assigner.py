import torch

from liafkd.models.assigner import atss_assign, make_points, square_anchors


def test_points_are_cell_centres_row_major():
    points, strides = make_points([(2, 3), (1, 1)], [8, 16])
    assert points.tolist() == [
        [4.0, 4.0], [12.0, 4.0], [20.0, 4.0], [4.0, 12.0], [12.0, 12.0], [20.0, 12.0],
        [8.0, 8.0],
    ]  # fmt: skip
    assert strides.tolist() == [8.0] * 6 + [16.0]


def test_square_anchors():
    anchors = square_anchors(torch.tensor([[12.0, 4.0]]), torch.tensor([8.0]), anchor_scale=2)
    assert anchors.tolist() == [[4.0, -4.0, 20.0, 12.0]]


def two_level_grid() -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    # level A: stride 8, 4x4 (points at 4, 12, 20, 28); level B: stride 16, 2x2 (8, 24)
    points, strides = make_points([(4, 4), (2, 2)], [8, 16])
    return points, strides, [16, 4]


def test_atss_one_gt_two_levels_hand_checked():
    # GT [2, 0, 22, 14], centre (12, 7), area 280; anchor_scale 2 (16 px / 32 px squares).
    # topk 2 nearest per level:
    #   A: (12,4) d=3 -> anchor [4,-4,20,12], inter 16*12=192, IoU 192/344 = 0.558140
    #      (12,12) d=5 -> anchor [4,4,20,20], inter 16*10=160, IoU 160/376 = 0.425532
    #   B: (8,8) d=4.12 -> anchor [-8,-8,24,24] holds the GT, IoU 280/1024 = 0.273438
    #      (24,8) d=12.04 -> anchor [8,-8,40,24], inter 14*14=196, IoU 196/1108 = 0.176895
    # mean 0.358501, unbiased std 0.167895 -> threshold 0.526396: only A (12,4) passes,
    # and its point lies inside the GT. It is location 1 (row 0, column 1 of level A).
    points, strides, counts = two_level_grid()
    gt = torch.tensor([[2.0, 0.0, 22.0, 14.0]])
    assigned = atss_assign(points, strides, counts, gt, topk=2, anchor_scale=2)
    expected = torch.full((20,), -1)
    expected[1] = 0
    assert assigned.tolist() == expected.tolist()


def test_atss_shared_location_goes_to_highest_iou():
    # one level, stride 8, 4x4, anchor_scale 2, topk 1: a single candidate per GT, so the
    # threshold is its own IoU (std 0). Both GTs' nearest point is (12, 12), location 5,
    # whose anchor [4,4,20,20] has IoU 1 with GT [4,4,20,20] and 100/256 with [8,8,18,18].
    points, strides = make_points([(4, 4)], [8])
    big = [4.0, 4.0, 20.0, 20.0]
    small = [8.0, 8.0, 18.0, 18.0]
    for gts, winner in (([big, small], 0), ([small, big], 1)):
        assigned = atss_assign(points, strides, [16], torch.tensor(gts), topk=1, anchor_scale=2)
        expected = torch.full((16,), -1)
        expected[5] = winner
        assert assigned.tolist() == expected.tolist()


def test_atss_no_gt_is_all_background():
    points, strides, counts = two_level_grid()
    assigned = atss_assign(points, strides, counts, torch.zeros(0, 4))
    assert assigned.dtype == torch.long and (assigned == -1).all()


def test_atss_gt_outside_every_point_gets_nothing():
    points, strides, counts = two_level_grid()
    assigned = atss_assign(points, strides, counts, torch.tensor([[100.0, 100.0, 120.0, 110.0]]))
    assert (assigned == -1).all()


def test_atss_default_settings_positives_lie_inside_their_gt():
    points, strides = make_points([(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)], [8, 16, 32, 64, 128])
    counts = [256, 64, 16, 4, 1]
    gts = torch.tensor([[10.0, 20.0, 60.0, 90.0], [70.0, 70.0, 126.0, 100.0], [0, 0, 128, 128]])
    assigned = atss_assign(points, strides, counts, gts)
    for gt_idx, box in enumerate(gts):
        inside = points[assigned == gt_idx]
        assert len(inside) > 0
        assert ((inside > box[:2]) & (inside < box[2:])).all()
