import math

import pytest
import torch
from distill_reference import channel_attention as ref_channel
from distill_reference import softmax
from distill_reference import spatial_attention as ref_spatial

from liafkd.distill.attention import (
    GlobalRelation,
    attention_loss,
    channel_attention,
    global_loss,
    spatial_attention,
)


def test_attention_maps_sum_to_cells_and_channels():
    feat = torch.randn(3, 5, 4, 6)
    a_sp = spatial_attention(feat, 0.5)
    a_ch = channel_attention(feat, 0.5)
    assert a_sp.shape == (3, 4, 6) and a_ch.shape == (3, 5)
    assert torch.allclose(a_sp.sum(dim=(1, 2)), torch.full((3,), 24.0))
    assert torch.allclose(a_ch.sum(dim=1), torch.full((3,), 5.0))


def test_spatial_attention_hand_value():
    # one channel, two cells with |F| = 0 and 1, tau = 0.5: softmax([0, 2]) * 2
    feat = torch.tensor([[[[0.0, -1.0]]]])
    a = spatial_attention(feat, 0.5)
    e2 = math.exp(2)
    assert a[0, 0].tolist() == pytest.approx([2 / (1 + e2), 2 * e2 / (1 + e2)])


def test_attention_maps_match_loops():
    feat = torch.randn(1, 3, 2, 3)
    nested = feat[0].tolist()
    assert spatial_attention(feat, 0.5)[0].tolist() == [
        pytest.approx(row) for row in ref_spatial(nested, 0.5)
    ]
    assert channel_attention(feat, 0.5)[0].tolist() == pytest.approx(ref_channel(nested, 0.5))


def test_attention_loss_golden():
    s, t = torch.randn(2, 3, 2, 3), torch.randn(2, 3, 2, 3)
    expected = 0.0
    for b in range(2):
        ss, ts = ref_spatial(s[b].tolist(), 0.5), ref_spatial(t[b].tolist(), 0.5)
        expected += sum(abs(ss[y][x] - ts[y][x]) for y in range(2) for x in range(3))
        sc, tc = ref_channel(s[b].tolist(), 0.5), ref_channel(t[b].tolist(), 0.5)
        expected += sum(abs(a - c) for a, c in zip(sc, tc, strict=True))
    assert attention_loss(s, t, 0.5).item() == pytest.approx(expected / 2, rel=1e-5)


def test_global_relation_starts_as_identity():
    block = GlobalRelation(4)
    feat = torch.randn(2, 4, 3, 3)
    assert torch.equal(block(feat), feat)


def _ref_gc(block: GlobalRelation, feat: list) -> list:
    """Loop GcBlock on one image [C][H][W]."""
    c, h, w = len(feat), len(feat[0]), len(feat[0][0])
    wm, bm = block.conv_mask.weight.flatten().tolist(), block.conv_mask.bias.item()
    logits = [sum(wm[k] * feat[k][y][x] for k in range(c)) + bm for y in range(h) for x in range(w)]
    probs = softmax(logits)
    ctx = [
        sum(probs[y * w + x] * feat[k][y][x] for y in range(h) for x in range(w)) for k in range(c)
    ]
    conv1, norm, _, conv2 = block.channel_add
    w1, b1 = conv1.weight.flatten(1).tolist(), conv1.bias.tolist()
    hidden = [sum(w1[p][k] * ctx[k] for k in range(c)) + b1[p] for p in range(len(b1))]
    mean = sum(hidden) / len(hidden)
    var = sum((v - mean) ** 2 for v in hidden) / len(hidden)
    gamma, beta = norm.weight.flatten().tolist(), norm.bias.flatten().tolist()
    hidden = [
        max(0.0, (v - mean) / math.sqrt(var + norm.eps) * g + bb)
        for v, g, bb in zip(hidden, gamma, beta, strict=True)
    ]
    w2, b2 = conv2.weight.flatten(1).tolist(), conv2.bias.tolist()
    add = [sum(w2[k][p] * hidden[p] for p in range(len(hidden))) + b2[k] for k in range(c)]
    return [[[feat[k][y][x] + add[k] for x in range(w)] for y in range(h)] for k in range(c)]


def test_global_loss_golden_with_trained_blocks():
    torch.manual_seed(0)
    bs, bt = GlobalRelation(4), GlobalRelation(4)
    for block in (bs, bt):
        torch.nn.init.normal_(block.channel_add[-1].weight)
        torch.nn.init.normal_(block.channel_add[-1].bias)
    s, t = torch.randn(2, 4, 2, 3), torch.randn(2, 4, 2, 3)
    expected = 0.0
    for b in range(2):
        os_, ot = _ref_gc(bs, s[b].tolist()), _ref_gc(bt, t[b].tolist())
        expected += sum(
            (os_[k][y][x] - ot[k][y][x]) ** 2 for k in range(4) for y in range(2) for x in range(3)
        )
    assert global_loss(s, t, bs, bt).item() == pytest.approx(expected / 2, rel=1e-5)
