"""Run a bench: teacher per dataset, every (dataset, method, seed), then the cost.

Everything the reports need lands in OUTPUT_DIR/results.jsonl, one JSON object a
line, keyed by a hash of what the line depends on:

- kind "bench": the bench's description (name, methods in order, seeds, datasets);
- kind "teacher": the teacher of a dataset and its validation metrics;
- kind "run": one (dataset, method, seed): final metrics, per-epoch validation,
  instance-weight summaries (methods that weight instances), timings, versions;
- kind "cost": the cost measurement of a dataset (liafkd.bench.cost).

A unit of work is done when its line exists; a run without a line resumes from its
own newest checkpoint (`resume="latest"`), so an interrupted bench continues where
it stopped. Checkpoints and the generated experiment YAMLs live in WORK_DIR.

The teacher record and every run record carry the sha256 of the teacher checkpoint
(`checkpoint_sha256`, `teacher_sha256`). Training on CPU is not bit-reproducible across
machines, so a teacher retrained from the same config (a later session, a fresh work
tree) is another teacher under the same key: before training any student, the bench
refuses (TeacherMismatch) when the recorded rows name another checkpoint than the one
in WORK_DIR. Rows written before this was recorded are of unknown teacher: a warning.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from liafkd.bench.config import (
    BASELINE,
    LoadedBench,
    MethodEntry,
    config_hash,
    portable_dataset,
)
from liafkd.bench.report import write_reports
from liafkd.bench.results import RESULTS_FILE, append_result, latest_by_key, read_results
from liafkd.config import ConfigError
from liafkd.data.formats.layout import describe_split
from liafkd.outputs import write_text_atomic

# instance-weight summaries: sqrt(area) bins in original-image pixels
SIZE_BIN_EDGES = (0.0, 16.0, 32.0, 64.0, 128.0, 256.0, math.inf)
METRIC_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


# --- claims --------------------------------------------------------------------------


@contextmanager
def claim(run_dir: Path) -> Iterator[bool]:
    """Hold `run_dir` for this process while a run trains in it: yields False when a
    live process holds it (two processes sharing an output_dir, --seeds). A claim left by
    a dead process is taken over, and its run resumes from its checkpoint."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ".claim"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if pid_alive(path):
                yield False
                return
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        try:
            yield True
        finally:
            path.unlink(missing_ok=True)
        return
    yield False


def pid_alive(claim_file: Path) -> bool:
    try:
        pid = int(claim_file.read_text().strip() or -1)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError, FileNotFoundError):
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


# --- versions ----------------------------------------------------------------------


