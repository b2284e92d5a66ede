#!/usr/bin/env bash
# Prefill GEMM schedule sweep, one short device call (after bench/prepare.sh
# and scripts/gpu-prepare.sh here):
#   run(command="bash scripts/gpu-gemm-tune.sh", carry=["gpu-artifacts",
#       "bench-artifacts", ".deps"])
# Checks the bf16 and FP8 wgmma GEMMs in the grouped tile order
# (DSV3_GEMM_TILE_GROUP), then times the bench slice's prefill 4 x 2048 for
# each tile order and width (DSV3_BF16_WIDE) and profiles the FP8 prefill.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-gemm-tune}
mkdir -p "$OUT"
[ -x build-gpu/bin/dsv3-run ] || bash scripts/gpu-build.sh "$OUT/build.log" || exit 1
RUN=build-gpu/bin/dsv3-run
status=0
for wide in 0 1; do
  DSV3_GEMM_TILE_GROUP=8 DSV3_BF16_WIDE=$wide timeout 120 $RUN bf16-check \
    gpu-artifacts/v3-width-bf16 --seq 16 --shape 700,1536,1024 2>&1 |
    grep -E "gemm_bf16|FAIL|error" || status=1
done
DSV3_GEMM_TILE_GROUP=8 timeout 120 $RUN fp8-gemm gpu-artifacts/tiny-a-fp8 --backend cuda \
  --shape 700,1536,1024 --seed 3 2>&1 | grep -E "wgmma|FAIL|error" || status=1
T="$RUN time bench-artifacts/v3-infer --random-weights 1 --backend cuda --batch 4 --seq 2048 --steps 2"
F="$RUN time bench-artifacts/v3-infer-fp8 --random-weights 1 --backend cuda --batch 4 --seq 2048 --steps 2"
for group in 1 4 8 16; do
  for wide in 0 1; do
    printf 'bf16 group %-2s wide %s: ' $group $wide
    DSV3_GEMM_TILE_GROUP=$group DSV3_BF16_WIDE=$wide $T 2>&1 | tail -1 | grep -o "prefill [0-9.]* ms"
  done
  printf 'FP8  group %-2s       : ' $group
  DSV3_GEMM_TILE_GROUP=$group $F 2>&1 | tail -1 | grep -o "prefill [0-9.]* ms"
done
DSV3_PROFILE=1 ${F/--steps 2/--steps 1} > "$OUT/profile-fp8-prefill.log" 2>&1
sed -n 1,14p "$OUT/profile-fp8-prefill.log"
exit $status
