#!/usr/bin/env bash
# The prefill on tensor cores (mla_prefill_mma: the naive-form MLA over the
# latent cache with bf16 operands, for bf16 and FP8 models), in one device
# call after scripts/gpu-prepare.sh and bench/prepare.sh ran here:
#   run(command="bash scripts/gpu-prefill-check.sh",
#       carry=["gpu-artifacts", "bench-artifacts", ".deps"])
# 1. dsv3-run attention-check: both prefill attention kernels on random
#    operands against float64 at V3 widths (the bf16 slice: 128 heads, q/k
#    128 + 64, v 128) and tiny-a's (widths padded to 16), over several
#    query and key tiles with cached positions before them; times both at
#    2048 queries.
# 2. Whole models: tiny-a-bf16 against the float64 oracle with the prefill
#    kernel forced on every decode-entry call (DSV3_MLA_PREFILL_TOKENS=1);
#    compare (which keeps activations fp32: the fp32 kernel) on long
#    sequences.
# 3. Times the bench slice's prefill (4 x 2048 and 1 x 2048, bf16 and FP8)
#    with each kernel, and profiles the 4 x 2048 prefill.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-prefill}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0
[ -x build-gpu/bin/dsv3-run ] || bash scripts/gpu-build.sh "$OUT/build.log" || exit 1
RUN=build-gpu/bin/dsv3-run
status=0
LONG=$(python3 -c "import random; random.seed(11); print('/'.join(','.join(str(random.randrange(512)) for _ in range(200)) for _ in range(2)))")
echo "== dsv3-run attention-check (against float64)"
a() { # name, then arguments
  local name=$1; shift
  "$@" > "$OUT/attention-$name.log" 2>&1 || status=1
  sed -n '2,$p' "$OUT/attention-$name.log" | sed "s/^/[$name] /"
}
DSV3_ATTENTION_TIME=2048 a v3-300-past100 $RUN attention-check gpu-artifacts/v3-width-bf16 --seq 300 --context 100
a v3-64 $RUN attention-check gpu-artifacts/v3-width-bf16 --seq 64 --seed 2
a v3-fp32-art $RUN attention-check gpu-artifacts/v3-width --seq 40 --context 30
a tiny-200-past37 $RUN attention-check gpu-artifacts/tiny-a-bf16-long --seq 200 --context 37
echo "== whole models"
DSV3_MLA_PREFILL_TOKENS=1 $RUN verify gpu-artifacts/tiny-a-bf16 --weights test/data/fixtures/tiny-a \
  --oracle test/data/fixtures/tiny-a --backend cuda > "$OUT/verify-tiny-a-bf16.log" 2>&1 || status=1
printf '%-28s %s\n' "verify tiny-a-bf16" "$(tail -1 "$OUT/verify-tiny-a-bf16.log")"
grep -E "FAIL|greedy|agree" "$OUT/verify-tiny-a-bf16.log" | head -8
DSV3_MLA_PREFILL_TOKENS=1 $RUN compare gpu-artifacts/tiny-a-bf16-long --weights test/data/fixtures/tiny-a \
  --ids "$LONG" > "$OUT/compare-tiny-a-bf16-long.log" 2>&1 || status=1
printf '%-28s %s\n' "compare tiny-a-bf16-long" "$(tail -1 "$OUT/compare-tiny-a-bf16-long.log")"
echo "== prefill timing (bench slice: 3 layers at DeepSeek-V3 widths, random weights)"
t() {
  local name=$1; shift
  env "$@" > "$OUT/time-$name.log" 2>&1 || status=1
  printf '%-28s %s\n' "$name" "$(tail -1 "$OUT/time-$name.log" | grep -oE '(decode|prefill) [0-9.]+ ms' | head -1)"
}
for art in v3-infer v3-infer-fp8; do
  for mma in 1; do
    t $art-4x2048-mma$mma DSV3_MLA_PREFILL_MMA=$mma $RUN time bench-artifacts/$art \
      --random-weights 1 --backend cuda --batch 4 --seq 2048 --steps 1
  done
  t $art-1x2048 $RUN time bench-artifacts/$art --random-weights 1 --backend cuda \
    --batch 1 --seq 2048 --steps 1
done
DSV3_PROFILE=1 $RUN time bench-artifacts/v3-infer --random-weights 1 --backend cuda \
  --batch 4 --seq 2048 --steps 1 > "$OUT/profile-prefill-bf16.log" 2>&1
echo "-- profile bf16 prefill 4x2048"; sed -n 2,14p "$OUT/profile-prefill-bf16.log"
exit $status
