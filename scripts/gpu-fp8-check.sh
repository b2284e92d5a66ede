#!/usr/bin/env bash
# FP8 on the GPU (dsv3c --quantize fp8), in one device call after
# scripts/gpu-prepare.sh and bench/prepare.sh ran here:
#   run(command="bash scripts/gpu-fp8-check.sh",
#       carry=["gpu-artifacts", "bench-artifacts", ".deps"])
# 1. Every kernel of FP8 artifacts against the host backend's FP8 reference
#    (the same e4m3 rounding, SEMANTICS.md 9) on the same inputs: tiny-a
#    (fixture weights) and the DeepSeek-V3-width slice (random weights from
#    dsv3-run init, quantized at load): few rows (the decode kernel), more
#    (tensor cores), and each schedule forced for the grouped expert GEMMs.
# 2. Times decode and prefill of the 3-layer bench slice with FP8 weights
#    beside the same artifact in bf16, and prints one table last.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-fp8}
mkdir -p "$OUT"
[ -x build-gpu/bin/dsv3-run ] || bash scripts/gpu-build.sh "$OUT/build.log" || exit 1
RUN=build-gpu/bin/dsv3-run
status=0
$RUN compare gpu-artifacts/tiny-a-fp8 --weights test/data/fixtures/tiny-a \
  --ids 1,5,9,200,31,77,4,300/8,2,100,6,71,250,29,11 > "$OUT/compare-tiny-a-fp8.log" 2>&1 || status=1
$RUN init gpu-artifacts/v3-width-fp8 --seed 7 --out /dev/shm/v3w8 > "$OUT/init.log" 2>&1 || status=1
FEW=$(python3 -c "import random; random.seed(5); print(','.join(str(random.randrange(4096)) for _ in range(6)))")
MMA=$(python3 -c "import random; random.seed(9); print('/'.join(','.join(str(random.randrange(4096)) for _ in range(40)) for _ in range(2)))")
$RUN compare gpu-artifacts/v3-width-fp8 --weights /dev/shm/v3w8 --ids "$FEW" > "$OUT/compare-v3-fp8-few.log" 2>&1 || status=1
$RUN compare gpu-artifacts/v3-width-fp8 --weights /dev/shm/v3w8 --ids "$MMA" > "$OUT/compare-v3-fp8-mma.log" 2>&1 || status=1
DSV3_FP8_MMA=1 $RUN compare gpu-artifacts/v3-width-fp8 --weights /dev/shm/v3w8 --ids "$MMA" > "$OUT/compare-v3-fp8-all-mma.log" 2>&1 || status=1
DSV3_FP8_MMA=0 $RUN compare gpu-artifacts/v3-width-fp8 --weights /dev/shm/v3w8 --ids "$MMA" > "$OUT/compare-v3-fp8-no-mma.log" 2>&1 || status=1
for f in tiny-a-fp8 v3-fp8-few v3-fp8-mma v3-fp8-all-mma v3-fp8-no-mma; do
  echo "== compare $f"; grep -E "FAIL|first divergence|passed" "$OUT/compare-$f.log" | head -12
done
echo "== timing (bench slice: 3 layers at DeepSeek-V3 widths, random weights)"
t() {
  local art=$1 name=$2; shift 2
  $RUN time bench-artifacts/$art --random-weights 1 --backend cuda "$@" > "$OUT/time-$art-$name.log" 2>&1 || status=1
  printf '%-10s %-16s %s\n' "$art" "$name" "$(tail -1 "$OUT/time-$art-$name.log")"
}
for art in v3-infer-fp8 v3-infer; do
  t $art decode-b1 --batch 1 --context 1024 --steps 32
  t $art decode-b32 --batch 32 --context 1024 --steps 16
  t $art decode-b128 --batch 128 --context 1024 --steps 8
  t $art prefill-4x2048 --batch 4 --seq 2048 --steps 1
done
DSV3_PROFILE=1 $RUN time bench-artifacts/v3-infer-fp8 --random-weights 1 --backend cuda --batch 4 --seq 2048 --steps 1 > "$OUT/profile-fp8-prefill.log" 2>&1
echo "-- profile fp8 prefill 4x2048"; sed -n 2,12p "$OUT/profile-fp8-prefill.log"
DSV3_PROFILE=1 $RUN time bench-artifacts/v3-infer-fp8 --random-weights 1 --backend cuda --batch 32 --context 1024 --steps 4 > "$OUT/profile-fp8-decode.log" 2>&1
echo "-- profile fp8 decode b32"; sed -n 2,12p "$OUT/profile-fp8-decode.log"
exit $status
