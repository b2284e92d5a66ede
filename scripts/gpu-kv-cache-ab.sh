#!/usr/bin/env bash
# The packed latent cache at DeepSeek-V3's widths against the build before
# it, in one device call: the decode with `dsv3c --kv-cache fp8` (or bf16)
# as the runtime kept it before (rounded values in fp32 rows, 2304 bytes a
# token and layer) and packed (e4m3 latent, bf16 rope key and the row's
# scale in 656 bytes). The values every kernel reads are the same, so
# logits and tokens must be bitwise equal:
#   (before the change) ninja -C build dsv3c; cp build/bin/dsv3c /tmp/dsv3c-old;
#     bash scripts/gpu-prebuild.sh; cp -r gpu-bin gpu-bin-b
#   (after) ninja -C build; bash scripts/gpu-prebuild.sh
#   for v in old new: dsv3c bench/configs/v3-infer-3layer.json --target cuda --dtype bf16 \
#     --kv-cache fp8 --max-batch 128 --max-seq 2048 --max-tokens 8192 --quiet -o ab/$v
#     (old with /tmp/dsv3c-old); rm -f ab/*/cuda/compute_80.ptx
#   run(command="RUN_A=gpu-bin-b/dsv3-run bash scripts/gpu-kv-cache-ab.sh",
#       carry=["ab", "gpu-bin", "gpu-bin-b", ".deps"])
# 1. forward --through-cache of 512 random tokens (the decode entry's
#    prefill over the cache: mla_prepare writes the rows, the prefill
#    attention reads them): logits bitwise equal.
# 2. generate, 4 and 128 prompts of 16 random tokens, 8 new tokens each
#    (the decode steps: mla_decode_mma at 4 rows, mla_decode_mma_staged at
#    128): the same tokens.
# 3. decode steps at batch 32 and 128 over a context of 1024, alternating
#    A and B (REPS, default 2): milliseconds a step, and the device memory.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-kv-cache-ab
A=${A:-ab/old} B=${B:-ab/new}
RUN_A=${RUN_A:-$RUN} RUN_B=${RUN_B:-$RUN}
status=0
T0=$(date +%s)
at() { echo "[$(( $(date +%s) - T0 )) s]"; }
rand() { python3 -c "import random; random.seed($1); print('$3'.join(','.join(str(random.randrange(129280)) for _ in range($2)) for _ in range(${4:-1})))"; }
IDS=$(rand 3 512 /)
forward_ab kv-logits --random-weights 1 --backend cuda --through-cache --ids "$IDS"
if cmp -s /dev/shm/kv-logits-A.safetensors /dev/shm/kv-logits-B.safetensors; then
  r="bitwise equal: PASS"
else
  r="differ: FAIL"; status=1
fi
echo "$(at) forward --through-cache, 512 tokens, $A vs $B: $r" | tee -a "$OUT/checks.txt"
rm -f /dev/shm/kv-logits-*.safetensors
for n in 4 128; do
  P=$(rand 5 16 / $n)
  for v in A B; do
    run_=RUN_$v
    timeout 240 ${!run_} generate "${!v}" --random-weights 1 --backend cuda --prompt-ids "$P" \
      --max-new 8 > "$OUT/generate-$n-$v.txt" 2> "$OUT/generate-$n-$v.log" ||
      { status=1; tail -3 "$OUT/generate-$n-$v.log"; }
  done
  if [ -s "$OUT/generate-$n-A.txt" ] && cmp -s "$OUT/generate-$n-A.txt" "$OUT/generate-$n-B.txt"; then
    r="the same tokens: PASS"
  else
    r="tokens differ: FAIL"; status=1
  fi
  echo "$(at) generate, $n prompts x 16 + 8 new: $r" | tee -a "$OUT/checks.txt"
done
for b in 32 128; do
  for rep in $(seq "${REPS:-2}"); do
    for v in A B; do
      run_=RUN_$v
      timeout 120 ${!run_} time "${!v}" --random-weights 1 --backend cuda --batch $b --context 1024 \
        --steps 20 > "$OUT/time-$b-$v-$rep.log" 2>&1 || status=1
      r=$(grep -o "decode [0-9.]* ms[^,]*" "$OUT/time-$b-$v-$rep.log" | head -1)
      m=$(grep -o "resident caches [^,;)]*" "$OUT/time-$b-$v-$rep.log" | head -1)
      echo "$(at) rep $rep decode b$b ctx1024 ${!v}: $r | $m" | tee -a "$OUT/checks.txt"
    done
  done
done
finish
