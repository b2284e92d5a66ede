#!/usr/bin/env bash
# Prefill GEMM schedules, one short device call (after bench/prepare.sh and
# scripts/gpu-prepare.sh here):
#   run(command="bash scripts/gpu-gemm-tune.sh", carry=["gpu-artifacts",
#       "bench-artifacts", ".deps"])
# Checks the bf16 GEMM forms of each Hopper schedule against float64
# (DSV3_BF16_GEMM=3: gemm_bf16_tma, TMA-fed and warp-specialized; 2:
# gemm_bf16_wgmma), times them at o_proj's prefill shape, then times the
# bench slice's prefill 4 x 2048 for each schedule and tile order
# (DSV3_GEMM_TILE_GROUP) and profiles the fastest.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-gemm-tune
status=0
for cfg in "DSV3_BF16_GEMM=3" "DSV3_BF16_GEMM=3 DSV3_GEMM_TILE_GROUP=8" "DSV3_BF16_GEMM=2"; do
  echo "== $cfg"
  for shape in 300,1536,7168 200,200,520 700,1536,1024; do
    t=; [ $shape = 300,1536,7168 ] && t=DSV3_GEMM_TIME=8192,7168,16384
    env $cfg $t timeout 60 $RUN bf16-check gpu-artifacts/v3-width-bf16 --seq 16 --shape $shape \
      2>&1 | grep -E "gemm_bf16|FAIL|error|rror" | grep -v linear_mma || status=1
  done
  env $cfg timeout 60 $RUN bf16-check gpu-artifacts/tiny-a-bf16-long --seq 16 --shape 129,72,64 \
    2>&1 | grep -E "FAIL|error|rror"
done
T="$RUN time bench-artifacts/v3-infer --random-weights 1 --backend cuda --batch 4 --seq 2048 --steps 2"
for cfg in "DSV3_BF16_GEMM=2" "DSV3_BF16_GEMM=3" "DSV3_BF16_GEMM=3 DSV3_GEMM_TILE_GROUP=8"; do
  printf '%-42s ' "$cfg:"
  env $cfg timeout 60 $T 2>&1 | tail -1 | grep -o "prefill [0-9.]* ms"
done
DSV3_BF16_GEMM=3 DSV3_PROFILE=1 timeout 60 ${T/--steps 2/--steps 1} > "$OUT/profile-prefill.log" 2>&1
sed -n 1,12p "$OUT/profile-prefill.log"
exit $status
