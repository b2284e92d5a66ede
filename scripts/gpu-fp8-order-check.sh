#!/usr/bin/env bash
# An A/B of one fp8_gemm_tma knob, KNOB (default DSV3_FP8_PINGPONG: the two
# consumers taking turns to issue their MMAs against issuing together;
# DSV3_FP8_WIDE: the 128 x 256 tiles of fp8_gemm_tma_wide against 128 x 128;
# DSV3_FP8_TMA_STORE: the wide plain tiles stored by TMA through shared
# memory against from registers: opt-in, so run it with ON=1),
# in one device call after these ran here:
#   build/bin/dsv3c bench/configs/v3-infer-3layer.json --target cuda --dtype bf16 \
#     --quantize fp8 --max-batch 128 --max-seq 2048 --max-tokens 8192 --quiet \
#     -o bench-artifacts/v3-infer-fp8
#   build/bin/dsv3c test/data/fixtures/tiny-a --target cuda --quantize fp8 \
#     -o gpu-artifacts/tiny-a-fp8
#   run(command="KNOB=DSV3_FP8_WIDE bash scripts/gpu-fp8-order-check.sh",
#       carry=["bench-artifacts/v3-infer-fp8", "gpu-artifacts/tiny-a-fp8", ".deps"])
# 1. The FP8 schedules against the host's FP8 GEMM on the same operands
#    (fp8-gemm --backend cuda; wgmma held to 2^-10 sum|x w|) with KNOB=0
#    and KNOB=1 (DSV3_FP8_WIDE=1: the wide tiles wherever the scales allow,
#    however few the tiles), fp8_gemm_tma timed at 8192 x 18432 x 7168 and
#    8192 x 7168 x 16384; scripts/wgmma-audit.py on the slice's cubin.
# 2. (FWD=1, default) Either way each output sums the same products in the
#    same order, so the bench slice's FP8 logits of 1024 tokens (plain and
#    gated kernels, dense and grouped) must be bitwise equal.
# 3. FP8 prefill 4 x 2048 alternating KNOB=0 and the default (ON=1: KNOB=1,
#    for an opt-in knob); (NCU=1) Nsight Compute on both.
# GEMM=0 skips 1.'s fp8-gemm runs (not the audit), TIMING=0 skips 3.'s
# timing: for a call that goes on to the benchmark. EXTRA: environment for
# the fp8-gemm runs (e.g. "DSV3_FP8_WIDE=1 DSV3_FP8_CUBLAS=0": the wide
# kernel at the check's few tiles, not cuBLASLt); SHAPES: more M,N,K;
# FWD_SEQS x FWD_LEN: the logits' tokens (default 1 x 1024).
# DSV3_FP8_TMA_STORE (whole 128-row tiles only: the routed experts need
# ~128 rows each, 4 x 2048 tokens):
#   KNOB=DSV3_FP8_TMA_STORE ON=1 EXTRA="DSV3_FP8_WIDE=1 DSV3_FP8_CUBLAS=0" \
#     SHAPES=1050,2048,512 FWD_SEQS=4 FWD_LEN=2048 bash scripts/gpu-fp8-order-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
KNOB=${KNOB:-DSV3_FP8_PINGPONG}
source scripts/gpu-env.sh /tmp/gpu-fp8-order
status=0
: > "$OUT/checks.txt"
python3 scripts/wgmma-audit.py bench-artifacts/v3-infer-fp8/cuda/sm_90a.cubin > "$OUT/wgmma-audit.txt" ||
  { status=1; echo "wgmma-audit: a serialized kernel" | tee -a "$OUT/checks.txt"; }
