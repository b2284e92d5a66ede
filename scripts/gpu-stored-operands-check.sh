#!/usr/bin/env bash
# Operands stored in the form their GEMM reads (DevTensor::Storage: the
# routed rows gathered as bf16 or as e4m3 codes with their 1x128 scales,
# the gated GEMMs' outputs stored as bf16 for the down GEMMs, the prefill
# attention's output stored as bf16 for o_proj), the FP8 gated
# GEMMs quantizing once and running as one kernel (fp8_gemm_tma<1>, SwiGLU
# in its epilogue), one device call after `bash bench/prepare.sh` and
# `dsv3c test/data/fixtures/tiny-a --target cuda --quantize fp8 -o
# gpu-artifacts/tiny-a-fp8` here:
#   run(command="bash scripts/gpu-stored-operands-check.sh",
#       carry=["bench-artifacts", "gpu-artifacts", ".deps"])
# 1. Each stored form is the value its reader rounded the floats to, and
#    the fused gated kernel adds the same products and applies the same
#    SwiGLU, so the bench slice's logits (1024 tokens, bf16 and FP8,
#    cuBLASLt's tuning off so both runs take the same algorithms) must be
#    bitwise those of the float / two-GEMM forms (REF); the profile must
#    show the new kernels.
# 2. scripts/gpu-gemm-tiles-check.sh CHECKS_ONLY=1: the bf16 GEMMs against
#    float64, the FP8 schedules against the host (fp8_quantize rewritten
#    around quantizeBlock128).
# 3. (Unless CHECKS_ONLY=1) prefill 4 x 2048, 1 x 2048 (bf16) and 4 x 2048
#    (FP8) with each form.
# ARTS (default "v3-infer v3-infer-fp8") picks the artifacts of 1;
# PROFILES=0 skips their profiles, TILES=0 the checks of 2.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-stored
status=0
REF="DSV3_STORED_OPERANDS=0 DSV3_FP8_GATED_TMA=0"
IDS=$(python3 -c "import random; random.seed(3); print(','.join(str(random.randrange(129280)) for _ in range(1024)))")
: > "$OUT/checks.txt"
for art in ${ARTS:-v3-infer v3-infer-fp8}; do
  for form in ref new; do
    env $([ $form = ref ] && echo $REF) DSV3_CUBLAS_TUNE=0 timeout 300 $RUN forward \
      bench-artifacts/$art --random-weights 1 --backend cuda --ids "$IDS" \
      --out /dev/shm/logits-$art-$form.safetensors > "$OUT/forward-$art-$form.log" 2>&1 ||
      { status=1; tail -3 "$OUT/forward-$art-$form.log"; }
  done
  if cmp -s /dev/shm/logits-$art-ref.safetensors /dev/shm/logits-$art-new.safetensors; then
    r="bitwise equal: PASS"
  else
    r="differ: FAIL"; status=1
  fi
  printf '%-13s logits of 1024 tokens vs (%s): %s (%s bytes)\n' $art "$REF" "$r" \
    "$(stat -c %s /dev/shm/logits-$art-new.safetensors 2>/dev/null)" | tee -a "$OUT/checks.txt"
  rm -f /dev/shm/logits-$art-*.safetensors
  [ "${PROFILES:-1}" = 0 ] && continue
  DSV3_PROFILE=site timeout 300 $RUN time bench-artifacts/$art --random-weights 1 \
    --backend cuda --batch 4 --seq 2048 --steps 1 > "$OUT/profile-$art.log" 2>&1 || status=1
  echo "== $art prefill 4 x 2048 profile"
  sed -n 1,30p "$OUT/profile-$art.log"
  tail -1 "$OUT/profile-$art.log"
done
if [ "${TILES:-1}" != 0 ]; then
  CHECKS_ONLY=1 OUT=$OUT/tiles bash scripts/gpu-gemm-tiles-check.sh > "$OUT/tiles.log" 2>&1 ||
    status=1
  grep -c PASS "$OUT/tiles.log" | sed 's/^/GEMM checks passed: /' | tee -a "$OUT/checks.txt"
  grep -E "FAIL|rror" "$OUT/tiles.log" | tee -a "$OUT/checks.txt"
fi
if [ -z "${CHECKS_ONLY:-}" ]; then
  for env in "$REF" DSV3_FP8_GATED_TMA=0 "DSV3_STORED_OPERANDS=1"; do
    for run in "v3-infer --batch 4 --seq 2048" "v3-infer --batch 1 --seq 2048" \
      "v3-infer-fp8 --batch 4 --seq 2048"; do
      art=${run%% *} shape=${run#* }
      r=$(env $env timeout 120 $RUN time bench-artifacts/$art --random-weights 1 --backend cuda \
        $shape --steps 2 2>&1 | tail -1 | grep -o "prompt.*prefill [0-9.]* ms")
      printf '%-48s %-13s %s\n' "$env" "$art" "$r" | tee -a "$OUT/checks.txt"
    done
  done
fi
echo
cat "$OUT/checks.txt"
exit $status
