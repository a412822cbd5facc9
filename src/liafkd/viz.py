"""Pictures: detections drawn on images, and what a distillation run's instance weights
did (LIAF-KD's learned weights, AID's teacher-trust weights).

A `liafkd distill` run with an instance-weighting method writes one JSON line per GT
instance and training step to OUTPUT_DIR/instances/epoch_E.jsonl: image_id, label,
box (training-input pixels, after resizing and flipping), box_orig (original pixels,
still mirrored when the sample was flipped), size (sqrt of the area in original
pixels), weight, the dataset's attributes (KITTI-style `occluded`, `truncated`) and the
method's columns (LIAF: student_loss, teacher_loss, fg_loss, ...).

Figures are drawn with matplotlib's object API (no pyplot state, no display needed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import FuncNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from PIL import Image
from torchvision.ops import box_iou
from torchvision.transforms.v2.functional import to_pil_image
from torchvision.utils import draw_bounding_boxes

from liafkd.data.images import read_rgb
from liafkd.data.records import DatasetIndex, ImageRecord

Row = dict[str, Any]
CLASS_COLOURS = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]  # matplotlib's tab10
WEIGHT_CMAP = "coolwarm"  # blue below the uniform weight 1, white at 1, red above
MATCH_IOU = 0.5  # a dump row and a GT box of the same class are one instance above this
WEIGHT_TICKS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0)
OCCLUSION_LEVELS = {0: "fully visible", 1: "partly occluded", 2: "largely occluded", 3: "unknown"}


def class_colour(label: int) -> tuple[int, int, int]:
    return CLASS_COLOURS[label % len(CLASS_COLOURS)]


def draw_detections(
    image_path: str | Path,
    det: Mapping[str, torch.Tensor],
    class_names: Sequence[str],
    min_score: float,
) -> Image.Image:
    """The image with the detections scoring at least `min_score` drawn on it: boxes in
    their class's colour, labelled with class name and score."""
    from liafkd.data.dataset import load_image

    image = load_image(str(image_path))
    keep = det["scores"] >= min_score
    boxes, scores, labels = det["boxes"][keep], det["scores"][keep], det["labels"][keep]
    texts = [
        f"{class_names[int(label)]} {float(score):.2f}"
        for label, score in zip(labels, scores, strict=True)
    ]
    colours = [class_colour(int(label)) for label in labels]
    drawn = draw_bounding_boxes(image, boxes, texts, colors=colours, width=2, fill_labels=True)
    return to_pil_image(drawn)


# --- instance dumps ------------------------------------------------------------------

REQUIRED_KEYS = ("image_id", "label", "weight", "size")


def load_instance_dumps(run_dir: str | Path) -> dict[int, list[Row]]:
    """{epoch: rows} from RUN_DIR/instances/epoch_E.jsonl; ValueError naming the file
    and line of a bad row, or the folder when there is none."""
    folder = Path(run_dir) / "instances"
    paths = sorted(folder.glob("epoch_*.jsonl"), key=lambda p: int(p.stem.split("_")[1]))
    if not paths:
        raise ValueError(
            f"{folder}: no epoch_E.jsonl instance dumps; they come from `liafkd distill` "
            "runs that weight instances: aid, aid-instance, or liaf / liaf+ld / liaf+crosskd "
            "with distill.liaf.selector.lam above 0 (at lam 0, the default, every weight "
            "is 1 and nothing is dumped)"
        )
    return {int(path.stem.split("_")[1]): _read_rows(path) for path in paths}


def _read_rows(path: Path) -> list[Row]:
    rows = []
    with path.open() as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no}: invalid JSON: {e}") from None
            missing = [key for key in REQUIRED_KEYS if key not in row]
            if missing:
                raise ValueError(f"{path}:{line_no}: row lacks {', '.join(missing)}")
            rows.append(row)
    return rows


def column(rows: Sequence[Row], key: str) -> np.ndarray:
    return np.asarray([row[key] for row in rows], dtype=np.float64)