grep -E "fp8_gemm_tma" "$OUT/wgmma-audit.txt" | tee -a "$OUT/checks.txt"
for v in $([ "${GEMM:-1}" = 1 ] && echo 0 1); do
  for shape in 300,1536,7168 1000,2048,256 300,576,7168 ${SHAPES:-}; do
    case $shape in
      300,1536,7168) export DSV3_FP8_GEMM_TIME=8192,18432,7168 ;;
      1000,2048,256) export DSV3_FP8_GEMM_TIME=8192,7168,16384 ;;
    esac
    env ${EXTRA:-} $KNOB=$v timeout 120 $RUN fp8-gemm gpu-artifacts/tiny-a-fp8 \
      --backend cuda --shape $shape --seed 3 > "$OUT/fp8-gemm-$shape-$v.log" 2>&1
    rc=$?
    [ $rc = 0 ] || status=1
    [ $rc = 124 ] && { echo "fp8-gemm $shape $KNOB=$v: timed out"; exit 1; }
    grep -E "TMA.*(PASS|FAIL)|timing.*TMA|rror" "$OUT/fp8-gemm-$shape-$v.log" |
      sed "s/^ */$KNOB=$v $shape /" | tee -a "$OUT/checks.txt"
    unset DSV3_FP8_GEMM_TIME
  done
done
if [ "${FWD:-1}" = 1 ]; then
  IDS=$(python3 -c "import random; random.seed(3); print('/'.join(','.join(str(random.randrange(129280)) for _ in range(${FWD_LEN:-1024})) for _ in range(${FWD_SEQS:-1})))")
  for v in 0 1; do
    env $KNOB=$v DSV3_CUBLAS_TUNE=0 timeout 300 $RUN forward bench-artifacts/v3-infer-fp8 \
      --random-weights 1 --backend cuda --ids "$IDS" --out /dev/shm/logits-$v.safetensors \
      > "$OUT/forward-$v.log" 2>&1 || { status=1; tail -3 "$OUT/forward-$v.log"; }
  done
  if cmp -s /dev/shm/logits-0.safetensors /dev/shm/logits-1.safetensors; then
    r="bitwise equal: PASS"
  else
    r="differ: FAIL"; status=1
  fi
  echo "v3-infer-fp8 logits of ${FWD_SEQS:-1} x ${FWD_LEN:-1024} tokens, $KNOB=0 vs 1: $r" | tee -a "$OUT/checks.txt"
  rm -f /dev/shm/logits-*.safetensors
fi
for rep in $([ "${TIMING:-1}" = 1 ] && echo 1 2); do
  for v in 0 ${ON:-default}; do
    if [ $v = default ]; then set -- env; else set -- env $KNOB=$v; fi
    r=$("$@" timeout 120 $RUN time bench-artifacts/v3-infer-fp8 --random-weights 1 \
      --backend cuda --batch 4 --seq 2048 --steps 3 2>&1 | tail -1 | grep -o "prefill [0-9.]* ms")
    echo "rep $rep $KNOB=$v FP8 prefill 4x2048 $r" | tee -a "$OUT/checks.txt"
  done
done
if [ "${PROFILE:-0}" = 1 ]; then
  for v in 0 1; do
    env $KNOB=$v DSV3_PROFILE=1 timeout 120 $RUN time bench-artifacts/v3-infer-fp8 --random-weights 1 \
      --backend cuda --batch 4 --seq 2048 --steps 3 > "$OUT/profile-$v.log" 2>&1
    echo "== profile $KNOB=$v (top rows)"
    grep -E "fp8_|swiglu|total" "$OUT/profile-$v.log" | head -16
  done
fi
if [ "${NCU:-0}" = 1 ]; then
  for v in 0 1; do
    env $KNOB=$v DSV3_FP8_GEMM_TIME=8192,7168,16384 KERNEL=fp8_gemm_tma SKIP=3 TOP=30 \
      ARGS="fp8-gemm gpu-artifacts/tiny-a-fp8 --backend cuda --shape 64,576,7168 --seed 3" \
      OUT=$OUT/ncu$v timeout 200 bash scripts/gpu-ncu-kernel.sh > "$OUT/ncu$v.log" 2>&1
    echo "== ncu $KNOB=$v"
    grep -E "Duration|Throughput|Issued Warp|Eligible|Stall|Bank|Warp Cycles|Pipe" "$OUT/ncu$v.log" | head -30
  done
fi
finish