def versions() -> dict[str, Any]:
    import torch
    import torchvision

    from liafkd import __version__

    device = "cpu"
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    return {
        "liafkd": __version__,
        "git": _git_commit(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "cpu_threads": torch.get_num_threads(),
    }


def _git_commit() -> str | None:
    """HEAD of the checkout liafkd runs from, with "+dirty" for uncommitted changes."""
    repo = Path(__file__).resolve().parents[3]
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def relative_paths(value: Any, base: Path | None = None) -> Any:
    """`value` with absolute paths made relative to `base` (default: the current
    folder), so that committed results do not name this machine's folders."""
    base = base or Path.cwd()
    if isinstance(value, dict):
        return {k: relative_paths(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [relative_paths(v, base) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        return os.path.relpath(value, base)
    return value


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# --- plan ----------------------------------------------------------------------------


@dataclass
class TeacherRun:
    dataset: str
    key: str
    config: Path  # the teacher experiment YAML (model + this dataset)
    checkpoint: Path


@dataclass
class RunSpec:
    dataset: str
    method: MethodEntry
    seed: int
    key: str
    config: Path
    experiment: dict[str, Any]

    @property
    def output_dir(self) -> Path:
        return Path(self.experiment["output_dir"])


def data_block(bench: LoadedBench, dataset: str) -> dict[str, Any]:
    entry = bench.entry(dataset)
    train, val = bench.datasets[dataset]
    return {
        "train": train.model_dump(mode="json"),
        "val": val.model_dump(mode="json"),
        "augment": entry.augment.model_dump(mode="json"),
        "batch_size": entry.batch_size,
        "num_workers": entry.num_workers,
        "cache_images": entry.cache_images,
    }


def portable_data(bench: LoadedBench, dataset: str) -> dict[str, Any]:
    """data_block with relative roots: what hashes depend on."""
    data = data_block(bench, dataset)
    del data["cache_images"]  # the same values either way: a run's key does not change
    base = bench.source.parent
    train, val = bench.datasets[dataset]
    data["train"] = portable_dataset(train, base)
    data["val"] = portable_dataset(val, base)
    return data


def file_digest(path: Path) -> str:
    return file_sha256(path)[:16]


def file_sha256(path: Path) -> str:
    """The file's sha256 (hex), read once per process while its size and mtime hold."""
    stat = path.stat()
    return _sha256(path.resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def plan_teacher(bench: LoadedBench, dataset: str) -> TeacherRun:
    """The teacher of `dataset`: its key, experiment YAML and checkpoint path."""
    spec = bench.teachers[dataset]
    folder = bench.work_dir / "configs" / dataset
    if spec.is_trained:
        from liafkd.config import load_config

        model = load_config(spec.config).model.model_dump(mode="json")
        key = config_hash(
            {
                "teacher_checkpoint": file_digest(Path(spec.checkpoint)),
                "data": portable_data(bench, dataset),
            }
        )
        checkpoint = Path(spec.checkpoint)
        train = {"device": spec.train.device}
    else:
        model = spec.model.model_dump(mode="json")
        train = spec.train.model_dump(mode="json")
        key = config_hash(
            {"teacher": {"model": model, "train": train}, "data": portable_data(bench, dataset)}
        )
        checkpoint = bench.work_dir / "runs" / dataset / f"teacher-{key[:8]}" / "final.pt"
    experiment = {
        "name": f"{dataset}-teacher",
        "output_dir": str(checkpoint.parent),
        "data": data_block(bench, dataset),
        "model": model,
        "train": train,
    }
    return TeacherRun(dataset, key, write_yaml(experiment, folder / "teacher.yaml"), checkpoint)


def plan_runs(bench: LoadedBench, dataset: str, teacher: TeacherRun) -> list[RunSpec]:
    """Seed-major, so an interrupted bench has every method on its first seeds."""
    runs = []
    for seed in bench.cfg.seeds:
        for method in bench.cfg.methods:
            runs.append(plan_run(bench, dataset, teacher, method, seed))
    return runs


def plan_run(
    bench: LoadedBench, dataset: str, teacher: TeacherRun, method: MethodEntry, seed: int
) -> RunSpec:
    student = bench.cfg.student
    train = student.train.model_dump(mode="json") | {"seed": seed}
    distill = bench.distill_block(method)
    key = config_hash(
        {
            "dataset": portable_data(bench, dataset),
            "model": student.model.model_dump(mode="json"),
            "train": train,
            "distill": distill,
            "row": method.name,
            "teacher": teacher.key,
        }
    )
    output_dir = bench.work_dir / "runs" / dataset / f"{method.name}-s{seed}-{key[:8]}"
    distill["teacher"] = {"config": str(teacher.config), "checkpoint": str(teacher.checkpoint)}
    experiment = {
        "name": f"{dataset}-{method.name}-s{seed}",
        "output_dir": str(output_dir),
        "data": data_block(bench, dataset),
        "model": student.model.model_dump(mode="json"),
        "train": train,
        "distill": distill,
    }
    config = bench.work_dir / "configs" / dataset / f"{method.name}-s{seed}.yaml"
    return RunSpec(dataset, method, seed, key, write_yaml(experiment, config), experiment)


def write_yaml(raw: dict[str, Any], path: Path) -> Path:
    """Atomically: processes sharing a bench (--seeds, benchmarks/gpu_rank.sh) each
    rewrite the same run configs while another may be reading them."""
    return write_text_atomic(path, yaml.safe_dump(raw, sort_keys=False))


# --- evaluation and what a run leaves behind ------------------------------------------


def evaluate(config: Path, checkpoint: Path) -> dict[str, Any]:
    """COCO metrics (and KITTI where the data is KITTI-format) of a checkpoint."""
    from liafkd.config import load_config
    from liafkd.engine.evaluate import evaluate_checkpoint

    metrics, _ = evaluate_checkpoint(load_config(config), str(checkpoint))
    out: dict[str, Any] = {k: metrics.get(k) for k in METRIC_KEYS}
    out["per_class"] = metrics.get("per_class", {})
    if metrics.get("kitti"):
        out["kitti"] = metrics["kitti"]
    return out


def epoch_records(run_dir: Path) -> list[dict[str, Any]]:
    """The run's per-epoch records (the last one of each epoch: a resumed run may have
    logged an epoch twice)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    by_epoch: dict[int, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a kill
        if record.get("type") == "epoch":
            by_epoch[int(record["epoch"])] = record
    return [by_epoch[e] for e in sorted(by_epoch)]


def validation_curve(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    curve = []
    for record in records:
        val = record.get("val")
        if not val:
            continue
        point = {"epoch": record["epoch"], "AP": val.get("AP"), "AP50": val.get("AP50")}
        if isinstance(val.get("kitti"), dict) and "moderate_mean" in val["kitti"]:
            point["kitti_moderate"] = val["kitti"]["moderate_mean"]
        curve.append(point)
    return curve


def training_timings(records: list[dict[str, Any]]) -> dict[str, Any]:
    times = [r["epoch_time_s"] for r in records if "epoch_time_s" in r]
    rates = [r["img_s"] for r in records if "img_s" in r]
    return {
        "train_s": sum(times),
        "epochs": len(records),
        "img_s": sum(rates) / len(rates) if rates else None,
    }


def last_instance_dump(run_dir: Path) -> tuple[int, list[dict[str, Any]]] | None:
    """(epoch, rows) of a run's last per-instance weight dump (instances/epoch_N.jsonl);
    None when the run dumped none (no learnt weights)."""
    dumps = sorted(
        (run_dir / "instances").glob("epoch_*.jsonl"), key=lambda p: int(p.stem.split("_")[1])
    )
    if not dumps:
        return None
    rows = [json.loads(line) for line in dumps[-1].read_text().splitlines() if line.strip()]
    return int(dumps[-1].stem.split("_")[1]), rows


def instance_weight_summary(run_dir: Path) -> dict[str, Any] | None:
    """Weights of the last epoch's instance dump, binned by size and by occlusion level,
    as counts, sums and sums of squares (so seeds pool exactly)."""
    dump = last_instance_dump(run_dir)
    if dump is None or not dump[1]:
        return None
    epoch, rows = dump
    by_size = {}
    for lo, hi in zip(SIZE_BIN_EDGES[:-1], SIZE_BIN_EDGES[1:], strict=True):
        weights = [r["weight"] for r in rows if lo <= r["size"] < hi]
        by_size[f"{lo:g}-{hi:g}"] = _moments(weights)
    summary: dict[str, Any] = {
        "epoch": epoch,
        "all": _moments([r["weight"] for r in rows]),
        "by_size": by_size,
    }
    if all("occluded" in r for r in rows):
        levels = sorted({int(round(r["occluded"])) for r in rows})
        summary["by_occlusion"] = {
            str(level): _moments([r["weight"] for r in rows if int(round(r["occluded"])) == level])
            for level in levels
        }
    return summary


def _moments(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "sum": sum(values), "sum_sq": sum(v * v for v in values)}


# --- teacher identity ----------------------------------------------------------------


class TeacherMismatch(ConfigError):
    """The recorded rows were distilled from another teacher checkpoint than WORK_DIR's."""


def last_val_ap(run_dir: Path) -> float | None:
    """The last validation AP a training run logged (None when it logged none)."""
    curve = validation_curve(epoch_records(run_dir))
    return curve[-1]["AP"] if curve else None


def fmt_ap(ap: float | None) -> str:
    return "unknown" if ap is None else f"{100 * ap:.1f}"


# --- executing -----------------------------------------------------------------------


class BenchRunner:
    """Executes a bench, skipping every unit whose results line exists."""

    def __init__(self, bench: LoadedBench, log: Callable[[str], None] = print) -> None:
        self.bench = bench
        self.log = log
        self.results_path = bench.output_dir / RESULTS_FILE
        self.done = latest_by_key(read_results(self.results_path))
        self.versions = versions()
        # per dataset: the sha256 and val AP of the teacher checkpoint this process uses
        self.teacher_in_use: dict[str, tuple[str, float | None]] = {}
        self.warned_unrecorded: set[str] = set()

    def record(self, record: dict[str, Any]) -> None:
        record = {**record, "bench": self.bench.cfg.name, "finished_at": now()}
        append_result(self.results_path, record)
        self.done[record["key"]] = record

    def refresh(self) -> None:
        """Re-read the results: another process may share this output_dir (--seeds)."""
        self.done = latest_by_key(read_results(self.results_path))

    def run(
        self,
        cost: bool = True,
        redo_cost: bool = False,
        seeds: list[int] | None = None,
        methods: list[str] | None = None,
    ) -> None:
        def wanted(spec: RunSpec) -> bool:
            return (seeds is None or spec.seed in seeds) and (
                methods is None or spec.method.name in methods
            )

        plans = {}
        for dataset in self.bench.datasets:
            teacher = plan_teacher(self.bench, dataset)
            runs = plan_runs(self.bench, dataset, teacher)
            plans[dataset] = (teacher, runs, self.cost_key(teacher, runs))
        self.record_bench(plans)
        for dataset, (teacher, runs, cost_key) in plans.items():
            pending = [r for r in runs if r.key not in self.done and wanted(r)]
            need_cost = (
                cost and self.bench.cfg.cost.enabled and (redo_cost or cost_key not in self.done)
            )
            if teacher.key not in self.done or (
                (pending or need_cost) and not teacher.checkpoint.is_file()
            ):
                self.prepare_teacher(teacher, runs)
            elif pending or need_cost:
                here = (file_sha256(teacher.checkpoint), last_val_ap(teacher.checkpoint.parent))
                self.use_teacher(teacher, runs, *here)
            for number, spec in enumerate(runs, start=1):
                where = f"[{dataset} {number}/{len(runs)}] {spec.method.name} seed {spec.seed}"
                if not wanted(spec):
                    continue
                with claim(spec.output_dir) as mine:
                    self.refresh()
                    if dataset in self.teacher_in_use:  # else nothing of it is pending
                        self.use_teacher(teacher, runs, *self.teacher_in_use[dataset])
                    if spec.key in self.done:
                        self.log(f"{where}: done, skipped")
                        continue
                    if not mine:
                        self.log(f"{where}: running in another process, skipped")
                        continue
                    self.log(f"{where}: {spec.config}")
                    self.execute(spec)
            if need_cost:
                self.measure_cost(dataset, teacher, runs, cost_key)

    def record_bench(self, plans: dict[str, tuple[TeacherRun, list[RunSpec], str]]) -> None:
        """The bench's description, with the keys of its current units: the report shows
        those, not lines left by an earlier version of the config."""
        cfg = self.bench.cfg
        description = {
            "name": cfg.name,
            "description": cfg.description,
            "expected_wall_time": cfg.expected_wall_time,
            "methods": [m.model_dump(mode="json") for m in cfg.methods],
            "seeds": cfg.seeds,
            "comparisons": [list(pair) for pair in cfg.comparisons],
            "validity": cfg.validity,
            "datasets": {
                name: {
                    "format": train.format,
                    "train_split": describe_split(train.split),
                    "val_split": describe_split(val.split),
                }
                for name, (train, val) in self.bench.datasets.items()
            },
            "student_model": cfg.student.model.model_dump(mode="json"),
            "student_train": cfg.student.train.model_dump(mode="json"),
            "units": {
                dataset: {"teacher": teacher.key, "runs": [r.key for r in runs], "cost": cost_key}
                for dataset, (teacher, runs, cost_key) in plans.items()
            },
        }
        key = config_hash({"bench": description})
        if key not in self.done:
            self.record({"kind": "bench", "key": key, **description})

    def prepare_teacher(self, teacher: TeacherRun, runs: list[RunSpec]) -> None:
        """Train (unless given) and evaluate the teacher; refuses before recording it
        when rows of its key were distilled from another checkpoint."""
        spec = self.bench.teachers[teacher.dataset]
        tic = time.perf_counter()
        if not spec.is_trained:
            from liafkd.engine.runs import train_detector

            recorded = (self.done.get(teacher.key) or {}).get("checkpoint_sha256")
            if recorded and not teacher.checkpoint.is_file():
                self.log(
                    f"warning: [{teacher.dataset}] {self.results_path} records a teacher of "
                    f"sha256 {recorded}, and {teacher.checkpoint} is missing: retraining it. "
                    "Unless training reproduces it bit for bit, the bench will refuse to "
                    "mix its students with the recorded ones; stop now and restore that "
                    "checkpoint to skip the retraining."
                )
            self.log(f"[{teacher.dataset}] teacher: training {teacher.config}")
            train_detector(str(teacher.config), [], resume="latest")
        self.log(f"[{teacher.dataset}] teacher: evaluating {teacher.checkpoint}")
        metrics = evaluate(teacher.config, teacher.checkpoint)
        sha256 = file_sha256(teacher.checkpoint)
        self.use_teacher(teacher, runs, sha256, metrics.get("AP"))
        record = {
            "kind": "teacher",
            "key": teacher.key,
            "dataset": teacher.dataset,
            "checkpoint_sha256": sha256,
            "model": yaml.safe_load(teacher.config.read_text())["model"],
            "metrics": metrics,
            "timings": {"wall_s": time.perf_counter() - tic},
            "versions": self.versions,
        }
        if not spec.is_trained:
            records = epoch_records(teacher.checkpoint.parent)
            record["epochs"] = validation_curve(records)
            record["timings"] |= training_timings(records)
        self.record(record)

    def use_teacher(
        self, teacher: TeacherRun, runs: list[RunSpec], sha256: str, ap: float | None
    ) -> None:
        """Use the checkpoint of `sha256` for `teacher`'s rows: refuses (TeacherMismatch)
        when recorded rows of its key name another checkpoint, warns once about rows
        that name none (written before the bench recorded it)."""
        record = self.done.get(teacher.key)
        rows = [(record, record.get("checkpoint_sha256"))] if record else []
        recorded_runs = [self.done[r.key] for r in runs if r.key in self.done]
        rows += [(r, r.get("teacher_sha256")) for r in recorded_runs]
        others = sorted({sha for _, sha in rows if sha is not None and sha != sha256})
        if others:
            raise TeacherMismatch(self.mismatch_message(teacher, rows, others, sha256, ap))
        unrecorded = [r for r, sha in rows if sha is None and r.get("kind") == "run"]
        if unrecorded and teacher.dataset not in self.warned_unrecorded:
            self.warned_unrecorded.add(teacher.dataset)
            self.log(
                f"warning: [{teacher.dataset}] {len(unrecorded)} run rows of "
                f"{self.results_path} do not record their teacher's sha256 (written before "
                "the bench recorded it): whether they were distilled from the teacher at "
                f"{teacher.checkpoint} (sha256 {sha256}) is unknown. A teacher retrained in "
                "another session or on another machine is another teacher."
            )
        self.teacher_in_use[teacher.dataset] = (sha256, ap)

    def mismatch_message(
        self,
        teacher: TeacherRun,
        rows: list[tuple[dict[str, Any], str | None]],
        others: list[str],
        sha256: str,
        ap: float | None,
    ) -> str:
        record = self.done.get(teacher.key) or {}
        lines = [
            f"{self.results_path}: dataset `{teacher.dataset}`: the recorded rows were "
            "distilled from another teacher than the one this bench would use now.",
        ]
        for other in others:
            runs = sum(1 for r, sha in rows if sha == other and r.get("kind") == "run")
            recorded_ap = None
            if record.get("checkpoint_sha256") == other:
                recorded_ap = record.get("metrics", {}).get("AP")
            lines.append(
                f"  recorded: teacher sha256 {other} (val AP {fmt_ap(recorded_ap)}), {runs} runs"
            )
        lines.append(
            f"  here:     teacher sha256 {sha256} (val AP {fmt_ap(ap)}), {teacher.checkpoint}"
        )
        lines.append(
            "Training on CPU is not bit-reproducible across machines: a teacher retrained "
            "from the same config is another teacher, and students of two teachers do not "
            "pair in one table. Stopped before training a student. Either restore the "
            f"recorded teacher's checkpoint (the file of sha256 {others[0]}) to "
            f"{teacher.checkpoint}, replacing the file there, and run the same command "
            "again, or start the bench in a new output folder: "
            "`liafkd bench CONFIG --out NEW_FOLDER`."
        )
        return "\n".join(lines)

    def execute(self, spec: RunSpec) -> None:
        from liafkd.engine import runs

        tic = time.perf_counter()
        resumed = (spec.output_dir / "checkpoints").is_dir()
        summary = runs.distill_student(str(spec.config), [], resume="latest")
        train_wall = time.perf_counter() - tic
        checkpoint = spec.output_dir / "final.pt"
        tic = time.perf_counter()
        metrics = evaluate(spec.config, checkpoint)
        records = epoch_records(spec.output_dir)
        self.record(
            {
                "kind": "run",
                "key": spec.key,
                "dataset": spec.dataset,
                "method": spec.method.name,
                "base_method": spec.method.method,
                "options": spec.method.options,
                "seed": spec.seed,
                "teacher_sha256": self.teacher_in_use[spec.dataset][0],
                "metrics": metrics,
                "epochs": validation_curve(records),
                "instance_weights": instance_weight_summary(spec.output_dir),
                "timings": training_timings(records)
                | {
                    "wall_s": train_wall,
                    "eval_s": time.perf_counter() - tic,
                    "steps": summary.get("steps"),
                    "resumed": resumed,
                },
                "run_dir": relative_paths(str(spec.output_dir)),
                "config": relative_paths(spec.experiment),
                "versions": self.versions,
            }
        )

    def cost_key(self, teacher: TeacherRun, runs: list[RunSpec]) -> str:
        return config_hash(
            {
                "cost": self.bench.cfg.cost.model_dump(mode="json"),
                "teacher": teacher.key,
                "runs": sorted(r.key for r in runs if r.seed == self.bench.cfg.seeds[0]),
            }
        )

    def measure_cost(
        self, dataset: str, teacher: TeacherRun, runs: list[RunSpec], key: str
    ) -> None:
        from liafkd.bench.cost import measure_cost

        configs = {r.method.name: r.config for r in runs if r.seed == self.bench.cfg.seeds[0]}
        self.log(f"[{dataset}] cost: {len(configs)} methods, the floor and `{BASELINE}` alone")
        result = measure_cost(configs, teacher.config, teacher.checkpoint, self.bench.cfg.cost)
        record = {
            "kind": "cost",
            "key": key,
            "dataset": dataset,
            "teacher_sha256": self.teacher_in_use[dataset][0],
            **result,
            "versions": self.versions,
        }
        self.record(record)
        path = self.bench.output_dir / "cost.json"
        costs = json.loads(path.read_text()) if path.is_file() else {}
        costs[dataset] = record
        path.write_text(json.dumps(costs, indent=2, sort_keys=True) + "\n")


def run_bench(
    bench: LoadedBench,
    cost: bool = True,
    redo_cost: bool = False,
    report: bool = True,
    seeds: list[int] | None = None,
    methods: list[str] | None = None,
) -> Path:
    """Run what is not done yet (of `seeds` and `methods` only, when given), then write
    the reports; returns the output folder."""
    BenchRunner(bench).run(cost=cost, redo_cost=redo_cost, seeds=seeds, methods=methods)
    if report:
        write_reports(bench.output_dir)
    return bench.output_dir
