#!/usr/bin/env bash
# Runs on the GPU machine (no MLIR there), after scripts/gpu-prepare.sh ran
# here: builds the runtime, checks the CUDA backend against the float64 HF
# fixtures and against the host backend at DeepSeek-V3 widths on random
# weights and ids, and prints a table last. Logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-check
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
status=0
# KERNELS_ONLY=1: only the kernel-by-kernel comparisons with the host (a
# quick check of kernel changes; the fixtures' verify rows are skipped).
for f in tiny-a tiny-b tiny-d tiny-e; do
  [ -n "${KERNELS_ONLY:-}" ] && break
  F=test/data/fixtures/$f
  $RUN verify gpu-artifacts/$f --weights $F --oracle $F --backend cuda 2>&1 | tee "$OUT/verify-$f.log" || status=1
done
# The NVRTC re-JIT path (taken on a GPU the artifact has no cubin for),
# forced on this one: compiled into a fresh cache, then found there.
for n in 1 2; do
  [ -n "${KERNELS_ONLY:-}" ] && break
  DSV3_FORCE_JIT=1 DSV3_CACHE_DIR=/dev/shm/dsv3-jit $RUN verify gpu-artifacts/tiny-a \
    --weights test/data/fixtures/tiny-a --oracle test/data/fixtures/tiny-a --backend cuda \
    > "$OUT/verify-jit-$n.log" 2>&1 || status=1
done
printf 'NVRTC re-JIT: %s (first: %s; again: %s)\n' "$(tail -1 "$OUT/verify-jit-2.log")" \
  "$(grep -o 're-JIT by NVRTC, [a-z ]*' "$OUT/verify-jit-1.log" | head -1)" \
  "$(grep -o 're-JIT by NVRTC, [a-z ]*' "$OUT/verify-jit-2.log" | head -1)" | tee "$OUT/jit.log"
# MTP speculative decoding on the GPU: the same tokens as plain greedy.
if [ -z "${KERNELS_ONLY:-}" ]; then
$RUN generate gpu-artifacts/tiny-e --weights test/data/fixtures/tiny-e --backend cuda \
  --prompt-ids 3,17,55,102,9,200,41,7/5,6,7 --max-new 12 > "$OUT/gen-plain.txt" 2>&1 || status=1
$RUN generate gpu-artifacts/tiny-e --weights test/data/fixtures/tiny-e --backend cuda \
  --prompt-ids 3,17,55,102,9,200,41,7/5,6,7 --max-new 12 --speculative mtp > "$OUT/gen-spec.txt" 2>&1 || status=1
if head -2 "$OUT/gen-spec.txt" | diff -q - "$OUT/gen-plain.txt" > /dev/null; then
  echo "speculative mtp on cuda: identical to greedy; $(tail -1 "$OUT/gen-spec.txt")" | tee "$OUT/spec.log"
else
  echo "speculative mtp on cuda: DIFFERS from greedy" | tee "$OUT/spec.log"; status=1
fi
fi
[ -n "${QUICK:-}" ] && { cat "$OUT/spec.log" "$OUT/jit.log"; for f in tiny-a tiny-b tiny-d tiny-e; do printf '%-8s %s\n' "$f" "$(tail -1 "$OUT/verify-$f.log")"; done; exit $status; }
# Kernel by kernel against the host, on a fixture of each routing kind.
for f in tiny-a tiny-d; do
  $RUN compare gpu-artifacts/$f --weights test/data/fixtures/$f --ids 1,5,9,200,31,77,4,300/8,2,100,6,71,250,29,11 2>&1 | tee "$OUT/compare-$f.log" || status=1
