#!/usr/bin/env bash
# Issue "Ecosystem": a torchvision RetinaNet student on the synthetic default, alone and
# distilled from the CPU GFL teacher with fgd and liaf (8 epochs each, one thread), then
# an ONNX export of a GFL student checked in onnxruntime and a `liafkd viz` figure.
# Needs the teacher (liafkd train configs/synthetic/gfl_teacher_cpu.yaml) and, for the
# ONNX check, the BCCD student (bash benchmarks/bccd_gfl_baseline.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
out=benchmarks/results/retinanet_from_gfl
mkdir -p "$out"
short=(--set train.schedule.epochs=8 --set train.val_interval=8)
liafkd train configs/synthetic/retinanet_student_cpu.yaml "${short[@]}"
liafkd distill configs/synthetic/distill_retinanet_fgd.yaml "${short[@]}"
liafkd distill configs/synthetic/distill_retinanet_liaf.yaml "${short[@]}"
cp runs/synthetic/retinanet_student/summary.json "$out/none.json"
cp runs/synthetic/retinanet_fgd/summary.json "$out/fgd.json"
cp runs/synthetic/retinanet_liaf/summary.json "$out/liaf.json"
liafkd viz runs/synthetic/retinanet_liaf --config configs/synthetic/distill_retinanet_liaf.yaml
cp runs/synthetic/retinanet_liaf/viz/weight_vs_instance_epoch_8.png docs/images/retinanet_liaf_weights_epoch8.png
python3 benchmarks/onnx_check.py runs/bccd/gfl_student/final.pt configs/bccd/gfl_student_cpu.yaml
python3 benchmarks/results_table.py retinanet
