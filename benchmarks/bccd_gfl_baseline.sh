#!/usr/bin/env bash
# Trains the CPU-sized GFL student recipe on BCCD (train split), evaluates it on val,
# and copies the run's summary, metrics and wall time to benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results/bccd_gfl_student_cpu
mkdir -p "$out" runs/logs
/usr/bin/time -v -o "$out/time.txt" liafkd train configs/bccd/gfl_student_cpu.yaml "$@"
cp runs/bccd/gfl_student/summary.json runs/bccd/gfl_student/metrics.jsonl "$out/"
python3 - "$out" <<'PY'
import json, pathlib, re, sys
out = pathlib.Path(sys.argv[1])
summary = json.loads((out / "summary.json").read_text())
wall = re.search(r"Elapsed \(wall clock\) time.*: (.*)", (out / "time.txt").read_text()).group(1)
final = summary["final"]
print(f"BCCD val: AP {100 * final['AP']:.1f}, AP50 {100 * final['AP50']:.1f}; wall time {wall}")
PY
