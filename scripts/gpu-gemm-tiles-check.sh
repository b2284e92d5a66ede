#!/usr/bin/env bash
# The grouped GEMMs' tile lookup (expertTile: a lane's experts summed, one
# warp scan), gemm_bf16_tma's padding warpgroup (no MMAs for a tile's 64
# rows past its expert's) and its persistent form (DSV3_GEMM_PERSISTENT=1,
# with FORMS="DSV3_GEMM_PERSISTENT=0 DSV3_GEMM_PERSISTENT=1"), one device
# call (after bench/prepare.sh and `dsv3c test/data/fixtures/tiny-a
# --target cuda --quantize fp8 -o gpu-artifacts/tiny-a-fp8` here):
#   run(command="bash scripts/gpu-gemm-tiles-check.sh",
#       carry=["bench-artifacts", "gpu-artifacts", ".deps"])
# 1. bf16-check --shape (gemm_bf16_tma plain, gated, grouped over 4
#    experts, and cuBLASLt, against float64) with each tile form; fp8-gemm
#    (every FP8 schedule, grouped over 4 experts, against the host GEMM on
#    the same operands: they all find their tiles with expertTile).
# 2. (Unless CHECKS_ONLY=1) prefill 4 x 2048 and 1 x 2048 (bf16 and FP8)
#    and a training step 4 x 4096, each with each form, and a profile of
#    the bf16 4 x 2048 prefill.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-gemm-tiles
status=0
A=bench-artifacts/v3-infer
echo "== checks"
# Shapes: 70 experts (DSV3_CHECK_EXPERTS: three of expertTile's 32-expert
# chunks, every 7th expert empty, ~285 rows an expert: 2-3 tiles each),
# and 4 experts at V3 widths.
FORMS=${FORMS:-DSV3_GEMM_PERSISTENT=0}
for env in $FORMS; do
  # (77 columns: the epilogue's one-column stores; even N stores pairs.)
  for spec in 70:20000,576,256 4:512,7168,2048 4:1100,1536,7168 4:300,77,128; do
    e=${spec%%:*} shape=${spec#*:}
    env $env DSV3_CHECK_EXPERTS=$e timeout 120 $RUN bf16-check $A --seq 16 --shape $shape \
      > "$OUT/check.log" 2>&1 || status=1
    grep -E "gemm_bf16|cublasLt|FAIL|rror" "$OUT/check.log" | sed "s/^ */$env $shape /"
  done
done
for spec in 70:3000,512,1024 4:300,7168,2048 40:200,1024,2048; do
  e=${spec%%:*} shape=${spec#*:}
  DSV3_CHECK_EXPERTS=$e timeout 120 $RUN fp8-gemm gpu-artifacts/tiny-a-fp8 --backend cuda \
    --shape $shape --seed 5 > "$OUT/fp8.log" 2>&1 || status=1
  grep -E "grouped|FAIL|rror" "$OUT/fp8.log" | sed "s/^ */fp8-gemm $shape /"
done
# CHECKS_ONLY=1: the checks alone (before the benchmark, in the same call).
[ -n "${CHECKS_ONLY:-}" ] && exit $status
echo "== timings"
for env in $FORMS; do
  for art in v3-infer v3-infer-fp8; do
    for shape in "--batch 4 --seq 2048" "--batch 1 --seq 2048"; do
      [ $art = v3-infer-fp8 ] && [ "$shape" = "--batch 1 --seq 2048" ] && continue
      r=$(env $env timeout 120 $RUN time bench-artifacts/$art --random-weights 1 --backend cuda \
        $shape --steps 2 2>&1 | tail -1 | grep -o "prompt.*prefill [0-9.]* ms")
      printf '%-22s %-13s %s\n' "$env" "$art" "$r"
    done
  done
  r=$(env $env timeout 150 $RUN time bench-artifacts/v3-train --random-weights 1 --backend cuda \
    --train --compute bf16 --batch 4 --seq 4096 --steps 2 2>&1 | tail -1 | grep -o "train_step [0-9.]* ms")
  printf '%-22s %-13s %s\n' "$env" "train 4x4096" "$r"
done
DSV3_PROFILE=1 timeout 120 $RUN time $A --random-weights 1 --backend cuda \
  --batch 4 --seq 2048 --steps 1 > "$OUT/profile-prefill.log" 2>&1
sed -n 1,12p "$OUT/profile-prefill.log"
exit $status
