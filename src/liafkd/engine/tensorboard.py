"""TensorBoard event files from a finished (or running) run's logs, when the optional
`tensorboard` package is installed (`pip install tensorboard`; not a liafkd dependency).

Scalars come from OUTPUT_DIR/metrics.jsonl: "train" rows under train/<name> at their
optimizer step, "epoch" rows under epoch/<name>, distill/<name> and val/<name> (nested
values flattened with "/", e.g. val/per_class/Car) at their epoch. Instance-weight
histograms come from OUTPUT_DIR/instances/epoch_E.jsonl when the run has them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

NESTED_GROUPS = ("distill", "val")  # epoch-row dicts shown as their own TensorBoard groups


def flatten_numbers(values: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, float]]:
    """(prefix/key/subkey, value) for every number in nested dicts; others skipped."""
    for key, value in values.items():
        name = f"{prefix}/{key}"
        if isinstance(value, Mapping):
            yield from flatten_numbers(value, name)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            yield name, float(value)


def metric_scalars(record: Mapping[str, Any]) -> tuple[int, list[tuple[str, float]]]:
    """(global step, [(tag, value)]) of one metrics.jsonl row."""
    kind = record.get("type")
    values = {k: v for k, v in record.items() if k != "type"}
    if kind == "train":
        values.pop("epoch", None)
        return int(values.pop("step")), list(flatten_numbers(values, "train"))
    epoch = int(values.pop("epoch"))
    groups = {name: values.pop(name) for name in NESTED_GROUPS if name in values}
    scalars = list(flatten_numbers(values, "epoch"))
    for name, group in groups.items():
        scalars += flatten_numbers(group, name)
    return epoch, scalars


def read_metrics(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{line_no}: invalid JSON: {e}") from None
        if row.get("type") not in ("train", "epoch") or "epoch" not in row:
            raise ValueError(f"{path}:{line_no}: not a train or epoch metrics row")
        rows.append(row)
    return rows


def write_tensorboard(run_dir: str | Path, log_dir: str | Path | None = None) -> Path | None:
    """Write the run's metrics (and instance-weight histograms) as TensorBoard events to
    `log_dir` (default RUN_DIR/tensorboard), replacing event files written there before;
    returns it, or None with a message when the tensorboard package is absent."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print(
            "TensorBoard logging skipped: the `tensorboard` package is not installed "
            "(pip install tensorboard)"
        )
        return None
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        raise ValueError(f"{metrics}: not found; is {run_dir} a liafkd run folder?")
    log_dir = Path(log_dir) if log_dir else run_dir / "tensorboard"
    for old in log_dir.glob("events.out.tfevents.*"):  # a rerun would show every point twice
        old.unlink()
    with SummaryWriter(log_dir=str(log_dir)) as writer:
        for record in read_metrics(metrics):
            step, scalars = metric_scalars(record)
            for tag, value in scalars:
                writer.add_scalar(tag, value, step)
        _write_weight_histograms(writer, run_dir)
    return log_dir


def _write_weight_histograms(writer, run_dir: Path) -> None:
    if not (run_dir / "instances").is_dir():
        return
    from liafkd.viz import column, load_instance_dumps

    for epoch, rows in load_instance_dumps(run_dir).items():
        if rows:
            writer.add_histogram("distill/instance_weight", column(rows, "weight"), epoch)
