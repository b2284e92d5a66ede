#!/usr/bin/env bash
# FP8 on the GPU (dsv3c --quantize fp8), in one device call after
# scripts/gpu-prepare.sh and bench/prepare.sh ran here:
#   run(command="bash scripts/gpu-fp8-check.sh",
#       carry=["gpu-artifacts", "bench-artifacts", ".deps"])
# 1. The CUDA FP8 GEMM kernels against the host's FP8 GEMM on the same
#    operands at DeepSeek-V3 widths (dsv3-run fp8-gemm --backend cuda):
#    the few-row kernel, the e4m3 tensor cores, both grouped over experts.
# 2. Whole models: the FP8 tiny-a on the GPU against the host's FP8 run
#    kernel by kernel (dsv3-run compare), and its logits against the
#    float64 oracle (the same weights dequantized, activations unquantized).
#    Kernel by kernel, a rounding flip (an activation within an ulp of an
#    e4m3 rounding boundary, whose two sides differ in the last bit) moves
#    that activation by a whole e4m3 step, and later launches inherit it: the
#    per-kernel check is exact only until the first flip, so the GEMMs are
#    checked on identical operands in 1.
# 3. Times decode and prefill of the 3-layer bench slice with FP8 weights
#    beside the same artifact in bf16.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-fp8
status=0
for shape in 6,2048,7168 300,1536,7168 64,576,7168; do
  [ $shape = 300,1536,7168 ] && export DSV3_FP8_GEMM_TIME=8192,18432,7168
  $RUN fp8-gemm gpu-artifacts/tiny-a-fp8 --backend cuda --shape $shape --seed 3 \
    > "$OUT/fp8-gemm-$shape.log" 2>&1 || status=1
  cat "$OUT/fp8-gemm-$shape.log"
  unset DSV3_FP8_GEMM_TIME
done
IDS=1,5,9,200,31,77,4,300/8,2,100,6,71,250,29,11
$RUN compare gpu-artifacts/tiny-a-fp8 --weights test/data/fixtures/tiny-a --ids $IDS \
  > "$OUT/compare-tiny-a-fp8.log" 2>&1
echo "== compare tiny-a-fp8 (kernel by kernel; see 2. above)"
grep -E "^  (forward|loss|decode|decode steps) " "$OUT/compare-tiny-a-fp8.log"
grep -o "first divergence in [a-z]*: launch [0-9]* ([a-z_]*)" "$OUT/compare-tiny-a-fp8.log"
mkdir -p /dev/shm/w8
$RUN forward gpu-artifacts/tiny-a-fp8 --weights test/data/fixtures/tiny-a --backend cuda \
  --ids $IDS --out "$OUT/tiny-a-fp8-gpu.safetensors" > "$OUT/fwd-gpu.log" 2>&1 || status=1
$RUN forward gpu-artifacts/tiny-a-fp8 --weights test/data/fixtures/tiny-a \
  --ids $IDS --out "$OUT/tiny-a-fp8-host.safetensors" > "$OUT/fwd-host.log" 2>&1 || status=1
$RUN quantize gpu-artifacts/tiny-a --weights test/data/fixtures/tiny-a --out /dev/shm/w8 > /dev/null 2>&1 || status=1
$RUN forward gpu-artifacts/tiny-a --weights /dev/shm/w8 --dtype fp64 \
  --ids $IDS --out "$OUT/tiny-a-oracle.safetensors" > "$OUT/fwd-oracle.log" 2>&1 || status=1
echo "== tiny-a FP8 logits: GPU vs host FP8; GPU vs the float64 oracle"
python3 test/Conformance/Inputs/fp8_tools.py compare "$OUT/tiny-a-fp8-gpu.safetensors" "$OUT/tiny-a-fp8-host.safetensors" 1e-4
python3 test/Conformance/Inputs/fp8_tools.py accuracy "$OUT/tiny-a-fp8-gpu.safetensors" "$OUT/tiny-a-oracle.safetensors" 0.2 || status=1
echo "== timing (bench slice: 3 layers at DeepSeek-V3 widths, random weights; ms)"
t() {
  local art=$1 name=$2; shift 2
  $RUN time bench-artifacts/$art --random-weights 1 --backend cuda "$@" > "$OUT/time-$art-$name.log" 2>&1 || status=1
  printf '%-13s %-15s %s\n' "$art" "$name" "$(tail -1 "$OUT/time-$art-$name.log" | grep -oE '(decode|prefill) [0-9.]+ ms' | head -1)"
}
for art in v3-infer-fp8 v3-infer; do
  t $art decode-b1 --batch 1 --context 1024 --steps 16
  [ $art = v3-infer-fp8 ] && DSV3_FP8_MMA=0 t $art decode-b1-rows --batch 1 --context 1024 --steps 16
  t $art decode-b32 --batch 32 --context 1024 --steps 8
  t $art decode-b128 --batch 128 --context 1024 --steps 4
  t $art prefill-4x2048 --batch 4 --seq 2048 --steps 1
done
for args in "--batch 1 --context 1024 --steps 4" "--batch 32 --context 1024 --steps 4" "--batch 4 --seq 2048 --steps 1"; do
  name=$(echo "$args" | tr -d '-' | tr ' ' '_')
  DSV3_PROFILE=1 $RUN time bench-artifacts/v3-infer-fp8 --random-weights 1 --backend cuda $args > "$OUT/profile-fp8-$name.log" 2>&1
  echo "-- profile fp8 $name"; sed -n 2,9p "$OUT/profile-fp8-$name.log"
done
exit $status
