"""Independent reference computations with explicit loops over plain Python floats."""

from __future__ import annotations

import math


def _axis_cells(lo, hi, stride, size):
    cells = [i for i in range(size) if lo <= (i + 0.5) * stride < hi]
    return cells or [min(int(((lo + hi) / 2) // stride), size - 1)]


def cell_mask(box, stride, height, width):
    """Normalised box mask: cells whose centre lies in [x1, x2) x [y1, y2); along an axis
    where no cell centre falls inside, the cell holding the box's centre."""
    x1, y1, x2, y2 = box
    cols = _axis_cells(x1, x2, stride, width)
    rows = _axis_cells(y1, y2, stride, height)
    mask = [[0.0] * width for _ in range(height)]
    for y in rows:
        for x in cols:
            mask[y][x] = 1.0 / (len(rows) * len(cols))
    return mask


def softmax(values):
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def spatial_attention(feat, tau):
    """feat: nested list [C][H][W] -> [H][W]."""
    c, h, w = len(feat), len(feat[0]), len(feat[0][0])
    energy = [
        sum(abs(feat[k][y][x]) for k in range(c)) / c / tau for y in range(h) for x in range(w)
    ]
    probs = softmax(energy)
    return [[h * w * probs[y * w + x] for x in range(w)] for y in range(h)]


def channel_attention(feat, tau):
    c, h, w = len(feat), len(feat[0]), len(feat[0][0])
    energy = [
        sum(abs(feat[k][y][x]) for y in range(h) for x in range(w)) / (h * w) / tau
        for k in range(c)
    ]
    return [c * p for p in softmax(energy)]


def weighted_error(student, teacher, tau):
    """[H][W] A_sp^T(y,x) * sum_c A_ch^T(c) * (T - S)^2."""
    a_sp = spatial_attention(teacher, tau)
    a_ch = channel_attention(teacher, tau)
    c, h, w = len(teacher), len(teacher[0]), len(teacher[0][0])
    return [
        [
            a_sp[y][x] * sum(a_ch[k] * (teacher[k][y][x] - student[k][y][x]) ** 2 for k in range(c))
            for x in range(w)
        ]
        for y in range(h)
    ]
