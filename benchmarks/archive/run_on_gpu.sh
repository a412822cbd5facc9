#!/usr/bin/env bash
# Everything this project runs in one lease of the GPU machine (one H200, 16 cores, no
# network), in one command that fits its 10-minute limit:
#   1. the GPU check (benchmarks/gpu_check.sh), alone on the machine, since it times;
#   2. then, side by side: the cpu-synthetic-calibrated bench on the GPU (one process
#      trains the teacher, then 5 share the runs through the bench's claim files; no
#      cost: the cost of that bench is measured on CPU) and the test suite on the
#      machine's own torch / torchvision (pytest-xdist, 8 workers).
# Everything lands under OUT_DIR in at most 8 files (the machine returns no more):
#   check/{results.json,summary.md,loss_curves.png,log.txt,cuda_tests.txt},
#   bench_results.jsonl, bench_log.txt, suite.txt
#
#   bash benchmarks/archive/run_on_gpu.sh OUT_DIR [CHECK_MINUTES] [BENCH_SECONDS]
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${1:?usage: run_on_gpu.sh OUT_DIR [CHECK_MINUTES] [BENCH_SECONDS]}"
check_minutes="${2:-6}"
bench_seconds="${3:-200}"  # bench and suite stop here; what finished comes back
mkdir -p "$out/check"
bash benchmarks/gpu_check.sh "$out/check" --budget-minutes "$check_minutes"
export PYTHONPATH="/tmp/liafkd_site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

bench=configs/bench/archive/cpu-synthetic-calibrated.yaml
results=benchmarks/archive/cpu-synthetic-calibrated/results.jsonl
log="$out/bench_log.txt"
run_bench() { OMP_NUM_THREADS=2 timeout "$bench_seconds" python3 -m liafkd.cli.main bench \
  "$bench" --no-cost --threads 2 "$@" >>"$log" 2>&1; }
run_bench --seeds 0 &
first=$!
until grep -qs '"kind": "teacher"' "$results" || ! kill -0 $first 2>/dev/null; do sleep 2; done
workers=($first)
for _ in 1 2 3 4; do
  run_bench &
  workers+=($!)
done
(while sleep 10; do cp -f "$results" "$out/bench_results.jsonl" 2>/dev/null; done) &
copier=$!
timeout "$bench_seconds" python3 -m pytest -rs -p no:cacheprovider -n 6 >"$out/suite.txt" 2>&1
echo "suite exit $?" >>"$out/suite.txt"
wait "${workers[@]}"
kill $copier
cp -f "$results" "$out/bench_results.jsonl"
tail -3 "$out/suite.txt"
grep -c '"kind": "run"' "$out/bench_results.jsonl"
