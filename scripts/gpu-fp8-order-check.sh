#!/usr/bin/env bash
# fp8_gemm_tma's consumers taking turns to issue their MMAs (the default)
# against issuing together (DSV3_FP8_PINGPONG=0), one device call after
# these ran here:
#   build/bin/dsv3c bench/configs/v3-infer-3layer.json --target cuda --dtype bf16 \
#     --quantize fp8 --max-batch 128 --max-seq 2048 --max-tokens 8192 --quiet \
#     -o bench-artifacts/v3-infer-fp8
#   build/bin/dsv3c test/data/fixtures/tiny-a --target cuda --quantize fp8 \
#     -o gpu-artifacts/tiny-a-fp8
#   run(command="bash scripts/gpu-fp8-order-check.sh",
#       carry=["bench-artifacts", "gpu-artifacts", ".deps"])
# 1. The FP8 schedules against the host's FP8 GEMM on the same operands
#    (fp8-gemm --backend cuda; wgmma held to 2^-10 sum|x w|) both ways, and
#    fp8_gemm_tma timed at 8192 x 18432 x 7168 and 8192 x 7168 x 16384.
# 2. (FWD=1, default) Each warpgroup adds the same products in the same
#    order either way, so the bench slice's FP8 logits of 1024 tokens
#    (plain and gated kernels, dense and grouped) must be bitwise equal.
# 3. FP8 prefill 4 x 2048 alternating; (NCU=1) Nsight Compute on both.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-fp8-order
status=0
: > "$OUT/checks.txt"
for pp in 0 1; do
  for shape in 300,1536,7168 1000,2048,256; do
    case $shape in
      300,1536,7168) export DSV3_FP8_GEMM_TIME=8192,18432,7168 ;;
      1000,2048,256) export DSV3_FP8_GEMM_TIME=8192,7168,16384 ;;
    esac
    DSV3_FP8_PINGPONG=$pp timeout 120 $RUN fp8-gemm gpu-artifacts/tiny-a-fp8 \
      --backend cuda --shape $shape --seed 3 > "$OUT/fp8-gemm-$shape-pp$pp.log" 2>&1
    rc=$?
    [ $rc = 0 ] || status=1
    [ $rc = 124 ] && { echo "fp8-gemm $shape pingpong=$pp: timed out"; exit 1; }
    grep -E "TMA.*(PASS|FAIL)|timing.*TMA|rror" "$OUT/fp8-gemm-$shape-pp$pp.log" |
      sed "s/^ */pingpong=$pp $shape /" | tee -a "$OUT/checks.txt"
    unset DSV3_FP8_GEMM_TIME
  done
done
if [ "${FWD:-1}" = 1 ]; then
  IDS=$(python3 -c "import random; random.seed(3); print(','.join(str(random.randrange(129280)) for _ in range(1024)))")
  for pp in 0 1; do
    DSV3_FP8_PINGPONG=$pp DSV3_CUBLAS_TUNE=0 timeout 300 $RUN forward bench-artifacts/v3-infer-fp8 \
      --random-weights 1 --backend cuda --ids "$IDS" --out /dev/shm/logits-pp$pp.safetensors \
      > "$OUT/forward-pp$pp.log" 2>&1 || { status=1; tail -3 "$OUT/forward-pp$pp.log"; }
  done
  if cmp -s /dev/shm/logits-pp0.safetensors /dev/shm/logits-pp1.safetensors; then
    r="bitwise equal: PASS"
  else
    r="differ: FAIL"; status=1
  fi
  echo "v3-infer-fp8 logits of 1024 tokens, pingpong vs not: $r" | tee -a "$OUT/checks.txt"
  rm -f /dev/shm/logits-pp*.safetensors
fi
for rep in 1 2; do
  for pp in 0 1; do
    r=$(DSV3_FP8_PINGPONG=$pp timeout 120 $RUN time bench-artifacts/v3-infer-fp8 --random-weights 1 \
      --backend cuda --batch 4 --seq 2048 --steps 3 2>&1 | tail -1 | grep -o "prefill [0-9.]* ms")
    echo "rep $rep DSV3_FP8_PINGPONG=$pp FP8 prefill 4x2048 $r" | tee -a "$OUT/checks.txt"
  done
done
if [ "${NCU:-0}" = 1 ]; then
  for pp in 0 1; do
    DSV3_FP8_PINGPONG=$pp DSV3_FP8_GEMM_TIME=8192,7168,16384 KERNEL=fp8_gemm_tma SKIP=3 TOP=30 \
      ARGS="fp8-gemm gpu-artifacts/tiny-a-fp8 --backend cuda --shape 64,576,7168 --seed 3" \
      OUT=$OUT/ncu$pp timeout 200 bash scripts/gpu-ncu-kernel.sh > "$OUT/ncu$pp.log" 2>&1
    echo "== ncu pingpong=$pp"
    grep -E "Duration|Throughput|Issued Warp|Eligible|Stall|Bank|Warp Cycles|Pipe" "$OUT/ncu$pp.log" | head -30
  done
fi
echo
cat "$OUT/checks.txt"
exit $status
