#!/usr/bin/env bash
# mla_decode_mma_staged (the absorbed decode's attention with 32 heads a
# block and cp.async-staged key tiles) and decode's GEMMs of 16 rows or
# more on cuBLASLt, on the GPU, one device call (~4 min). Here
# first:
#   build/bin/dsv3c test/data/configs/v3-width-slice.json --target cuda --dtype bf16 \
#     --max-batch 2 --max-seq 64 -o gpu-artifacts/v3-width-bf16
#   build/bin/dsv3c bench/configs/v3-infer-3layer.json --target cuda --dtype bf16 \
#     --max-batch 128 --max-seq 2048 --max-tokens 8192 --quiet -o bench-artifacts/v3-infer
#   run(command="bash scripts/gpu-decode-staged-check.sh",
#       carry=["gpu-artifacts", "bench-artifacts", ".deps"])
# 1. bf16-check at V3 widths: mla_decode_split against float64,
#    mla_decode_mma against float64 on bf16 operands, the staged kernel
#    bitwise against mla_decode_mma, and both timed at 128 rows x 1024
#    cached rows.
# 2. compare (COMPARE=1, the default): every launch of the bf16 V3-width
#    slice against the host over 2 sequences of 8 tokens, with the exact
#    kernels (compare turns the bf16-activation kernels off: this holds the
#    rest of the step, bf16-check above holds the new kernels); again with
#    DSV3_CUBLAS_ROWS=256. The host's side takes minutes at these widths:
#    2 x 30 tokens ran past 300 s.
# 3. Decode b1 / b32 / b128 at context 1024 on the bench slice: the
#    default, DSV3_MLA_DECODE_STAGED=0, and DSV3_CUBLAS_ROWS=256 / 64; a
#    per-site profile of b128 (default and DSV3_CUBLAS_ROWS=256).
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-decode-staged
status=0
: > "$OUT/checks.txt"
$RUN bf16-check gpu-artifacts/v3-width-bf16 --seq 64 --context 30 > "$OUT/bf16-check.log" 2>&1 ||
  status=1
grep -E "staged|timing 128|absorb|bf16-check: " "$OUT/bf16-check.log" | tee -a "$OUT/checks.txt"
if [ "${COMPARE:-1}" = 1 ]; then
[ -d /dev/shm/v3w ] || $RUN init gpu-artifacts/v3-width-bf16 --seed 7 --out /dev/shm/v3w \
  > "$OUT/init.log" 2>&1 || status=1
IDS=$(python3 -c "import random; random.seed(9); print('/'.join(','.join(str(random.randrange(4096)) for _ in range(8)) for _ in range(2)))")
for env in DSV3_DEFAULT=1 DSV3_CUBLAS_ROWS=256; do
  r=$(env $env timeout 240 $RUN compare gpu-artifacts/v3-width-bf16 --weights /dev/shm/v3w \
    --ids "$IDS" 2>&1 | tee "$OUT/compare-$env.log" | tail -1)
  printf '%-34s %s\n' "compare-v3-width-bf16 $env" "$r" | tee -a "$OUT/checks.txt"
  case "$r" in *" passed, 0 failed"*) ;; *) status=1 ;; esac
done
fi
A="bench-artifacts/v3-infer --random-weights 1 --backend cuda"
for env in DSV3_DEFAULT=1 DSV3_MLA_DECODE_STAGED=0 DSV3_CUBLAS_ROWS=256 DSV3_CUBLAS_ROWS=64; do
  for b in 1 32 128; do
    case "$env" in *CUBLAS*) [ $b = 1 ] && continue ;; esac
    steps=$(( b == 128 ? 8 : 16 ))
    r=$(env $env timeout 90 $RUN time $A --batch $b --context 1024 --steps $steps 2>&1 | tail -1 |
      grep -o "decode [0-9.]* ms.*" | head -1)
    printf '%-26s b%-4s %s\n' "$env" "$b" "$r" | tee -a "$OUT/checks.txt"
  done
done
for env in DSV3_DEFAULT=1 DSV3_CUBLAS_ROWS=256; do
  env $env DSV3_PROFILE=site DSV3_PROFILE_ROWS=30 timeout 90 $RUN time $A --batch 128 \
    --context 1024 --steps 2 > "$OUT/profile-b128-$env.log" 2>&1
  echo "-- profile b128 $env"; sed -n 2,30p "$OUT/profile-b128-$env.log"
done
finish
