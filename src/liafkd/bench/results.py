"""A bench's results file (OUTPUT_DIR/results.jsonl): reading, appending, and the
current units of a bench gathered for the reports.

The lowest layer of liafkd.bench's reporting: the runner appends to the file, the
report, plots and standing read it through load_results.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liafkd.config import ConfigError

try:
    import fcntl
except ImportError:  # not on Windows: one process per results file there
    fcntl = None

RESULTS_FILE = "results.jsonl"


def read_results(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a results file; a torn last line (a write cut short by
    a kill) is skipped with a note, any other bad line is an error naming it."""
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if number == len(lines):
                print(f"{path}:{number}: incomplete last line skipped (interrupted write)")
                continue
            raise ValueError(f"{path}:{number}: not a JSON line ({e})") from None
    return records


def latest_by_key(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The last record of each key (a redone unit replaces its older line)."""
    return {r["key"]: r for r in records if "key" in r}


def append_result(path: Path, record: dict[str, Any]) -> None:
    """Append one line, durably; a torn last line left by a kill is cut off first. An
    exclusive lock keeps processes sharing the file (--seeds, benchmarks/gpu_rank.sh)
    from writing at the same end."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    with path.open("r+b") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)
        f.seek(0, os.SEEK_END)
        f.write((json.dumps(record, sort_keys=True) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())


@dataclass
class BenchResults:
    bench: dict[str, Any]
    teachers: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, dict[int, dict[str, Any]]]] = field(default_factory=dict)
    costs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.bench.get("name", "bench")

    @property
    def seed_count(self) -> int:
        """How many seeds the bench declares (1 when its description lacks them)."""
        return len(self.bench.get("seeds", [])) or 1

    def datasets(self) -> list[str]:
        names = list(self.bench.get("datasets", {}))
        return names + [d for d in {**self.runs, **self.teachers} if d not in names]

    def methods(self, dataset: str) -> list[str]:
        """The bench's row order, then any other method found in the results."""
        ordered = [m["name"] for m in self.bench.get("methods", [])]
        found = list(self.runs.get(dataset, {}))
        return [m for m in ordered if m in found] + [m for m in found if m not in ordered]

    def values(self, dataset: str, method: str, metric: str) -> dict[int, float | None]:
        """Per seed: a COCO metric in percent, or `kitti_<difficulty>` (mean over
        classes of AP|R40, percent)."""
        return {
            seed: metric_value(run["metrics"], metric)
            for seed, run in self.runs.get(dataset, {}).get(method, {}).items()
        }


def load_results(output_dir: Path) -> BenchResults:
    """The units of the bench's latest description (all units when the file has none)."""
    path = Path(output_dir) / RESULTS_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: no results file (run `liafkd bench CONFIG` first)")
    records = list(latest_by_key(read_results(path)).values())
    benches = [r for r in records if r.get("kind") == "bench"]
    results = BenchResults(bench=max(benches, key=lambda r: r["finished_at"]) if benches else {})
    current = current_keys(results.bench)
    for record in records:
        if current is not None and record.get("key") not in current:
            continue  # a unit of an earlier version of the config
        kind = record.get("kind")
        if kind == "teacher":
            results.teachers[record["dataset"]] = record
        elif kind == "run":
            by_method = results.runs.setdefault(record["dataset"], {})
            by_method.setdefault(record["method"], {})[int(record["seed"])] = record
        elif kind == "cost":
            results.costs[record["dataset"]] = record
    return results


def current_keys(bench: dict[str, Any]) -> set[str] | None:
    units = bench.get("units")
    if units is None:
        return None
    keys = set()
    for unit in units.values():
        keys |= {unit["teacher"], unit["cost"], *unit["runs"]}
    return keys


CLASS_PREFIX = "class:"  # a metric key `class:NAME`: COCO AP of class NAME


def metric_value(metrics: dict[str, Any], metric: str) -> float | None:
    """A metric in percent: a COCO key (AP, APs, ...), `class:NAME` (the COCO AP of one
    class) or `kitti_<difficulty>` (AP|R40 averaged over the KITTI classes)."""
    if metric.startswith(CLASS_PREFIX):
        value = (metrics.get("per_class") or {}).get(metric.removeprefix(CLASS_PREFIX))
        return None if value is None else 100.0 * value
    if metric.startswith("kitti_"):
        kitti = metrics.get("kitti") or {}
        classes = [c for c in kitti if isinstance(kitti[c], dict)]
        difficulty = metric.removeprefix("kitti_")
        if not classes:
            return None
        return sum(kitti[c][difficulty]["R40"] for c in classes) / len(classes)
    value = metrics.get(metric)
    return None if value is None else 100.0 * value


def has_kitti(results: BenchResults, dataset: str) -> bool:
    runs = results.runs.get(dataset, {})
    return any(r["metrics"].get("kitti") for seeds in runs.values() for r in seeds.values())


def class_names(results: BenchResults, dataset: str) -> list[str]:
    """The classes the runs store a per-class AP for, in their order (empty when none
    does: results written before evaluation stored it)."""
    names: list[str] = []
    for seeds in results.runs.get(dataset, {}).values():
        for run in seeds.values():
            names += [n for n in run["metrics"].get("per_class") or {} if n not in names]
    return names