done
# DeepSeek-V3 widths: random weights (normal, std 0.02) and random ids.
$RUN init gpu-artifacts/v3-width --seed 7 --out /dev/shm/v3w > "$OUT/init.log" 2>&1 || { cat "$OUT/init.log"; status=1; }
IDS=$(python3 -c "import random; random.seed(3); print('/'.join(','.join(str(random.randrange(4096)) for _ in range(12)) for _ in range(2)))")
$RUN compare gpu-artifacts/v3-width --weights /dev/shm/v3w --ids "$IDS" 2>&1 | tee "$OUT/compare-v3-width.log" || status=1
# bf16 weights (fp32 activations): the GPU against the host on the same
# rounded weights, and tiny-a against the oracle with bf16 tolerances. One
# sequence of 6 tokens, so the few-row GEMMs (decode's schedule, rows <= 8)
# are compared at V3 widths too; the fp32 run above takes the tiled ones.
FEW=$(python3 -c "import random; random.seed(5); print(','.join(str(random.randrange(4096)) for _ in range(6)))")
$RUN compare gpu-artifacts/v3-width-bf16 --weights /dev/shm/v3w --ids "$FEW" 2>&1 | tee "$OUT/compare-v3-width-bf16.log" || status=1
# 10 ids: more than 8 rows, so the bf16 GEMMs take the tensor-core
# schedule (linear_mma with split-K, gated_linear_mma).
MMA=$(python3 -c "import random; random.seed(9); print(','.join(str(random.randrange(4096)) for _ in range(10)))")
$RUN compare gpu-artifacts/v3-width-bf16 --weights /dev/shm/v3w --ids "$MMA" 2>&1 | tee "$OUT/compare-v3-width-bf16-mma.log" || status=1
# The tensor-core expert GEMMs (expert_gmm_mma, taken from 2 routed rows per
# expert on average) forced at these sizes: one row per expert at V3 widths,
# several rows per expert (and empty experts) on tiny-a.
DSV3_EXPERT_MMA=1 $RUN compare gpu-artifacts/v3-width-bf16 --weights /dev/shm/v3w --ids "$MMA" 2>&1 | tee "$OUT/compare-v3-width-bf16-expert-mma.log" || status=1
DSV3_EXPERT_MMA=1 $RUN compare gpu-artifacts/tiny-a-bf16 --weights test/data/fixtures/tiny-a --ids 1,5,9,200,31,77,4,300/8,2,100,6,71,250,29,11 2>&1 | tee "$OUT/compare-tiny-a-bf16-expert-mma.log" || status=1
# The naive-form prefill over the cache (mla_prefill_cached; taken from
# DSV3_MLA_PREFILL_TOKENS=N new tokens a sequence, default 64) forced on
# every decode-entry call: the prefill (past 0) and the decode steps (past
# > 0) against the host.
DSV3_MLA_PREFILL_TOKENS=1 $RUN compare gpu-artifacts/v3-width-bf16 --weights /dev/shm/v3w --ids "$MMA" 2>&1 | tee "$OUT/compare-v3-width-bf16-prefill-cached.log" || status=1
DSV3_MLA_PREFILL_TOKENS=1 $RUN compare gpu-artifacts/tiny-a --weights test/data/fixtures/tiny-a --ids 1,5,9,200,31,77,4,300/8,2,100,6,71,250,29,11 2>&1 | tee "$OUT/compare-tiny-a-prefill-cached.log" || status=1
[ -n "${KERNELS_ONLY:-}" ] || $RUN verify gpu-artifacts/tiny-a-bf16 --weights test/data/fixtures/tiny-a --oracle test/data/fixtures/tiny-a --backend cuda 2>&1 | tee "$OUT/verify-tiny-a-bf16.log" || status=1
# Timings: scripts/gpu-time.sh, a second device call.
echo
echo "== summary ($(date -u +%F), $(cat "$OUT/gpu.txt"))"
for f in tiny-a tiny-b tiny-d tiny-e tiny-a-bf16; do
  [ -n "${KERNELS_ONLY:-}" ] && break
  printf '%-8s %s\n' "$f" "$(tail -1 "$OUT/verify-$f.log")"
done
for f in tiny-a tiny-d v3-width v3-width-bf16 v3-width-bf16-mma v3-width-bf16-expert-mma \
         tiny-a-bf16-expert-mma v3-width-bf16-prefill-cached tiny-a-prefill-cached; do
  printf '%-22s %s\n' "compare $f" "$(tail -1 "$OUT/compare-$f.log")"
done
[ -n "${KERNELS_ONLY:-}" ] || cat "$OUT/spec.log" "$OUT/jit.log"
# Training on the GPU (its own table).
[ -n "${KERNELS_ONLY:-}" ] || OUT="$OUT/train" bash scripts/gpu-train-check.sh || status=1
exit $status
