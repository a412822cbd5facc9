"""The bench's figures (matplotlib, Agg, PNG), drawn from results.jsonl alone.

Per dataset: AP per method with error bars (std over seeds, every seed a dot, the
teacher and `none` as reference lines); validation AP over epochs per method (mean
over seeds, band +- std); and for the methods that weight instances (LIAF, AID) the
instance weight against instance size and against occlusion level, from the last
epoch's weights pooled over seeds (mean per bin with its 95% confidence interval,
1.96 std / sqrt(n), and the bin's instance count).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from liafkd.bench.config import BASELINE  # noqa: E402
from liafkd.bench.results import BenchResults  # noqa: E402
from liafkd.bench.stats import pooled_moments, summarize  # noqa: E402

DPI = 120
LOG_SCALE_SPREAD = 20.0  # weight axis turns logarithmic when max/min mean exceeds this
OCCLUSION_NAMES = {"0": "0 visible", "1": "1 partly", "2": "2 largely", "3": "3 unknown"}


def write_plots(results: BenchResults, folder: Path) -> dict[str, dict[str, Path]]:
    """{dataset: {figure kind: PNG path}} for every figure the results allow."""
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, dict[str, Path]] = {}
    for dataset in results.datasets():
        if dataset not in results.runs:
            continue
        figures = {
            "AP per method": (plot_ap, folder / f"{dataset}_ap.png"),
            "validation AP over epochs": (plot_curves, folder / f"{dataset}_val_ap.png"),
            "instance weights": (plot_instance_weights, folder / f"{dataset}_instance_weights.png"),
        }
        for kind, (draw, path) in figures.items():
            if draw(results, dataset, path):
                written.setdefault(dataset, {})[kind] = path
    return written


def method_colors(methods: list[str]) -> dict[str, str | tuple]:
    """One distinct colour per method, `none` alone grey: tab10 without its grey, then
    for longer lists tab20 without its greys and tab20b."""
    others = [m for m in methods if m != BASELINE]
    if len(others) <= 9:
        palette = [c for k, c in enumerate(plt.get_cmap("tab10").colors) if k != 7]
    else:
        tab20 = plt.get_cmap("tab20").colors
        palette = [c for k, c in enumerate(tab20) if k not in (14, 15)]
        palette += list(plt.get_cmap("tab20b").colors)
    colors: dict[str, str | tuple] = {BASELINE: "0.45"}
    for k, method in enumerate(others):
        colors[method] = palette[k % len(palette)]
    return colors


def _save(fig, path: Path) -> bool:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def plot_ap(results: BenchResults, dataset: str, path: Path) -> bool:
    methods = results.methods(dataset)
    colors = method_colors(methods)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(methods) + 2), 4.5))
    for i, method in enumerate(methods):
        per_seed = {s: v for s, v in results.values(dataset, method, "AP").items() if v is not None}
        s = summarize(per_seed.values())
        if s is None:
            continue
        ax.bar(i, s.mean, yerr=s.std or 0.0, capsize=5, color=colors[method], alpha=0.85)
        ax.scatter([i] * len(per_seed), list(per_seed.values()), color="k", s=12, zorder=3)
        ax.annotate(
            f"{s.mean:.1f}",
            (i, s.mean),
            ha="center",
            va="bottom",
            fontsize=8,
            xytext=(0, 3 + 20 * bool(s.std)),
            textcoords="offset points",
        )
    base = summarize(results.values(dataset, BASELINE, "AP").values())
    if base is not None:
        ax.axhline(base.mean, color="0.4", linestyle=":", label="none (mean)")
    teacher = results.teachers.get(dataset)
    if teacher is not None and teacher["metrics"].get("AP") is not None:
        ax.axhline(100 * teacher["metrics"]["AP"], color="C3", linestyle="--", label="teacher")
    ax.set_xticks(range(len(methods)), methods, rotation=20, ha="right")
    ax.set_ylim(0, 1.12 * ax.get_ylim()[1])  # room for the value labels above the bars
    ax.set_ylabel("COCO AP (%)")
    ax.set_title(f"{results.name} / {dataset}: AP per method", fontsize=11)
    ax.set_xlabel("bars: mean ± std over seeds; dots: single seeds", fontsize=8)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_curves(results: BenchResults, dataset: str, path: Path) -> bool:
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    methods = results.methods(dataset)
    colors = method_colors(methods)
    for method in methods:
        by_epoch: dict[int, list[float]] = defaultdict(list)
        for run in results.runs[dataset][method].values():
            for point in run.get("epochs", []):
                if point.get("AP") is not None:
                    by_epoch[point["epoch"]].append(100 * point["AP"])
        if not by_epoch:
            continue
        epochs = sorted(by_epoch)
        stats = [summarize(by_epoch[e]) for e in epochs]
        means = [s.mean for s in stats]
        spread = [s.std or 0.0 for s in stats]
        color = colors[method]
        ax.plot(epochs, means, marker="o", ms=3, color=color, label=method)
        ax.fill_between(
            epochs,
            [m - d for m, d in zip(means, spread, strict=True)],
            [m + d for m, d in zip(means, spread, strict=True)],
            color=color,
            alpha=0.15,
        )
        drawn = True
    if not drawn:
        plt.close(fig)
        return False
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation AP (%)")
    ax.set_title(f"{results.name} / {dataset}: validation AP (mean over seeds, band ± std)")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _weight_bins(results: BenchResults, dataset: str, method: str, key: str) -> dict[str, list]:
    parts: dict[str, list] = defaultdict(list)
    for run in results.runs[dataset][method].values():
        summary = run.get("instance_weights") or {}
        for label, moments in (summary.get(key) or {}).items():
            parts[label].append(moments)
    return parts


def plot_instance_weights(results: BenchResults, dataset: str, path: Path) -> bool:
    methods = [
        m
        for m in results.methods(dataset)
        if any(r.get("instance_weights") for r in results.runs[dataset][m].values())
    ]
    if not methods:
        return False
    panels = [("by_size", "instance size sqrt(area), px")]
    if any(_weight_bins(results, dataset, m, "by_occlusion") for m in methods):
        panels.append(("by_occlusion", "occlusion level"))
    colors = method_colors(methods)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels, strict=True):
        labels = _bin_labels(results, dataset, methods, key)
        offsets = _offsets(len(methods))
        counts: dict[str, set[int]] = defaultdict(set)
        all_means = []
        for k, method in enumerate(methods):
            bins = _weight_bins(results, dataset, method, key)
            xs, means, halfwidths = [], [], []
            for j, bin_label in enumerate(labels):
                s = pooled_moments(bins.get(bin_label, []))
                if s is None:
                    continue
                xs.append(j + offsets[k])
                means.append(s.mean)
                halfwidths.append(1.96 * (s.std or 0.0) / math.sqrt(s.n))
                counts[bin_label].add(s.n)
            all_means += means
            ax.errorbar(
                xs,
                means,
                yerr=halfwidths,
                marker="o",
                capsize=3,
                label=method,
                color=colors[method],
            )
        names = [OCCLUSION_NAMES.get(b, b) for b in labels] if key == "by_occlusion" else labels
        ticks = [
            f"{name}\n{_count_label(counts[b])}" for name, b in zip(names, labels, strict=True)
        ]
        ax.set_xticks(range(len(labels)), ticks, fontsize=8)
        positive = [m for m in all_means if m > 0]
        if positive and max(positive) / min(positive) > LOG_SCALE_SPREAD:
            ax.set_yscale("log")
        else:
            ax.ticklabel_format(axis="y", useOffset=False)
        ax.axhline(1.0, color="0.5", linestyle=":", linewidth=1)
        ax.margins(x=0.1)
        ax.set_xlabel(f"{label} (n: instances per bin, seeds pooled)")
        ax.set_ylabel("instance weight (mean, 95% CI of the mean)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"{results.name} / {dataset}: instance weights of the last epoch, seeds pooled\n"
        "(weights average 1 per batch; dotted line: uniform weight)",
        fontsize=10,
    )
    return _save(fig, path)


def _count_label(counts: set[int]) -> str:
    """The bin's instance count; a range when the methods saw different counts."""
    if not counts:
        return ""
    low, high = min(counts), max(counts)
    return f"n={low}" if low == high else f"n={low}-{high}"


def _bin_labels(results: BenchResults, dataset: str, methods: list[str], key: str) -> list[str]:
    """Bins that hold instances, in their natural order (size bins by lower edge)."""
    labels = {
        b
        for m in methods
        for b, parts in _weight_bins(results, dataset, m, key).items()
        if sum(p["n"] for p in parts)
    }
    return sorted(labels, key=lambda b: float(b.split("-")[0]))


def _offsets(count: int) -> list[float]:
    """Small horizontal shifts so that the methods' error bars do not overlap."""
    if count == 1:
        return [0.0]
    width = 0.3
    return [-width / 2 + width * k / (count - 1) for k in range(count)]
