#!/usr/bin/env bash
# The Hopper GEMMs (sm_90a), in one short device call. Here, first:
#   scripts/gpu-prepare.sh (v3-width-bf16, tiny-a-bf16, tiny-a-bf16-long,
#   tiny-a-fp8 are the ones used) and, for the prefill timings,
#   bench/prepare.sh (v3-infer, v3-infer-fp8); then
#   run(command="bash scripts/gpu-wgmma-check.sh", carry=["gpu-artifacts",
#       "bench-artifacts", ".deps"])
# 1. The bf16 GEMMs (plain, gated, grouped) against float64 on the same
#    bf16 operands (dsv3-run bf16-check --shape) for each kernel:
#    DSV3_BF16_GEMM=3 gemm_bf16_tma (the default), 2 gemm_bf16_wgmma,
#    1 gemm_bf16_tc; at a V3 shape, ragged edges, a short K and a tiny one;
#    each timed at o_proj's prefill shape.
# 2. The FP8 schedules (3 fp8_gemm_wgmma, 4 fp8_gemm_tma: the default for
#    many rows) against the host FP8 GEMM (dsv3-run fp8-gemm --backend
#    cuda), K = 7168, 256, 64 and 32; timed at the dense gate/up shape.
# 3. Whole models: verify of tiny-a in bf16 and FP8, then the bench slice's
#    prefill rows and a profile of each 4 x 2048 when bench-artifacts/ is
#    here.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-wgmma
status=0
for v in 3 2 1; do
  echo "== DSV3_BF16_GEMM=$v"
  for shape in 300,1536,7168 200,200,520 700,1536,1024; do
    t=; [ $shape = 300,1536,7168 ] && t=DSV3_GEMM_TIME=8192,7168,16384
    env DSV3_BF16_GEMM=$v $t timeout 60 $RUN bf16-check gpu-artifacts/v3-width-bf16 --seq 16 \
      --shape $shape 2>&1 | grep -E "gemm_bf16|FAIL|rror" | grep -v linear_mma || status=1
  done
  DSV3_BF16_GEMM=$v timeout 60 $RUN bf16-check gpu-artifacts/tiny-a-bf16-long --seq 16 \
    --shape 129,72,64 2>&1 | grep -E "gemm_bf16|FAIL|rror" || status=1
done
echo "== FP8 schedules (3: fp8_gemm_wgmma, 4: fp8_gemm_tma)"
for shape in 300,1536,7168 200,384,256 100,512,64 40,64,32; do
  t=; [ $shape = 300,1536,7168 ] && t=DSV3_FP8_GEMM_TIME=8192,18432,7168
  env $t timeout 120 $RUN fp8-gemm gpu-artifacts/tiny-a-fp8 --backend cuda --shape $shape \
    --seed 3 2>&1 | grep -E "wgmma|timing|FAIL|rror" || status=1
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
  for a in v3-infer v3-infer-fp8; do
    T="$RUN time bench-artifacts/$a --random-weights 1 --backend cuda"
    timeout 60 $T --batch 1 --seq 2048 --steps 2 2>&1 | tail -1
    timeout 60 $T --batch 4 --seq 2048 --steps 2 2>&1 | tail -1
    DSV3_PROFILE=1 timeout 60 $T --batch 4 --seq 2048 --steps 1 > "$OUT/profile-$a.log" 2>&1
    sed -n 2,10p "$OUT/profile-$a.log"
  done
fi
exit $status
