"""The ranking rows of both ranking benches on many seeds at once: several bench
processes share one GPU (benchmarks/gpu_rank.sh runs this on the GPU machine).

    python -m liafkd.bench.rank OUT_DIR [--stage all|prepare|run] [--tiny] [--dry-run]
        [--seeds 10] [--workers 12] [--budget-s 450] [--selector ROW] [--work runs/gpu-rank]

For cpu-synthetic-v2 and cpu-bccd-v2 it writes a derived bench config (OUT_DIR/configs):
the rows `none`, `fgd`, `liaf-uniform`, the best learnt selector, `aid`, `crosskd`,
`fgd+crosskd` and `liaf+crosskd`, seeds 0..N-1, on `cuda`, no cost measurement, results
in OUT_DIR/NAME-rank (checkpoints under --work). Then:

1. prepare, one process per bench at once: generate the data and train the teacher (and
   `none` on seed 0), so that no two processes generate data or train a teacher;
2. run: --workers processes of `liafkd bench CONFIG` spread over the benches; they share
   each bench's output_dir and skip the runs another holds (the bench's claim files);
   at --budget-s (counted from the start) they are stopped, each saving a checkpoint
   that a rerun resumes from;
3. report: `liafkd bench report` on each bench (95% intervals and p over the seeds).

--stage prepare does step 1 only, --stage run steps 2 and 3 (on prepared data and
teachers under the same --work): the 8-minute target is for the run stage, since
training cpu-synthetic-v2's teacher (9,144 steps) alone takes minutes. Each stage can be
repeated: finished runs are skipped and interrupted ones resume.

The best learnt selector is the tuning bench's (cpu-synthetic-v2-tune/choice.json) best
row with lam > 0 among those run on the most seeds; --selector names another row of both
presets. --tiny is a minute-scale CPU version: cpu-synthetic-v2's rows on 12 generated
images (in OUT_DIR/data), one epoch each, 2 seeds, 2 workers, checks off (a teacher of
one epoch scores about 0). --dry-run writes the configs and prints the commands only.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from liafkd.bench.config import BASELINE, PRESET_DIR, load_bench
from liafkd.bench.tuning import CHOICE_FILE
from liafkd.config import ConfigError, read_yaml

RANKING_PRESETS = ("cpu-synthetic-v2", "cpu-bccd-v2")
TUNING_CHOICE = PRESET_DIR.parents[1] / "benchmarks" / "cpu-synthetic-v2-tune" / CHOICE_FILE
UNIFORM = "liaf-uniform"
SELECTOR = "{selector}"  # where the best learnt selector's row goes
ROWS = (BASELINE, "fgd", UNIFORM, SELECTOR, "aid", "crosskd", "fgd+crosskd", "liaf+crosskd")
COMPARISONS = (
    (UNIFORM, "fgd"),
    (SELECTOR, UNIFORM),
    ("liaf+crosskd", "fgd+crosskd"),
    ("liaf+crosskd", "crosskd"),
    ("fgd+crosskd", "crosskd"),
    ("aid", "fgd"),
    (UNIFORM, "aid"),
)
SUFFIX = "-rank"
STOP_GRACE_S = 60  # after SIGTERM a run saves its checkpoint; then it is killed
TINY_SYNTH = {"synth_images": 12, "synth_size": [96, 160]}
TINY_TRAIN = {"schedule": {"epochs": 1, "warmup_iters": 2, "policy": "cosine"}, "val_interval": 1}


@dataclass
class RankPlan:
    configs: list[Path]
    prepare: list[list[str]]  # one per bench, all at once, before the workers
    workers: list[list[str]]
    reports: list[list[str]]
    budget_s: float
    runs: int = 0  # (bench, row, seed) units in all
    notes: list[str] = field(default_factory=list)


def best_learnt_row(choice: dict[str, Any]) -> str:
    """The tuning's best row whose selector learns (lam > 0), among the rows run on the
    most seeds: the learnt weighting the ranking compares with uniform weights."""
    learnt = [r for r in choice["candidates"] if _stated_lam(r.get("options", {})) > 0]
    if not learnt:
        raise ConfigError("the tuning choice has no row with a learnt selector (lam > 0)")
    most = max(len(r["seeds"]) for r in learnt)
    return max((r for r in learnt if len(r["seeds"]) == most), key=lambda r: r["mean_ap"])["row"]


def _stated_lam(options: dict[str, Any]) -> float:
    """The row's selector.lam as its options state it (0: unstated, uniform weights)."""
    return float(options.get("liaf", {}).get("selector", {}).get("lam", 0.0))


