#!/usr/bin/env bash
# Runs on the GPU machine (after scripts/gpu-prepare.sh here): the NCCL path
# of the CUDA backend. World size 1 (artifacts compiled with --ep 1: every
# exchange and reduction runs through NCCL with one rank) against the
# unpartitioned artifact, forward (logits) and 3 training steps
# (checkpoints); with 2 GPUs also --ep 2 on two ranks (one GPU each).
# Prints the exchanges' communication volume and a table last; logs in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-parallel
A=gpu-artifacts
F=test/data/fixtures/tiny-a
GPUS=$(nvidia-smi -L | wc -l)
IDS=1,5,9,200,31,77,4,300/8,2,100,6,71,250,29,11/3,4,5,6,7,8,9,10/300,301,2,9,9,1,77,5
$RUN tokenize --text README.md --out "$OUT/readme.tokens" > /dev/null
TRAIN="train --backend cuda --weights $F --data $OUT/readme.tokens --steps 3 --batch 4 --seq 16 --quiet"
rows=()
row() { rows+=("$(printf '%-44s %s' "$1" "$2")"); }
$RUN forward $A/tiny-a --backend cuda --weights $F --ids $IDS --out "$OUT/single.st" > "$OUT/single.log" 2>&1
$RUN forward $A/ep1-tiny-a --backend cuda --weights $F --ids $IDS --out "$OUT/ep1.st" > "$OUT/ep1.log" 2>&1
cat "$OUT/ep1.log"
cmp -s "$OUT/single.st" "$OUT/ep1.st" && row "forward, NCCL world size 1" "logits identical" ||
  row "forward, NCCL world size 1" "DIFFERS ($(tail -1 "$OUT/ep1.log"))"
$RUN $TRAIN $A/train-tiny-a --save-dir "$OUT/t-single" > "$OUT/t-single.log" 2>&1
$RUN $TRAIN $A/ep1-train-tiny-a --save-dir "$OUT/t-ep1" > "$OUT/t-ep1.log" 2>&1
tail -2 "$OUT/t-ep1.log"
row "train 3 steps, NCCL world size 1" "$(python3 test/Training/Inputs/compare_checkpoints.py \
  "$OUT/t-single/step-000003/model.safetensors" "$OUT/t-ep1/step-000003/model.safetensors" 1e-5 2>&1 | tail -1)"
if [ "$GPUS" -ge 2 ]; then
  $RUN launch --nproc 2 forward $A/ep2-tiny-a --backend cuda --weights $F --ids $IDS \
    --out "$OUT/ep2.st" > "$OUT/ep2.log" 2>&1
  cat "$OUT/ep2.log"
  cmp -s "$OUT/single.st" "$OUT/ep2.st" && row "forward, EP=2 on 2 GPUs" "logits identical" ||
    row "forward, EP=2 on 2 GPUs" "DIFFERS ($(tail -1 "$OUT/ep2.log"))"
  $RUN launch --nproc 2 forward $A/ep2-placed-tiny-a --backend cuda --weights $F --ids $IDS \
    --out "$OUT/placed.st" > "$OUT/placed.log" 2>&1
  cmp -s "$OUT/single.st" "$OUT/placed.st" && row "forward, EP=2 placement with copies" "logits identical" ||
    row "forward, EP=2 placement with copies" "DIFFERS ($(tail -1 "$OUT/placed.log"))"
  $RUN launch --nproc 2 $TRAIN $A/ep2-train-tiny-a --save-dir "$OUT/t-ep2" > "$OUT/t-ep2.log" 2>&1
  tail -3 "$OUT/t-ep2.log"
  row "train 3 steps, EP=2 on 2 GPUs" "$(python3 test/Training/Inputs/compare_checkpoints.py \
    "$OUT/t-single/step-000003/model.safetensors" "$OUT/t-ep2/step-000003/model.safetensors" 1e-5 2>&1 | tail -1)"
fi
echo
echo "== NCCL path ($(date -u +%F), $GPUS x $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1))"
printf '%s\n' "${rows[@]}"
