#!/usr/bin/env bash
# The wgmma GEMMs (sm_90a), in one short device call. Here, first:
#   scripts/gpu-prepare.sh (v3-width-bf16, tiny-a-bf16, tiny-a-bf16-long,
#   tiny-a-fp8 are the ones used) and, for the prefill timings,
#   bench/prepare.sh (v3-infer, v3-infer-fp8); then
#   run(command="bash scripts/gpu-wgmma-check.sh", carry=["gpu-artifacts",
#       "bench-artifacts", ".deps"])
# 1. The bf16 GEMMs against float64 on the same bf16 operands (dsv3-run
#    bf16-check --shape: plain, gated, grouped) with gemm_bf16_wgmma (the
#    Hopper default; DSV3_BF16_WIDE=1 its 256-row tiles) and gemm_bf16_tc
#    (DSV3_BF16_GEMM=1), at a V3 shape,
#    ragged edges and a tiny one; timed at o_proj's prefill shape.
# 2. The FP8 schedules (3: fp8_gemm_wgmma) against the host FP8 GEMM
#    (dsv3-run fp8-gemm --backend cuda), K = 7168 and K = 256; timed at the
#    dense gate/up prefill shape.
# 3. Whole models: verify of tiny-a in bf16 and FP8 (their prefill GEMMs
#    take the wgmma kernels), then the bench slice's prefill rows and a
#    profile of 4 x 2048 when bench-artifacts/ is here.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-wgmma}
mkdir -p "$OUT"
[ -x build-gpu/bin/dsv3-run ] || bash scripts/gpu-build.sh "$OUT/build.log" || exit 1
RUN=build-gpu/bin/dsv3-run
status=0
g() { # g VAR=VALUE command...: bf16-check's GEMM rows only
  env "$@" 2>&1 | grep -E "gemm_bf16|timing|FAIL|error" || status=1
}
for v in DSV3_BF16_GEMM=2 DSV3_BF16_WIDE=1 DSV3_BF16_GEMM=1; do
  echo "== $v"
  g $v DSV3_GEMM_TIME=8192,7168,16384 timeout 120 $RUN bf16-check gpu-artifacts/v3-width-bf16 \
    --seq 16 --shape 300,1536,7168
  g $v timeout 120 $RUN bf16-check gpu-artifacts/v3-width-bf16 --seq 16 --shape 200,200,520
  g $v timeout 120 $RUN bf16-check gpu-artifacts/tiny-a-bf16-long --seq 16 --shape 129,72,64
done
echo "== FP8 schedules (3: fp8_gemm_wgmma)"
for shape in 300,1536,7168 200,384,256; do
  [ $shape = 300,1536,7168 ] && export DSV3_FP8_GEMM_TIME=8192,18432,7168
  timeout 120 $RUN fp8-gemm gpu-artifacts/tiny-a-fp8 --backend cuda --shape $shape --seed 3 2>&1 |
    grep -E "tensor|few-row|wgmma|timing|FAIL|error" || status=1
  unset DSV3_FP8_GEMM_TIME
done
echo "== verify (bf16, FP8)"
for f in tiny-a-bf16 tiny-a-fp8; do
  timeout 120 $RUN verify gpu-artifacts/$f --weights test/data/fixtures/tiny-a \
    --oracle test/data/fixtures/tiny-a --backend cuda > "$OUT/verify-$f.log" 2>&1 || status=1
  printf '%-14s %s\n' "$f" "$(tail -1 "$OUT/verify-$f.log")"
  grep -h "FAIL\|wgmma" "$OUT/verify-$f.log" | head -4
done
if [ -d bench-artifacts/v3-infer ]; then
  echo "== bench slice prefill"
  T="$RUN time bench-artifacts/v3-infer --random-weights 1 --backend cuda"
  for v in DSV3_BF16_WIDE=0 DSV3_BF16_WIDE=1; do
    echo "-- $v"
    env $v $T --batch 1 --seq 2048 --steps 2 2>&1 | tail -1
    env $v $T --batch 4 --seq 2048 --steps 2 2>&1 | tail -1
  done
  build-gpu/bin/dsv3-run time bench-artifacts/v3-infer-fp8 --random-weights 1 --backend cuda \
    --batch 4 --seq 2048 --steps 2 2>&1 | tail -1
  DSV3_PROFILE=1 $T --batch 4 --seq 2048 --steps 1 > "$OUT/profile-prefill.log" 2>&1
  sed -n 2,12p "$OUT/profile-prefill.log"
fi
exit $status
