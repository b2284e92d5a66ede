#!/usr/bin/env bash
# rms_norm storing its rows as its reader's GEMM reads them (rms_norm_stored:
# bf16 or e4m3 codes and 1x128 scales, no float round trip and no to_bf16 /
# fp8_quantize pass) against DSV3_NORM_STORED=0, in one device call after
# bench/prepare.sh (or the two dsv3c lines of it) ran here:
#   run(command="bash scripts/gpu-norm-stored-check.sh",
#       carry=["bench-artifacts/v3-infer", "bench-artifacts/v3-infer-fp8", "gpu-bin", ".deps"])
# 1. The same bits either way: the bench slice's logits of 2 x 1024 random
#    tokens, bf16 and FP8, through the forward entry (latent_attention) and
#    through the cache (the decode entry's latent_attention_decode, as
#    generate's prefill), must be bitwise equal.
# 2. Prefill 4 x 2048 (bf16 and FP8) and 1 x 2048 (bf16), decode b128 at
#    context 1024 (bf16 and FP8: 128 rows take the stored forms too), alternating the
#    knob off and the default, REPS rounds (default 2).
# ARTS (default "v3-infer v3-infer-fp8"): the artifacts checked and timed;
# TIMING=0: 1. only.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-norm-stored
status=0
: > "$OUT/checks.txt"
IDS=$(python3 -c "import random; random.seed(5); print('/'.join(','.join(str(random.randrange(129280)) for _ in range(1024)) for _ in range(2)))")
RUN_A=$RUN RUN_B=$RUN ENV_A=DSV3_NORM_STORED=0 ENV_B=DSV3_NORM_STORED=1
ARTS=${ARTS:-v3-infer v3-infer-fp8}
for art in $ARTS; do
  for how in "" --through-cache; do
    A=bench-artifacts/$art B=bench-artifacts/$art
    tag=$art${how:+-cache}
    forward_ab "$tag" --random-weights 1 --backend cuda --ids "$IDS" $how
    if cmp -s /dev/shm/$tag-A.safetensors /dev/shm/$tag-B.safetensors; then
      r="bitwise equal: PASS"
    else
      r="differ: FAIL"; status=1
      python3 scripts/logits-diff.py /dev/shm/$tag-A.safetensors /dev/shm/$tag-B.safetensors \
        2>&1 | tail -4 | tee -a "$OUT/checks.txt"
    fi
    echo "$tag logits of 2 x 1024 tokens, DSV3_NORM_STORED=0 vs 1: $r" | tee -a "$OUT/checks.txt"
    rm -f /dev/shm/$tag-*.safetensors
  done
done
[ "${TIMING:-1}" = 1 ] || finish
DSV3_PROFILE=1 timeout 120 $RUN time bench-artifacts/v3-infer-fp8 --random-weights 1 --backend cuda \
  --batch 4 --seq 2048 --steps 1 > "$OUT/profile-fp8-4x2048.log" 2>&1
grep -E "rms_norm|fp8_quantize|to_bf16" "$OUT/profile-fp8-4x2048.log" | head -8 | tee -a "$OUT/checks.txt"
for rep in $(seq ${REPS:-2}); do
  for v in 0 1; do
    for spec in "v3-infer:--batch 4 --seq 2048" "v3-infer:--batch 1 --seq 2048" \
      "v3-infer-fp8:--batch 4 --seq 2048" "v3-infer:--batch 128 --context 1024" \
      "v3-infer-fp8:--batch 128 --context 1024"; do
      art=${spec%%:*} shape=${spec#*:}
      case " $ARTS " in *" $art "*) ;; *) continue ;; esac
      r=$(DSV3_NORM_STORED=$v timeout 120 $RUN time bench-artifacts/$art --random-weights 1 \
        --backend cuda $shape --steps 3 2>&1 | tail -1 | grep -oE "(prefill|decode)[^,;]* [0-9.]+ ms")
      printf 'rep %s DSV3_NORM_STORED=%s %-13s %-20s %s\n' $rep $v $art "$shape" "$r" |
        tee -a "$OUT/checks.txt"
    done
  done
done
finish
