#!/usr/bin/env bash
# The kernels that round activations to bf16 (bf16 and FP8 models: the
# prefill attention mla_prefill_mma, the absorbed decode's mla_decode_mma,
# the GEMMs gemm_bf16_tc), in one device call after scripts/gpu-prepare.sh
# and bench/prepare.sh ran here:
#   run(command="bash scripts/gpu-bf16-check.sh",
#       carry=["gpu-artifacts", "bench-artifacts", ".deps"])
# 1. dsv3-run bf16-check: the kernels that round activations to bf16, on
#    random operands against float64: both prefill attention kernels at V3
#    widths (the bf16 slice: 128 heads, q/k 128 + 64, v 128) and tiny-a's
#    (widths padded to 16), over several query and key tiles with cached
#    positions before them; the absorbed decode attention (ragged rows,
#    key splits); the bf16 GEMMs (plain, gated, grouped) at a V3 shape and
#    at ragged edges; times them beside the fp32-activation kernels.
# 2. Whole models: tiny-a-bf16 against the float64 oracle with the prefill
#    kernel forced on every decode-entry call (DSV3_MLA_PREFILL_TOKENS=1);
#    compare (which keeps activations fp32: the fp32 kernel) on long
#    sequences.
# 3. Times the bench slice's decode (context 1024, batches 1, 32, 128) and
#    prefill (4 x 2048 and 1 x 2048), bf16 and FP8, and profiles the bf16
#    4 x 2048 prefill and batch-128 decode.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-bf16
status=0
LONG=$(python3 -c "import random; random.seed(11); print('/'.join(','.join(str(random.randrange(512)) for _ in range(200)) for _ in range(2)))")
echo "== dsv3-run bf16-check (against float64)"
a() { # name, then arguments
  local name=$1; shift
  "$@" > "$OUT/bf16-$name.log" 2>&1 || status=1
  grep -vE "^bf16-check [a-z]|^  kernel, against" "$OUT/bf16-$name.log" | sed "s/^/[$name] /"
}
DSV3_ATTENTION_TIME=2048 DSV3_GEMM_TIME=8192,7168,16384 a v3-300-past100 \
  $RUN bf16-check gpu-artifacts/v3-width-bf16 --seq 300 --context 100 --shape 300,1536,7168
DSV3_GEMM_TIME=8192,7168,18432 a v3-64 $RUN bf16-check gpu-artifacts/v3-width-bf16 --seq 64 \
  --seed 2 --shape 200,200,520
a v3-fp32-art $RUN bf16-check gpu-artifacts/v3-width --seq 40 --context 30
a tiny-200-past37 $RUN bf16-check gpu-artifacts/tiny-a-bf16-long --seq 200 --context 37 \
  --shape 129,72,64
echo "== whole models"
DSV3_MLA_PREFILL_TOKENS=1 $RUN verify gpu-artifacts/tiny-a-bf16-long --weights test/data/fixtures/tiny-a \
  --oracle test/data/fixtures/tiny-a --backend cuda > "$OUT/verify-tiny-a-bf16.log" 2>&1 || status=1
printf '%-28s %s\n' "verify tiny-a-bf16 (prefill)" "$(tail -1 "$OUT/verify-tiny-a-bf16.log")"
$RUN verify gpu-artifacts/tiny-a-bf16-long --weights test/data/fixtures/tiny-a \
  --oracle test/data/fixtures/tiny-a --backend cuda > "$OUT/verify-tiny-a-bf16-decode.log" 2>&1 || status=1
printf '%-28s %s\n' "verify tiny-a-bf16 (decode)" "$(tail -1 "$OUT/verify-tiny-a-bf16-decode.log")"
grep -E "FAIL|greedy|agree|decode prefill" "$OUT/verify-tiny-a-bf16-decode.log" | head -8
grep -E "FAIL|greedy|agree" "$OUT/verify-tiny-a-bf16.log" | head -8
DSV3_MLA_PREFILL_TOKENS=1 $RUN compare gpu-artifacts/tiny-a-bf16-long --weights test/data/fixtures/tiny-a \
  --ids "$LONG" > "$OUT/compare-tiny-a-bf16-long.log" 2>&1 || status=1
printf '%-28s %s\n' "compare tiny-a-bf16-long" "$(tail -1 "$OUT/compare-tiny-a-bf16-long.log")"
# The bf16 GEMMs in a whole model: tiny-a-bf16 forward over 2 x 200 tokens
# (400 rows: gemm_bf16_tc everywhere, grouped experts too) against the same
# with fp32 activations (DSV3_BF16_GEMM=0): bf16's 2e-2 on the median
# position (a rounding can flip a near-tied expert choice of tiny-a's
# random routers; such positions are reported, not checked).
DSV3_BF16_GEMM=0 $RUN forward gpu-artifacts/tiny-a-bf16-long --weights test/data/fixtures/tiny-a \
  --backend cuda --ids "$LONG" --out "$OUT/fwd-split.safetensors" > /dev/null 2>&1 || status=1
$RUN forward gpu-artifacts/tiny-a-bf16-long --weights test/data/fixtures/tiny-a \
  --backend cuda --ids "$LONG" --out "$OUT/fwd-bf16.safetensors" > /dev/null 2>&1 || status=1
echo "forward tiny-a-bf16 2x200, bf16 activations vs fp32 activations:"
python3 test/Conformance/Inputs/fp8_tools.py accuracy "$OUT/fwd-bf16.safetensors" \
  "$OUT/fwd-split.safetensors" 0.02 || status=1
rm -f "$OUT"/fwd-*.safetensors
echo "== prefill timing (bench slice: 3 layers at DeepSeek-V3 widths, random weights)"
t() {
  local name=$1; shift
  env "$@" > "$OUT/time-$name.log" 2>&1 || status=1
  printf '%-28s %s\n' "$name" "$(tail -1 "$OUT/time-$name.log" | grep -oE '(decode|prefill) [0-9.]+ ms' | head -1)"
}
for art in v3-infer v3-infer-fp8; do
  t $art-decode-b1 $RUN time bench-artifacts/$art --random-weights 1 --backend cuda \
    --batch 1 --context 1024 --steps 16
  t $art-decode-b32 $RUN time bench-artifacts/$art --random-weights 1 --backend cuda \
    --batch 32 --context 1024 --steps 8
  t $art-decode-b128 $RUN time bench-artifacts/$art --random-weights 1 --backend cuda \
    --batch 128 --context 1024 --steps 4
  t $art-4x2048 $RUN time bench-artifacts/$art --random-weights 1 --backend cuda \
    --batch 4 --seq 2048 --steps 1
  t $art-1x2048 $RUN time bench-artifacts/$art --random-weights 1 --backend cuda \
    --batch 1 --seq 2048 --steps 1
done
for args in "--batch 4 --seq 2048 --steps 1" "--batch 128 --context 1024 --steps 2"; do
  DSV3_PROFILE=1 $RUN time bench-artifacts/v3-infer --random-weights 1 --backend cuda $args \
    > "$OUT/profile.log" 2>&1
  echo "-- profile bf16 $args"; sed -n 2,12p "$OUT/profile.log"
done
# Few files come back from a device call: the logs in one archive.
tar -C "$OUT" -czf "$OUT/logs.tgz" --exclude logs.tgz . && find "$OUT" -type f ! -name logs.tgz -delete
exit $status
