#!/usr/bin/env bash
# The bf16 and FP8 latent caches (dsv3c --kv-cache) on the cuda backend:
# mla_prepare writes each row it appends packed as the storage keeps it
# (bf16 rows; e4m3 latent, bf16 rope key and the row's scale), with the
# host's storeCacheRow's values, and the decode kernels read the packed
# rows; one device call after these here:
#   dsv3c test/data/fixtures/tiny-a --kv-cache bf16 --target cuda -o gpu-artifacts/tiny-a-kvbf16
#   dsv3c test/data/fixtures/tiny-a --kv-cache fp8 --target cuda -o gpu-artifacts/tiny-a-kvfp8
#   dsv3c test/data/fixtures/tiny-e --kv-cache fp8 --quantize fp8 --target cuda \
#     -o gpu-artifacts/tiny-e-kvfp8
#   dsv3c test/data/fixtures/tiny-a --kv-cache fp8 --dtype bf16 --target cuda \
#     -o gpu-artifacts/tiny-a-bf16-kvfp8   (verify only: mla_decode_mma)
#   run(command="bash scripts/gpu-kv-cache-check.sh", carry=["gpu-artifacts", ".deps"])
# 1. verify --backend cuda: every cache row the decode wrote is exactly what
#    the storage keeps, the prefill entry and continuous batching agree with
#    the decode entry, and what the storage costs (reported), as the host's
#    test/Conformance/kv-cache.test.
# 2. compare: the GPU against the host kernel by kernel (the caches too).
# 3. tiny-e (MTP's own cache, FP8 weights): speculative decoding on the GPU
#    gives the tokens of plain greedy decoding.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-kv-cache
status=0
: > "$OUT/checks.txt"
for a in tiny-a-kvbf16:tiny-a tiny-a-kvfp8:tiny-a tiny-e-kvfp8:tiny-e tiny-a-bf16-kvfp8:tiny-a; do
  art=${a%%:*} F=test/data/fixtures/${a#*:}
  timeout 300 $RUN verify gpu-artifacts/$art --weights $F --oracle $F --backend cuda \
    > "$OUT/verify-$art.log" 2>&1 || status=1
  grep -E "cache rows|vs forward|prefill entry|continuous|gen_ids" "$OUT/verify-$art.log" |
    sed "s/^/$art verify: /"
  printf '%-14s verify  %s\n' $art "$(tail -1 "$OUT/verify-$art.log")" | tee -a "$OUT/checks.txt"
  # (compare keeps the fp32 kernels: the bf16 model's decode is verify's)
  case $art in *-bf16-*) continue ;; esac
  r=$(timeout 300 $RUN compare gpu-artifacts/$art --weights $F \
    --ids 1,5,9,20,31,7,4,3/8,2,10,6,7,25,29,11 2>&1 | tee "$OUT/compare-$art.log" | tail -1)
  printf '%-14s compare %s\n' $art "$r" | tee -a "$OUT/checks.txt"
  case "$r" in *" passed, 0 failed"*) ;; *) status=1 ;; esac
done
E=gpu-artifacts/tiny-e-kvfp8 W=test/data/fixtures/tiny-e
$RUN generate $E --weights $W --backend cuda --prompt-ids 1,2,3,4/9,8,7 --max-new 12 \
  > "$OUT/plain.txt" 2>&1 || status=1
$RUN generate $E --weights $W --backend cuda --prompt-ids 1,2,3,4/9,8,7 --max-new 12 \
  --speculative mtp 2>&1 | grep -v "^speculative" > "$OUT/spec.txt"
if diff -q "$OUT/plain.txt" "$OUT/spec.txt" > /dev/null && [ -s "$OUT/plain.txt" ]; then
  echo "tiny-e-kvfp8   speculative (MTP) tokens = greedy tokens: PASS" | tee -a "$OUT/checks.txt"
else
  echo "tiny-e-kvfp8   speculative (MTP) tokens differ from greedy: FAIL" | tee -a "$OUT/checks.txt"
  status=1
fi
echo
cat "$OUT/checks.txt"
exit $status
