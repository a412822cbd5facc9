"""`liafkd demo`'s recipe on several seeds: does LIAF-KD's gain over the student alone
hold, and how long does the demo take?

Runs `liafkd demo` (the shipped teacher, the default recipe) once per seed, each in its
own process and its own fresh folder, and records per seed the AP of the teacher,
`none` and `liaf` on the demo's validation split, the command's wall time, the threads
and the machine's load average before and after (a busy machine makes the wall time
longer, never the AP different). Results go to benchmarks/demo/results.json:
`runs` holds the AP records (replaced per seed and thread count), `timings` every timed
run, `--time-only` runs included.

    python benchmarks/demo_seeds.py                      # seeds 0 1 2, torch's threads
    python benchmarks/demo_seeds.py --seeds 0 --threads 1
    python benchmarks/demo_seeds.py --seeds 0 --time-only   # re-time on an idle machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from liafkd.engine.demo import TEACHER_SHA256

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "demo" / "results.json"
REQUIRED_GAIN_AP = 0.02  # liaf at least 2 AP points above none on every seed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=None, help="passed to liafkd demo")
    p.add_argument(
        "--epochs", type=int, default=None, help="passed to liafkd demo (default: the demo's)"
    )
    p.add_argument(
        "--time-only",
        action="store_true",
        help="record the wall time (in `timings`) but leave the AP records alone",
    )
    p.add_argument("--work", default=str(REPO / "runs" / "demo-seeds"), help="where the demos run")
    p.add_argument("--results", default=str(RESULTS))
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="demos run at once (default 1; more only to save time: they share the "
        "cores, so their wall times are not the demo's)",
    )
    return p.parse_args(argv)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_demo(seed: int, threads: int | None, out: Path, epochs: int | None = None) -> dict:
    """One `liafkd demo` in its own process; its rows, wall time and the load around it."""
    command = [sys.executable, "-m", "liafkd", "demo", "--out", str(out), "--seed", str(seed)]
    if threads is not None:
        command += ["--threads", str(threads)]
    if epochs is not None:
        command += ["--epochs", str(epochs)]
    load_before = os.getloadavg()
    tic = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - tic
    load_after = os.getloadavg()
    (out.parent / f"{out.name}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        sys.exit(f"liafkd demo failed (exit {done.returncode}) for seed {seed}:\n{done.stderr}")
    demo = json.loads((out / "demo_results.json").read_text())
    ap = {r["run"]: r["AP"] for r in demo["rows"]}
    return {
        "seed": seed,
        # the demo refuses a teacher file whose sha256 is not this one
        "recipe": {k: demo["args"][k] for k in ("images", "epochs")}
        | {"teacher_sha256": TEACHER_SHA256},
        "threads": threads if threads is not None else "default",
        "AP": {"teacher": ap["teacher"], "none": ap["student_none"], "liaf": ap["student_liaf"]},
        "liaf_minus_none_AP": ap["student_liaf"] - ap["student_none"],
        "command_wall_s": wall,
        "demo_wall_s": demo["wall_time_s"],
        "demo_timings_s": demo.get("timings_s", {}),
        "load_average_1_5_15_before": list(load_before),
        "load_average_1_5_15_after": list(load_after),
        "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def merge(results: dict, record: dict, time_only: bool) -> None:
    timing = {k: record[k] for k in record if k not in ("AP", "liaf_minus_none_AP")}
    results.setdefault("timings", []).append(timing)
    if time_only:
        return
    key = (record["seed"], record["threads"])
    kept = [r for r in results.get("runs", []) if (r["seed"], r["threads"]) != key]
    results["runs"] = sorted(kept + [record], key=lambda r: (str(r["threads"]), r["seed"]))


def summarise(results: dict) -> dict:
    """The criterion per thread setting (a thread count may change the AP slightly)."""
    settings = sorted({str(r["threads"]) for r in results.get("runs", [])})
    return {
        f"threads {t}": summarise_runs([r for r in results["runs"] if str(r["threads"]) == t])
        for t in settings
    }


def summarise_runs(runs: list[dict]) -> dict:
    gains = [r["liaf_minus_none_AP"] for r in runs]
    return {
        "seeds": len(runs),
        "min_liaf_minus_none_AP": min(gains) if gains else None,
        "every_seed_liaf_at_least_2AP_above_none": bool(gains)
        and all(g >= REQUIRED_GAIN_AP for g in gains),
        "teacher_above_both_every_seed": bool(runs)
        and all(r["AP"]["teacher"] > max(r["AP"]["none"], r["AP"]["liaf"]) for r in runs),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results_path = Path(args.results)
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    results["machine"] = {"cpu": cpu_model(), "logical_cpus": os.cpu_count()}
    command = "python benchmarks/demo_seeds.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    work = Path(args.work) / stamp
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [
            pool.submit(run_demo, seed, args.threads, work / f"seed{seed}", args.epochs)
            for seed in args.seeds
        ]
        records = [future.result() for future in futures]
    for record in records:
        record["concurrent_demos"] = min(args.jobs, len(args.seeds))
        record["command"] = command
        merge(results, record, args.time_only)
        ap = record["AP"]
        print(
            f"seed {record['seed']}: teacher {100 * ap['teacher']:.1f}, "
            f"none {100 * ap['none']:.1f}, liaf {100 * ap['liaf']:.1f} AP "
            f"({100 * record['liaf_minus_none_AP']:+.1f}); "
            f"{record['command_wall_s'] / 60:.1f} min wall, load "
            f"{record['load_average_1_5_15_before'][0]:.1f} -> "
            f"{record['load_average_1_5_15_after'][0]:.1f}",
            flush=True,
        )
    results["summary"] = summarise(results)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
