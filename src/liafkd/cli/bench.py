"""`liafkd bench`: run a benchmark of methods x seeds x datasets, or rebuild its report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from liafkd.bench.presets import preset_names

    p = subparsers.add_parser(
        "bench",
        help="compare distillation methods over seeds and datasets; report and cost",
        description="`liafkd bench BENCH_CONFIG` trains the teacher once per dataset (or uses "
        "the given one), trains the student with every method and seed, evaluates each "
        "run, measures each method's cost, and writes results.jsonl, report.md, "
        "report.html and plots to the bench's output_dir. Finished runs are never redone: "
        "rerun the same command to continue an interrupted bench. BENCH_CONFIG is a YAML "
        f"file or a preset name (configs/bench: {', '.join(preset_names())}). "
        "`liafkd bench report BENCH_DIR [--readme README.md]` rebuilds the reports from "
        "BENCH_DIR/results.jsonl alone and, with --readme, the README text between "
        "<!-- bench:NAME:start --> and <!-- bench:NAME:end -->. `liafkd bench pick "
        "BENCH_DIR [--top N]` applies a tuning bench's selection rule (the best mean AP "
        "among its LIAF-KD rows; a cheaper row within 0.3 AP wins) and writes "
        "BENCH_DIR/choice.json. Superseded presets live in configs/bench/archive (run "
        "them by path).",
    )
    p.add_argument(
        "target", metavar="BENCH_CONFIG|report|pick", help="bench YAML, preset, `report` or `pick`"
    )
    p.add_argument(
        "bench_dir", nargs="?", metavar="BENCH_DIR", help="with `report` or `pick`: the folder"
    )
    p.add_argument("--out", help="output folder (default: the config's output_dir)")
    p.add_argument("--no-cost", action="store_true", help="skip the cost measurement")
    p.add_argument("--redo-cost", action="store_true", help="measure the cost again")
    p.add_argument(
        "--estimate",
        action="store_true",
        help="train nothing: time a few steps of each part and print the expected wall time",
    )
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="run only these of the config's seeds (split a bench over processes or "
        "machines sharing output_dir; each skips runs another has finished)",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        metavar="NAME",
        help="run only these rows (by name) of the config's methods: run the rows that "
        "gate the others first (e.g. the validity rows), or split a bench over sittings",
    )
    p.add_argument("--readme", type=Path, help="with `report`: README to update")
    p.add_argument("--name", help="with `report --readme`: marker name (default: the bench's)")
    p.add_argument(
        "--top", type=int, default=3, help="with `pick`: how many rows stage 3 reruns (3)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.target == "report":
        return report(args)
    if args.target == "pick":
        return pick(args)
    import torch

    from liafkd.bench.config import load_bench, resolve_bench_path
    from liafkd.bench.runner import run_bench
    from liafkd.engine.trainer import TrainingInterrupted

    if args.threads:
        torch.set_num_threads(args.threads)
    bench = load_bench(resolve_bench_path(args.target), output_dir=args.out)
    unknown = sorted(set(args.seeds or []) - set(bench.cfg.seeds))
    if unknown:
        print(f"error: --seeds {unknown}: the bench's seeds are {bench.cfg.seeds}", file=sys.stderr)
        return 2
    names = [m.name for m in bench.cfg.methods]
    unknown_methods = [m for m in args.methods or [] if m not in names]
    if unknown_methods:
        print(f"error: --methods {unknown_methods}: the bench's rows are {names}", file=sys.stderr)
        return 2
    if args.estimate:
        from liafkd.bench.estimate import estimate_wall_time, format_estimate

        print(format_estimate(bench, estimate_wall_time(bench)))
        return 0
    print(f"bench {bench.cfg.name}: expected wall time {bench.cfg.expected_wall_time}")
    try:
        out = run_bench(
            bench,
            cost=not args.no_cost,
            redo_cost=args.redo_cost,
            seeds=args.seeds,
            methods=args.methods,
        )
    except TrainingInterrupted as e:
        print(
            f"bench interrupted by signal {e.signum}; the run in progress saved a checkpoint. "
            f"Run the same command again to continue where it stopped.",
            file=sys.stderr,
        )
        return 128 + e.signum
    print(f"results: {out / 'results.jsonl'}\nreport: {out / 'report.md'}, {out / 'report.html'}")
    return 0


def report(args: argparse.Namespace) -> int:
    from liafkd.bench.report import update_readme, write_reports
    from liafkd.config import ConfigError

    if not args.bench_dir:
        raise ConfigError("liafkd bench report: give the bench folder (BENCH_DIR)")
    folder = Path(args.bench_dir)
    paths = write_reports(folder)
    print(f"report: {paths['markdown']}, {paths['html']}")
    if args.readme:
        if not args.readme.is_file():
            raise ConfigError(f"{args.readme}: README not found")
        name = update_readme(args.readme, folder, args.name)
        print(f"{args.readme}: bench:{name} section regenerated")
    return 0


def pick(args: argparse.Namespace) -> int:
    from liafkd.bench.tuning import CHOICE_FILE, format_choice, write_choice
    from liafkd.config import ConfigError

    if not args.bench_dir:
        raise ConfigError("liafkd bench pick: give the tuning bench's folder (BENCH_DIR)")
    folder = Path(args.bench_dir)
    print(format_choice(write_choice(folder, args.top)))
    print(f"wrote {folder / CHOICE_FILE}")
    return 0
