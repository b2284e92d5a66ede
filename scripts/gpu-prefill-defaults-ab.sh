#!/usr/bin/env bash
# The prefill with the 28th session's defaults (mla_prefill_tma, the fused
# FP8 kv_b_proj, the TMA-stored FP8 tiles) against all three off, alternating,
# on the bench slice (bf16 4 x 2048 and 1 x 2048, FP8 4 x 2048):
#   run(command="bash scripts/gpu-prefill-defaults-ab.sh",
#       carry=["bench-artifacts/v3-infer", "bench-artifacts/v3-infer-fp8", "gpu-bin", ".deps"])
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-prefill-defaults
OFF="DSV3_PREFILL_TMA=0 DSV3_MLA_KV_FP8=0 DSV3_FP8_TMA_STORE=0"
: > "$OUT/checks.txt"
for rep in $(seq ${REPS:-2}); do
  for side in off default; do
    e=$([ $side = off ] && echo "$OFF" || echo "DSV3_UNUSED=0")
    for spec in "v3-infer:--batch 4 --seq 2048" "v3-infer:--batch 1 --seq 2048" \
      "v3-infer-fp8:--batch 4 --seq 2048"; do
      art=${spec%%:*} shape=${spec#*:}
      r=$(env $e timeout 120 $RUN time bench-artifacts/$art --random-weights 1 --backend cuda \
        $shape --steps 2 2>&1 | tail -1 | grep -o "prompt.*prefill [0-9.]* ms")
      printf 'rep %s %-8s %-13s %s\n' $rep $side $art "$r" | tee -a "$OUT/checks.txt"
    done
  done
done
echo; echo "== $(date +%F) $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
cat "$OUT/checks.txt"
