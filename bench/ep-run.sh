#!/usr/bin/env bash
# Expert parallelism at DeepSeek-V3 widths on 2 GPUs (the nvidia-h200-x2
# machine; after bench/prepare.sh here): the 3-layer slice (256 experts)
# with its experts split over 2 ranks (bench-artifacts/v3-infer-ep2, one
# GPU each, NCCL) against the whole slice on one GPU, random bf16 weights.
# Each rank decodes its own batch (data-parallel attention), so EP=2 at
# batch B a rank serves 2B sequences. Prints decode times, tokens/s per
# GPU and the exchanges' volume and bandwidth; logs in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/ep-bench
for b in ${BATCHES:-32}; do
  $RUN time bench-artifacts/v3-infer --random-weights 1 --backend cuda --batch $((2 * b)) \
    --context 1024 --steps 8 > "$OUT/single-b$((2 * b)).log" 2>&1
  echo "1 GPU, batch $((2 * b)): $(tail -1 "$OUT/single-b$((2 * b)).log")"
  $RUN launch --nproc 2 time bench-artifacts/v3-infer-ep2 --random-weights 1 --backend cuda \
    --batch $b --context 1024 --steps 8 > "$OUT/ep2-b$b.log" 2>&1
  echo "EP=2, batch $b a rank: $(grep -v '^rank 0:' "$OUT/ep2-b$b.log" | tail -1)"
  grep '^rank 0:' "$OUT/ep2-b$b.log" | tail -1
done
