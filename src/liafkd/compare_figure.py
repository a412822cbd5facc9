"""One picture of what distillation changed: the same validation images with their
ground truth and each model's detections side by side, above the models' AP.

Drawn with matplotlib's object API (no pyplot state, no display needed) at a fixed size:
`figure_size_px(images)` pixels, whatever the images hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from liafkd.data.records import ImageRecord
from liafkd.viz import class_colour, draw_detections

DPI = 100
PANEL_WIDTH_IN = 3.2
PANEL_HEIGHT_IN = 2.2  # a 320x192 image with its title
CHART_HEIGHT_IN = 2.8
BAR_COLOURS = ["0.55", "tab:blue", "tab:orange", "tab:green"]  # teacher grey, then students


def figure_size_px(images: int, panels: int) -> tuple[int, int]:
    """(width, height) in pixels of the picture for `images` rows of `panels` columns."""
    width = PANEL_WIDTH_IN * panels
    height = PANEL_HEIGHT_IN * images + CHART_HEIGHT_IN
    return round(width * DPI), round(height * DPI)


def ground_truth(record: ImageRecord) -> dict[str, torch.Tensor]:
    """The record's boxes as detections of score 1, to draw with `draw_detections`."""
    count = record.num_instances
    return {
        "boxes": torch.as_tensor(record.boxes_xyxy, dtype=torch.float32).reshape(count, 4),
        "scores": torch.ones(count),
        "labels": torch.as_tensor(record.labels, dtype=torch.int64),
    }


def draw_comparison(
    records: Sequence[ImageRecord],
    detections: Mapping[str, Mapping[int, Mapping[str, torch.Tensor]]],
    class_names: Sequence[str],
    ap_rows: Sequence[Mapping[str, Any]],
    path: str | Path,
    min_score: float = 0.3,
) -> Path:
    """Rows of `records`: ground truth, then each model of `detections` (name -> image
    id -> boxes, scores, labels) scoring at least `min_score`; under them a bar chart of
    the AP of `ap_rows` (each with `run` and `AP` in 0..1)."""
    panels = 1 + len(detections)
    width, height = figure_size_px(len(records), panels)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    grid = fig.add_gridspec(
        len(records) + 1,
        panels,
        height_ratios=[PANEL_HEIGHT_IN] * len(records) + [CHART_HEIGHT_IN],
        left=0.01,
        right=0.99,
        top=0.97,
        bottom=0.09,
        wspace=0.03,
        hspace=0.25,
    )
    for i, record in enumerate(records):
        truth = _draw_truth(record, class_names)
        images = [(f"ground truth ({record.num_instances} objects)", truth)]
        for name, dets in detections.items():
            det = dets[record.image_id]
            shown = int((det["scores"] >= min_score).sum())
            drawn = (
                draw_detections(record.file_name, det, class_names, min_score)
                if shown
                else plain_image(record.file_name)  # torchvision warns on an empty box list
            )
            images.append((f"{name} ({shown} detection{'' if shown == 1 else 's'})", drawn))
        for j, (title, image) in enumerate(images):
            ax = fig.add_subplot(grid[i, j])
            ax.imshow(image)
            ax.set_title(title, fontsize=9)
            ax.set_axis_off()
    _ap_chart(fig.add_subplot(grid[-1, 1:-1] if panels > 3 else grid[-1, :]), ap_rows)
    fig.text(
        0.5,
        0.005,
        f"Detections scoring at least {min_score} are drawn; boxes coloured by class "
        f"({', '.join(class_names)}).",
        ha="center",
        va="bottom",
        fontsize=9,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def plain_image(path: str):
    from torchvision.transforms.v2.functional import to_pil_image

    from liafkd.data.dataset import load_image

    return to_pil_image(load_image(path))


def _draw_truth(record: ImageRecord, class_names: Sequence[str]):
    """Ground-truth boxes labelled with their class name only (no score)."""
    from torchvision.transforms.v2.functional import to_pil_image
    from torchvision.utils import draw_bounding_boxes

    from liafkd.data.dataset import load_image

    if not record.num_instances:
        return plain_image(record.file_name)
    truth = ground_truth(record)
    labels = [int(label) for label in truth["labels"]]
    drawn = draw_bounding_boxes(
        load_image(record.file_name),
        truth["boxes"],
        [class_names[label] for label in labels],
        colors=[class_colour(label) for label in labels],
        width=2,
        fill_labels=True,
    )
    return to_pil_image(drawn)


def _ap_chart(ax, ap_rows: Sequence[Mapping[str, Any]]) -> None:
    names = [str(r["run"]) for r in ap_rows]
    values = [100 * float(r["AP"]) if r["AP"] is not None else 0.0 for r in ap_rows]
    colours = [BAR_COLOURS[i % len(BAR_COLOURS)] for i in range(len(names))]
    bars = ax.bar(names, values, color=colours, width=0.6)
    for bar, value in zip(bars, values, strict=True):
        ax.annotate(
            f"{value:.1f}",
            (bar.get_x() + bar.get_width() / 2, value),
            ha="center",
            va="bottom",
            fontsize=9,
        )
    ax.set_ylabel("COCO box AP (%)")
    ax.set_title("AP on the demo's validation split", fontsize=10)
    ax.set_ylim(0, max(values + [1.0]) * 1.2)
    ax.spines[["top", "right"]].set_visible(False)
