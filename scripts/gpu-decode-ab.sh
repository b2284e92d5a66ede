#!/usr/bin/env bash
# A kernel change to decode, checked and A/B-timed in one device call (~5
# min): the artifacts of the bench slice compiled here before the change
# (OLD, default bench-artifacts/v3-infer-old) and after it (NEW, default
# bench-artifacts/v3-infer), both by `dsv3c bench/configs/v3-infer-3layer.json
# --target cuda --dtype bf16 --max-batch 128 --max-seq 2048 --max-tokens 8192`,
# and gpu-artifacts/{tiny-a-bf16,v3-width-bf16} after it (scripts/gpu-prepare.sh):
#   run(command="bash scripts/gpu-decode-ab.sh",
#       carry=["gpu-artifacts", "bench-artifacts", ".deps"])
# 1. bf16-check of the V3-width slice (every staged decode tile bitwise
#    against mla_decode_mma, which it holds to float64; the tiles timed at
#    128 rows x 1024 cached rows), compare of tiny-a bf16 against the host
#    (every kernel, 1e-4) and its verify against the float64 oracle.
# 2. Decode at context 1024 at BATCHES (default 1 32 128), OLD and NEW
#    alternating, ROUNDS times (default 3): the medians' spread between
#    rounds is the machine's, the OLD/NEW difference within a round the
#    change's.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-decode-ab
status=0
OLD=${OLD:-bench-artifacts/v3-infer-old}
NEW=${NEW:-bench-artifacts/v3-infer}
: > "$OUT/checks.txt"
: > "$OUT/time.log"
$RUN bf16-check gpu-artifacts/v3-width-bf16 --seq 64 --context 30 > "$OUT/bf16-check.log" 2>&1 ||
  status=1
grep -E "staged|timing 128|bf16-check: |FAIL" "$OUT/bf16-check.log" | tee -a "$OUT/checks.txt"
check "compare-tiny-a-bf16" timeout 120 $RUN compare gpu-artifacts/tiny-a-bf16 \
  --weights test/data/fixtures/tiny-a --ids 1,5,9,200,31,77,4,300/8,2,100,6,71,250,29,11
check "verify-tiny-a-bf16" timeout 120 $RUN verify gpu-artifacts/tiny-a-bf16 \
  --weights test/data/fixtures/tiny-a --oracle test/data/fixtures/tiny-a --backend cuda
for round in $(seq ${ROUNDS:-3}); do
  for b in ${BATCHES:-1 32 128}; do
    for a in "$OLD" "$NEW"; do
      s=$(( b == 128 ? 8 : b == 32 ? 16 : 32 ))
      ms=$(timeout 90 $RUN time "$a" --random-weights 1 --backend cuda --batch $b \
        --context 1024 --steps $s 2>&1 | tail -1 | grep -o "decode [0-9.]* ms" | grep -o "[0-9.]*")
      printf 'round %s b%-4s %-32s %s ms\n' $round $b "$a" "$ms" | tee -a "$OUT/time.log"
    done
  done
done
finish time.log