# --- weight distribution over epochs -------------------------------------------------


def plot_weight_distribution(dumps: Mapping[int, Sequence[Row]], path: str | Path) -> Path:
    """Left: violins of the weights at up to 12 evenly spaced epochs. Right: the 5-95 and
    25-75 percentile bands, the median and the mean over every epoch."""
    epochs = sorted(dumps)
    weights = [column(dumps[e], "weight") for e in epochs]
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    violin_ax, band_ax = fig.subplots(1, 2)
    shown = sorted({epochs[round(i)] for i in np.linspace(0, len(epochs) - 1, 12)})
    violin_ax.violinplot(
        [weights[epochs.index(e)] for e in shown], positions=shown, showmedians=True
    )
    violin_ax.set(xlabel="epoch", ylabel="instance weight", title="weight distribution")
    pct = np.stack([np.percentile(w, [5, 25, 50, 75, 95]) for w in weights])
    band_ax.fill_between(epochs, pct[:, 0], pct[:, 4], alpha=0.2, color="C0", label="5-95%")
    band_ax.fill_between(epochs, pct[:, 1], pct[:, 3], alpha=0.4, color="C0", label="25-75%")
    band_ax.plot(epochs, pct[:, 2], color="C0", label="median")
    band_ax.plot(epochs, [w.mean() for w in weights], "--", color="C1", label="mean")
    band_ax.set(xlabel="epoch", ylabel="instance weight", title="weight percentiles")
    for ax in (violin_ax, band_ax):
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    band_ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


# --- weight against instance properties ----------------------------------------------


def plot_weight_vs_instance(
    rows: Sequence[Row], epoch: int, class_names: Sequence[str], path: str | Path
) -> Path:
    """Three panels for one epoch: weight against instance size (log scale, by class),
    against occlusion level (box plots; `occluded` attribute), and against the student's
    per-instance loss (`student_loss`, log scale; instances without assigned locations
    have loss 0 and are left out). A panel says so when the dump lacks its column."""
    fig = Figure(figsize=(15, 4.5), layout="constrained")
    size_ax, occ_ax, loss_ax = fig.subplots(1, 3, sharey=True)
    weights = column(rows, "weight")
    labels = column(rows, "label").astype(int)
    _scatter_by_class(size_ax, column(rows, "size"), weights, labels, class_names)
    _log_x(size_ax, "instance size sqrt(area) (original px)")
    size_ax.set_ylabel("instance weight")
    size_ax.legend(fontsize=8, loc="best")
    _occlusion_panel(occ_ax, rows, weights)
    _loss_panel(loss_ax, rows, weights, labels, class_names)
    for ax in (size_ax, occ_ax, loss_ax):
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    fig.suptitle(f"instance weights, epoch {epoch} ({len(rows)} instances)")
    return _save(fig, path)


def _scatter_by_class(ax, x, y, labels, class_names) -> None:
    for label in np.unique(labels):
        pick = labels == label
        name = class_names[label] if label < len(class_names) else str(label)
        colour = np.asarray(class_colour(int(label))) / 255
        ax.scatter(x[pick], y[pick], s=10, alpha=0.6, color=colour, label=name)


def _occlusion_panel(ax, rows: Sequence[Row], weights: np.ndarray) -> None:
    """Weight by KITTI occlusion level; on data without it (VOC) by what the data has:
    `difficult`, else `truncated` (0 or not)."""
    if "occluded" not in rows[0]:
        for name in ("difficult", "truncated"):
            if name in rows[0]:
                _binary_panel(ax, name, column(rows, name).astype(float) > 0, weights)
                return
        ax.set(xlabel="occlusion level", title="weight by occlusion")
        _say(ax, "the dataset has no `occluded`, `difficult` or `truncated` attribute")
        return
    ax.set(xlabel="occlusion level", title="weight by occlusion")
    levels = column(rows, "occluded").astype(int)
    present = sorted(set(levels.tolist()))
    ax.boxplot([weights[levels == lv] for lv in present], positions=present, widths=0.6)
    ax.set_xticks(
        present,
        [f"{lv} {OCCLUSION_LEVELS.get(lv, '')}\n(n={int((levels == lv).sum())})" for lv in present],
        fontsize=8,
    )


