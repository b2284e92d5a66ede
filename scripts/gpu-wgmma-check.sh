#!/usr/bin/env bash
# The wgmma GEMMs (branch wip-wgmma; sm_90a), in one short device call after
# scripts/gpu-prepare.sh ran here (v3-width-bf16, tiny-a-bf16-long,
# tiny-a-fp8):
#   run(command="bash scripts/gpu-wgmma-check.sh", carry=["gpu-artifacts", ".deps"])
# 1. gemm_bf16_wgmma (DSV3_BF16_GEMM=2) against float64 on the same bf16
#    operands (dsv3-run bf16-check --shape: the plain rows; gated and grouped
#    stay on gemm_bf16_tc), at a V3 shape, ragged edges and a tiny one;
#    timed at o_proj's prefill shape beside gemm_bf16_tc.
# 2. fp8_gemm_wgmma (FP8 schedule 3) against the host FP8 GEMM (dsv3-run
#    fp8-gemm --backend cuda checks every schedule, plain and grouped), timed
#    at the dense gate/up prefill shape beside fp8_gemm_tc.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-wgmma}
mkdir -p "$OUT"
[ -x build-gpu/bin/dsv3-run ] || bash scripts/gpu-build.sh "$OUT/build.log" || exit 1
RUN=build-gpu/bin/dsv3-run
status=0
g() { # bf16-check's GEMM rows only
  timeout 120 "$@" 2>&1 | grep -E "gemm_bf16|timing|FAIL|error" || status=1
}
for v in 1 2; do
  echo "== DSV3_BF16_GEMM=$v ($([ $v = 2 ] && echo wgmma || echo gemm_bf16_tc))"
  DSV3_BF16_GEMM=$v DSV3_GEMM_TIME=8192,7168,16384 g $RUN bf16-check gpu-artifacts/v3-width-bf16 \
    --seq 16 --shape 300,1536,7168
  DSV3_BF16_GEMM=$v g $RUN bf16-check gpu-artifacts/v3-width-bf16 --seq 16 --shape 200,200,520
  DSV3_BF16_GEMM=$v g $RUN bf16-check gpu-artifacts/tiny-a-bf16-long --seq 16 --shape 129,72,64
done
echo "== FP8 schedules (3: fp8_gemm_wgmma)"
for shape in 300,1536,7168 64,576,7168; do
  [ $shape = 300,1536,7168 ] && export DSV3_FP8_GEMM_TIME=8192,18432,7168
  timeout 120 $RUN fp8-gemm gpu-artifacts/tiny-a-fp8 --backend cuda --shape $shape --seed 3 2>&1 |
    grep -E "tensor|few-row|wgmma|timing|FAIL|error" || status=1
  unset DSV3_FP8_GEMM_TIME
done
echo "== dispatch in chunks: compare against the host"
IDS=1,5,9,200,31,77,4,300/8,2,100,6,71,250,29,11
for f in tiny-a tiny-d tiny-a-bf16 train-tiny-a; do
  w=${f#train-}; w=${w%-bf16}
  timeout 120 $RUN compare gpu-artifacts/$f --weights test/data/fixtures/$w --ids $IDS > "$OUT/compare-$f.log" 2>&1 || status=1
  printf '%-16s %s\n' "$f" "$(tail -1 "$OUT/compare-$f.log")"
  grep -h "FAIL\|first divergence\|error" "$OUT/compare-$f.log" | head -4
done
exit $status
