#!/usr/bin/env bash
# The ranking rows of cpu-synthetic-v2 and cpu-bccd-v2 (none, fgd, liaf-uniform, the best
# learnt selector, aid, crosskd, fgd+crosskd, liaf+crosskd) on 10 seeds, 12 bench
# processes at once on one GPU (src/liafkd/bench/rank.py says how). For the GPU machine:
# no network; the missing wheels (pydantic, pycocotools) come along in .whl/ as for
# benchmarks/gpu_check.sh. Results, reports and logs land in OUT_DIR; checkpoints in
# runs/gpu-rank (--work). Two calls on a time-limited machine:
#
#   bash benchmarks/gpu_rank.sh OUT_DIR --stage prepare   # data and both teachers
#   bash benchmarks/gpu_rank.sh OUT_DIR --stage run       # the 160 runs, then the reports
#   bash benchmarks/gpu_rank.sh OUT_DIR --tiny            # a few minutes on CPU
#   bash benchmarks/gpu_rank.sh OUT_DIR --dry-run         # the configs and commands only
#   bash benchmarks/gpu_rank.sh OUT_DIR --selector liaf-coop   # coop as the learnt row
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: gpu_rank.sh OUT_DIR [--stage all|prepare|run] [--tiny] [--dry-run] [...]}"
shift
if ! python3 -c "import pydantic, pycocotools" 2>/dev/null; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "pydantic/pycocotools missing and no wheels in .whl/ (see benchmarks/gpu_check.sh)" >&2
    exit 2
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/liafkd_site .whl/*.whl
  export PYTHONPATH="/tmp/liafkd_site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! python3 -c "import liafkd" 2>/dev/null; then
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
python3 -m liafkd.bench.rank "$out" "$@"
