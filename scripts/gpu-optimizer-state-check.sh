#!/usr/bin/env bash
# AdamW's moments in bf16 on the GPU (dsv3c --optimizer-state bf16;
# DeepSeek-V3 3.3.3), in one device call. Here first:
#   B=build/bin/dsv3c
#   $B test/data/fixtures/tiny-e --mode train --target cuda --optimizer-state bf16 \
#     -o gpu-artifacts/train-bf16m-tiny-e
#   $B test/data/fixtures/tiny-e --mode train --target cuda -o gpu-artifacts/train-tiny-e
#   $B bench/configs/train-run-400m.json --mode train --target cuda --max-batch 8 \
#     --max-seq 1024 [--optimizer-state bf16] --quiet -o ab/train-run-{new,bf16m}
#   $B bench/configs/v3-train-2layer.json --mode train --dtype f32 --target cuda \
#     --max-batch 4 --max-seq 4096 [--optimizer-state bf16] --quiet -o ab/v3-train-{new,bf16m}
#   run(command="bash scripts/gpu-optimizer-state-check.sh",
#       carry=["gpu-artifacts/train-bf16m-tiny-e", "gpu-artifacts/train-tiny-e", "ab", ".deps"])
# 1. compare: every launch of the bf16-moment train step against the host's
#    (whose adamw rounds the moments alike).
# 2. 200 steps of tiny-e on the GPU, bf16 moments against fp32 moments: 10-step
#    means within 2% (test/Training/bf16-moments.test's bound on the host).
# 3. Step time of the bench slice (train 4 x 4096), fp32 and bf16 moments
#    alternating (and ab/*-old, an older adamw_update, when present), and
#    the optimizer's kernels in a profile of each.
# 4. The real run's model (~0.45B), STEPS (default 60) steps of 8 x 1024
#    tokens, bf16 compute, bf16 moments against fp32 moments from the same
#    initialisation: 10-step means within max(2%, 1.5 x a repeat's
#    distance); with ab/train-run-old, its steps bitwise equal to new's.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-optimizer-state
status=0
: > "$OUT/checks.txt"
IDS=1,5,9,200,31,77,4,300/8,2,100,6,71,250,29,11
check "compare train-bf16m-tiny-e" timeout 300 $RUN compare gpu-artifacts/train-bf16m-tiny-e \
  --weights test/data/fixtures/tiny-e --ids $IDS
$RUN tokenize --text /usr/share/common-licenses/GPL-3 --out /dev/shm/gpl.tokens > /dev/null 2>&1 || status=1
for art in train-tiny-e train-bf16m-tiny-e; do
  rm -rf /dev/shm/w-$art
  timeout 300 $RUN train gpu-artifacts/$art --weights test/data/fixtures/tiny-e \
    --data /dev/shm/gpl.tokens --steps 200 --batch 2 --seq 64 --lr 1e-3 --warmup 10 \
    --backend cuda --save-dir /dev/shm/w-$art --metrics "$OUT/curve-$art.jsonl" \
    > "$OUT/train-$art.log" 2>&1 || status=1
  rm -rf /dev/shm/w-$art
done
python3 test/Training/Inputs/compare_curves.py "$OUT/curve-train-tiny-e.jsonl" \
  "$OUT/curve-train-bf16m-tiny-e.jsonl" 10 0.02 | tail -1 | sed 's/^/tiny-e bf16 vs fp32 moments: /' |
  tee -a "$OUT/checks.txt"
tail -1 "$OUT/checks.txt" | grep -q PASS || status=1
if [ -d ab/v3-train-new ] && [ -d ab/v3-train-bf16m ]; then
  # ab/*-old when present (the kernels before a change to adamw_update's
  # fp32 form): its step time beside, and 3 steps of the 0.45B model
  # bitwise equal to the new kernels'.
  vs="new bf16m"; [ -d ab/v3-train-old ] && vs="old new bf16m"
  for v in $vs $vs; do
    r=$(timeout 150 $RUN time ab/v3-train-$v --random-weights 1 --backend cuda --train --compute bf16 \
      --batch 4 --seq 4096 --steps 3 2>&1 | tail -1 | grep -oE "train_step [0-9.]+ ms")
    printf 'train-4x4096 %-8s %s\n' "$v" "$r" | tee -a "$OUT/checks.txt"
  done
  for v in new bf16m; do
    DSV3_PROFILE=1 timeout 150 $RUN time ab/v3-train-$v --random-weights 1 --backend cuda --train \
      --compute bf16 --batch 4 --seq 4096 --steps 1 > "$OUT/profile-$v.log" 2>&1
    grep -E "adamw|sum_squares" "$OUT/profile-$v.log" | sed "s/^/[$v] /" | tee -a "$OUT/checks.txt"
  done
fi
if [ -d ab/train-run-new ] && [ -d ab/train-run-bf16m ]; then
  cat /usr/share/common-licenses/* README.md docs/*.md > /dev/shm/os-text.txt
  $RUN tokenize --text /dev/shm/os-text.txt --out /dev/shm/os.tokens > /dev/null 2>&1 || status=1
  runs="new:a new:b bf16m:a"; [ -d ab/train-run-old ] && runs="old:a $runs"
  for run in $runs; do
    IFS=: read -r v rep <<< "$run"
    rm -rf /dev/shm/os-$v
    timeout 200 $RUN train ab/train-run-$v --init 1 --data /dev/shm/os.tokens --steps ${STEPS:-60} \
      --batch 8 --seq 1024 --lr 1e-3 --warmup 10 --save-dir /dev/shm/os-$v \
      --metrics "$OUT/run-$v-$rep.jsonl" --backend cuda --compute bf16 > "$OUT/run-$v-$rep.log" 2>&1 ||
      status=1
    rm -rf /dev/shm/os-$v
  done
  if [ -f "$OUT/run-old-a.jsonl" ]; then
    python3 - "$OUT/run-old-a.jsonl" "$OUT/run-new-a.jsonl" <<'PY' | tee -a "$OUT/checks.txt" || status=1
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
same = len(a) == len(b) > 0 and all(x["loss"] == y["loss"] and x["grad_norm"] == y["grad_norm"]
                                    for x, y in zip(a, b))
print(f"0.45B model old vs new kernels, {len(a)} steps' loss and grad_norm bitwise:",
      "PASS" if same else "FAIL")
sys.exit(0 if same else 1)
PY
  fi
  python3 test/Training/Inputs/compare_curves.py "$OUT/run-new-a.jsonl" "$OUT/run-bf16m-a.jsonl" 10 \
    0.02 "$OUT/run-new-b.jsonl" | tail -1 | sed 's/^/0.45B model bf16 vs fp32 moments: /' |
    tee -a "$OUT/checks.txt"
  tail -1 "$OUT/checks.txt" | grep -q PASS || status=1
fi
finish