def rank_rows(selector: str) -> list[str]:
    return [selector if row == SELECTOR else row for row in ROWS]


def _absolute(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def derive(
    preset: Path,
    rows: list[str],
    seeds: int,
    device: str,
    output_dir: Path,
    work_dir: Path,
    tiny_data: Path | None = None,
) -> dict[str, Any]:
    """The preset's raw config, reduced to `rows` on `seeds` seeds on `device`, with every
    path absolute (the derived file lives elsewhere)."""
    raw = read_yaml(preset)
    base = preset.parent.resolve()
    by_name = {(m if isinstance(m, str) else m["name"]): m for m in raw["methods"]}
    missing = [row for row in rows if row not in by_name]
    if missing:
        raise ConfigError(f"{preset}: no row {missing} (its rows: {sorted(by_name)})")
    name = raw["name"] + SUFFIX
    raw.update(
        name=name,
        description=f"{raw['name']}'s data, teacher and student (configs/bench/{preset.name}"
        f"), its ranking rows only, on {seeds} seeds, several runs at once on one {device} "
        "device.",
        expected_wall_time="target: the runs of both ranking benches in under 8 min on one "
        "H200 with 12 processes, after the teachers are trained (not measured yet)",
        output_dir=str(output_dir / name),
        work_dir=str(work_dir / name),
        methods=[copy.deepcopy(by_name[row]) for row in rows],
        seeds=list(range(seeds)),
        validity=[v for v in raw.get("validity", []) if v in rows],
        comparisons=[list(p) for p in _comparisons(rows)],
        cost={"enabled": False},
    )
    for part in ("teacher", "student"):
        raw[part].setdefault("train", {})["device"] = device
    if "config" in raw["teacher"]:
        for key in ("config", "checkpoint"):
            raw["teacher"][key] = _absolute(raw["teacher"][key], base)
    for entry in raw["datasets"]:
        for split in ("train", "val"):
            if isinstance(entry[split], str):
                entry[split] = _absolute(entry[split], base)
            else:
                entry[split]["root"] = _absolute(entry[split]["root"], base)
    if tiny_data is not None:
        _shrink(raw, tiny_data)
    return raw


def _comparisons(rows: list[str]) -> list[tuple[str, str]]:
    selector = rows[ROWS.index(SELECTOR)]
    pairs = [(selector if a == SELECTOR else a, b) for a, b in COMPARISONS]
    return [(a, b) for a, b in pairs if a in rows and b in rows and a != b]


def _shrink(raw: dict[str, Any], data: Path) -> None:
    """--tiny: 12 small generated images, one epoch, checks off."""
    for entry in raw["datasets"]:
        for split in ("train", "val"):
            if entry[split].get("format") != "synthetic":
                raise ConfigError("--tiny needs a synthetic dataset")
            entry[split].update(TINY_SYNTH, root=str(data))
        entry["augment"] = {**entry.get("augment", {}), "image_size": TINY_SYNTH["synth_size"]}
        entry["batch_size"] = 3
    for part in ("teacher", "student"):
        raw[part]["train"].update(copy.deepcopy(TINY_TRAIN))
    raw["distill_options"] = {**raw.get("distill_options", {}), "checks": {"enabled": False}}
    raw["expected_wall_time"] = "a few min on 2 CPU cores"


def make_plan(
    out_dir: Path,
    *,
    tiny: bool = False,
    seeds: int | None = None,
    workers: int | None = None,
    budget_s: float | None = None,
    selector: str | None = None,
    work_dir: Path = Path("runs/gpu-rank"),
) -> RankPlan:
    """Write the derived configs and say which commands run them."""
    out_dir = out_dir.resolve()
    presets = RANKING_PRESETS[:1] if tiny else RANKING_PRESETS
    seeds = seeds or (2 if tiny else 10)
    workers = workers or (2 if tiny else 12)
    budget_s = budget_s or (600 if tiny else 450)
    device = "cpu" if tiny else "cuda"
    notes = []
    if selector is None:
        selector = best_learnt_row(json.loads(TUNING_CHOICE.read_text()))
        notes.append(f"best learnt selector (from {TUNING_CHOICE.name}): {selector}")
    rows = rank_rows(selector)
    configs = []
    for preset in presets:
        raw = derive(
            PRESET_DIR / f"{preset}.yaml",
            rows,
            seeds,
            device,
            out_dir,
            work_dir.resolve(),
            tiny_data=out_dir / "data" / "synthetic-tiny" if tiny else None,
        )
        path = out_dir / "configs" / f"{raw['name']}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        load_bench(path)  # every row validates before anything runs
        configs.append(path)
    bench = [sys.executable, "-m", "liafkd.cli.main", "bench"]
    threads = ["--threads", "1", "--no-cost"]
    prepare = [[*bench, str(c), *threads, "--methods", BASELINE, "--seeds", "0"] for c in configs]
    run = [[*bench, str(configs[k % len(configs)]), *threads] for k in range(workers)]
    reports = [[*bench, "report", str(out_dir / f"{p}{SUFFIX}")] for p in presets]
    units = len(presets) * len(rows) * seeds
    return RankPlan(configs, prepare, run, reports, budget_s, units, notes)


def describe(plan: RankPlan) -> str:
    lines = [*plan.notes, f"{plan.runs} runs, {len(plan.workers)} workers, {plan.budget_s:.0f} s"]
    lines += [f"config: {c}" for c in plan.configs]
    for stage in ("prepare", "workers", "reports"):
        lines += [f"{stage}: {shlex.join(cmd)}" for cmd in getattr(plan, stage)]
    return "\n".join(lines)


STAGES = {"all": ("prepare", "workers", "reports"), "prepare": ("prepare",)}
STAGES["run"] = ("workers", "reports")


def execute(plan: RankPlan, log_dir: Path, stage: str = "all") -> int:
    """Prepare (all benches at once), then the workers until they finish or the budget
    ends, then the reports (those of `stage`); returns how many steps failed."""
    start = time.monotonic()
    log_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for stage_name in ("prepare", "workers"):
        if stage_name not in STAGES[stage]:
            continue
        commands = getattr(plan, stage_name)
        procs = [_start(cmd, log_dir / f"{stage_name}-{k}.log") for k, cmd in enumerate(commands)]
        codes = _wait(procs, deadline=start + plan.budget_s)
        print(f"{stage_name}: exit codes {codes}", flush=True)
        failed += any(code != 0 for code in codes)
    for k, cmd in enumerate(plan.reports if "reports" in STAGES[stage] else []):
        with (log_dir / f"report-{k}.log").open("w") as log:
            failed += subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode != 0
    return failed


def _start(cmd: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    with log.open("w") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)


def _wait(procs: list[subprocess.Popen], deadline: float) -> list[int]:
    """Wait for every process; at the deadline stop them (SIGTERM: a run saves its
    checkpoint), and kill what still runs STOP_GRACE_S later."""
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(1.0)
    running = [p for p in procs if p.poll() is None]
    for p in running:
        p.send_signal(signal.SIGTERM)
    for p in running:
        try:
            p.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return [p.returncode for p in procs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="results, reports, derived configs and logs")
    parser.add_argument("--stage", choices=sorted(STAGES), default="all")
    parser.add_argument("--tiny", action="store_true", help="minute-scale CPU version")
    parser.add_argument("--dry-run", action="store_true", help="write configs, run nothing")
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 (10; --tiny 2)")
    parser.add_argument("--workers", type=int, help="processes at once (12; --tiny 2)")
    parser.add_argument("--budget-s", type=float, help="stop the runs at (450 s; --tiny 600)")
    parser.add_argument("--selector", help="the learnt-selector row (default: the tuning's)")
    parser.add_argument("--work", type=Path, default=Path("runs/gpu-rank"), help="checkpoints")
    args = parser.parse_args(argv)
    try:
        plan = make_plan(
            args.out,
            tiny=args.tiny,
            seeds=args.seeds,
            workers=args.workers,
            budget_s=args.budget_s,
            selector=args.selector,
            work_dir=args.work,
        )
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(describe(plan), flush=True)
    if args.dry_run:
        return 0
    return 1 if execute(plan, args.out / "logs", args.stage) else 0


if __name__ == "__main__":
    sys.exit(main())