def _binary_panel(ax, name: str, flags: np.ndarray, weights: np.ndarray) -> None:
    ax.set(xlabel=name, title=f"weight by `{name}`")
    present = [v for v in (False, True) if (flags == v).any()]
    ax.boxplot([weights[flags == v] for v in present], positions=range(len(present)), widths=0.6)
    ax.set_xticks(
        range(len(present)),
        [f"{'yes' if v else 'no'}\n(n={int((flags == v).sum())})" for v in present],
        fontsize=8,
    )


def _loss_panel(ax, rows, weights, labels, class_names) -> None:
    ax.set(title="weight by the student's instance loss")
    if "student_loss" not in rows[0]:
        _say(ax, "the dump has no `student_loss` column\n(it comes from LIAF-KD runs)")
        return
    loss = column(rows, "student_loss")
    assigned = loss > 0
    _scatter_by_class(ax, loss[assigned], weights[assigned], labels[assigned], class_names)
    _log_x(ax, f"student loss ({int((~assigned).sum())} with 0 left out)")


def _log_x(ax, label: str) -> None:
    """Log x axis with plain-number ticks at 1, 2, 5 x 10^k."""
    ax.set(xscale="log", xlabel=label)
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _say(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")


# --- GT boxes coloured by weight -----------------------------------------------------


def match_rows_to_gt(rows: Sequence[Row], record: ImageRecord) -> dict[int, float]:
    """{GT box index in `record`: weight} for one image's dump rows. A row matches the
    GT box of its class with the highest IoU (at least MATCH_IOU) with its `box_orig`
    or that box mirrored (the sample may have been flipped), each GT box at most once,
    best pairs first."""
    if not rows or record.num_instances == 0:
        return {}
    if "box_orig" not in rows[0]:
        raise ValueError(
            "the instance dump has no `box_orig` column (dumps written before it was "
            "added); re-run `liafkd distill` to draw boxes by weight"
        )
    boxes = torch.tensor([row["box_orig"] for row in rows], dtype=torch.float32)
    mirrored = torch.stack(
        (record.width - boxes[:, 2], boxes[:, 1], record.width - boxes[:, 0], boxes[:, 3]), 1
    )
    gt = torch.as_tensor(record.boxes_xyxy, dtype=torch.float32)
    iou = torch.maximum(box_iou(boxes, gt), box_iou(mirrored, gt))
    row_labels = torch.tensor([int(row["label"]) for row in rows])
    iou[row_labels[:, None] != torch.as_tensor(record.labels)[None, :]] = 0.0
    matched: dict[int, float] = {}
    used_rows: set[int] = set()
    for flat in torch.argsort(iou.flatten(), descending=True).tolist():
        r, g = divmod(flat, iou.shape[1])
        if iou[r, g] < MATCH_IOU:
            break
        if r not in used_rows and g not in matched:
            used_rows.add(r)
            matched[g] = float(rows[r]["weight"])
    return matched


def pick_images(rows: Sequence[Row], count: int) -> list[int]:
    """The `count` image ids whose instances' weights spread the most (max - min; ties
    by id): where the weighting discriminates."""
    by_image: dict[int, list[float]] = {}
    for row in rows:
        by_image.setdefault(int(row["image_id"]), []).append(float(row["weight"]))
    spread = {image_id: max(w) - min(w) for image_id, w in by_image.items()}
    return sorted(spread, key=lambda image_id: (-spread[image_id], image_id))[:count]


def plot_instance_images(
    dumps: Mapping[int, Sequence[Row]],
    epochs: Sequence[int],
    index: DatasetIndex,
    image_ids: Sequence[int],
    path: str | Path,
) -> Path:
    """A grid, one row per image and one column per epoch: the original image with its
    GT boxes coloured by their weight at that epoch (one colour scale, centred on the
    uniform weight 1, log scale) and labelled with it; GT boxes without a dump row are
    dashed grey."""
    records = {int(r.image_id): r for r in index.records}
    unknown = [i for i in image_ids if i not in records]
    if unknown:
        raise ValueError(
            f"image ids {unknown[:5]} of the dump are not in the dataset; pass the run's "
            "own config (its data.train split)"
        )
    matches = {
        (e, i): match_rows_to_gt([r for r in dumps[e] if r["image_id"] == i], records[i])
        for e in epochs
        for i in image_ids
    }
    norm = _weight_norm([w for m in matches.values() for w in m.values()])
    first = records[image_ids[0]]
    cell_w = 5.0
    cell_h = cell_w * first.height / first.width + 0.4
    fig = Figure(
        figsize=(cell_w * len(epochs) + 1.2, cell_h * len(image_ids)), layout="constrained"
    )
    axes = np.asarray(fig.subplots(len(image_ids), len(epochs), squeeze=False))
    cmap = colormaps[WEIGHT_CMAP]
    for row_axes, image_id in zip(axes, image_ids, strict=True):
        record = records[image_id]
        pixels = np.asarray(read_rgb(record.file_name))  # as training saw it (EXIF, 16-bit)
        for ax, epoch in zip(row_axes, epochs, strict=True):
            ax.imshow(pixels)
            _draw_gt(ax, record, matches[(epoch, image_id)], cmap, norm)
            name = Path(record.file_name).name  # the file the user knows, then the id
            ax.set_title(f"{name} (id {image_id}), epoch {epoch}", fontsize=9)
            ax.set_axis_off()
    fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap),
        ax=axes.ravel().tolist(),
        label="instance weight",
        shrink=0.8,
        ticks=_weight_ticks(norm),
        format="{x:g}",
    )
    return _save(fig, path)


