#!/usr/bin/env bash
# The GPU check (src/liafkd/bench/gpu_check.py): every CUDA path of liafkd run once and
# measured, in about 8 minutes on one H200. Written for a machine with no network whose
# Python already has torch, torchvision, onnx, numpy, PyYAML, tqdm, matplotlib, pytest
# and hypothesis: the missing wheels (pydantic, pycocotools and theirs) come along in
# .whl/ (see the README's GPU section for the download command).
#
#   bash benchmarks/gpu_check.sh OUT_DIR [--tiny] [--suite] [--budget-minutes M]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: gpu_check.sh OUT_DIR [options]}"
shift
if ! python3 -c "import pydantic, pycocotools" 2>/dev/null; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "pydantic/pycocotools missing and no wheels in .whl/ (see README: GPU)" >&2
    exit 2
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/liafkd_site .whl/*.whl
  export PYTHONPATH="/tmp/liafkd_site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! python3 -c "import liafkd" 2>/dev/null; then
  # no network: build with the machine's setuptools instead of an isolated build env
  python3 -m pip install -q --no-deps --no-build-isolation -e . \
    || export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
python3 -m liafkd.bench.gpu_check --out "$out" "$@"
