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


def fgd_mask(box, image_shape, height, width):
    """FGD's official rule: the box scaled by (feature size / image size), rows
    floor(y1')..ceil(y2') and columns floor(x1')..ceil(x2') both included (clipped to
    the grid), each at 1 / (rows * columns) counted from the unclipped integer bounds."""
    x1, y1, x2, y2 = box
    img_h, img_w = image_shape
    x_min, x_max = math.floor(x1 / img_w * width), math.ceil(x2 / img_w * width)
    y_min, y_max = math.floor(y1 / img_h * height), math.ceil(y2 / img_h * height)
    area = 1.0 / ((y_max + 1 - y_min) * (x_max + 1 - x_min))
    mask = [[0.0] * width for _ in range(height)]
    for y in range(max(y_min, 0), min(y_max + 1, height)):
        for x in range(max(x_min, 0), min(x_max + 1, width)):
            mask[y][x] = area
    return mask


def box_mask(box, stride, height, width, image_shape, rule):
    if rule == "fgd":
        return fgd_mask(box, image_shape, height, width)
    return cell_mask(box, stride, height, width)


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


def focal_terms(inputs, tau=0.5, rule="fgd"):
    """(fg, bg, per_instance) of FGD-style imitation, by loops over levels/images/cells,
    with masks under `rule` (fgd: FGD's official rule; center: the cell-centre rule)."""
    fg = bg = 0.0
    n_total = sum(len(t["boxes"]) for t in inputs.targets)
    per_instance = [0.0] * n_total
    batch = len(inputs.targets)
    for s_feat, t_feat, stride in zip(
        inputs.student_feats, inputs.teacher_feats, inputs.strides, strict=True
    ):
        h, w = t_feat.shape[2], t_feat.shape[3]
        n = 0
        for b in range(batch):
            err = weighted_error(s_feat[b].tolist(), t_feat[b].tolist(), tau)
            masks = [
                box_mask(box, stride, h, w, inputs.images_shape, rule)
                for box in inputs.targets[b]["boxes"].tolist()
            ]
            for m in masks:
                per_instance[n] += sum(m[y][x] * err[y][x] for y in range(h) for x in range(w))
                n += 1
            fg_mask = [
                [max([m[y][x] for m in masks], default=0.0) for x in range(w)] for y in range(h)
            ]
            free = [(y, x) for y in range(h) for x in range(w) if fg_mask[y][x] == 0]
            fg += sum(fg_mask[y][x] * err[y][x] for y in range(h) for x in range(w))
            bg += sum(err[y][x] for y, x in free) / max(len(free), 1)
    return fg / batch, bg / batch, [v / batch for v in per_instance]


def attention_term(inputs, tau=0.5):
    total = 0.0
    for s_feat, t_feat in zip(inputs.student_feats, inputs.teacher_feats, strict=True):
        for b in range(s_feat.shape[0]):
            s, t = s_feat[b].tolist(), t_feat[b].tolist()
            ss, ts = spatial_attention(s, tau), spatial_attention(t, tau)
            total += sum(
                abs(a - c)
                for rs, rt in zip(ss, ts, strict=True)
                for a, c in zip(rs, rt, strict=True)
            )
            total += sum(
                abs(a - c)
                for a, c in zip(channel_attention(s, tau), channel_attention(t, tau), strict=True)
            )
    return total / s_feat.shape[0]


def plain_global_term(inputs):
    """Global loss while the GcBlocks are still the identity: sum (S - T)^2 / B."""
    total = 0.0
    for s_feat, t_feat in zip(inputs.student_feats, inputs.teacher_feats, strict=True):
        s, t = s_feat.flatten().tolist(), t_feat.flatten().tolist()
        total += sum((a - c) ** 2 for a, c in zip(s, t, strict=True))
    return total / inputs.student_feats[0].shape[0]