def _draw_gt(ax, record: ImageRecord, weights: Mapping[int, float], cmap, norm) -> None:
    """Each GT box in its weight's colour with the weight above it; dashed grey without."""
    for g, box in enumerate(record.boxes_xyxy):
        x1, y1, x2, y2 = (float(v) for v in box)
        weight = weights.get(g)
        if weight is None:
            style = {"edgecolor": "grey", "lw": 1.0, "ls": "--"}
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, **style))
            continue
        colour = cmap(norm(weight))
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, lw=2))
        luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
        ax.text(
            x1,
            y1 - 1,
            f"{weight:.2f}",
            fontsize=6,
            color="black" if luminance > 0.6 else "white",
            va="bottom",
            bbox={"facecolor": colour, "alpha": 0.8, "pad": 0.5, "lw": 0},
        )


def _weight_norm(weights: Sequence[float]) -> FuncNorm:
    """Colour scale from the smallest to the largest weight, logarithmic on each side of
    the uniform weight 1, which sits in the middle (white in WEIGHT_CMAP)."""
    positive = [w for w in weights if w > 0]
    low, high = min([0.99, *positive]), max([1.01, *positive])
    down, up = -np.log(low), np.log(high)

    def forward(w):
        log_w = np.log(np.clip(w, low, high))
        return np.where(log_w < 0, log_w / down, log_w / up)

    def inverse(v):
        return np.exp(np.where(v < 0, v * down, v * up))

    return FuncNorm((forward, inverse), vmin=low, vmax=high)


def _weight_ticks(norm: FuncNorm) -> list[float]:
    inside = [t for t in WEIGHT_TICKS if norm.vmin * 1.15 < t < norm.vmax / 1.15]
    return [round(norm.vmin, 2), *inside, round(norm.vmax, 2)]


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
