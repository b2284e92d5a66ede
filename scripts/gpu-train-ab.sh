#!/usr/bin/env bash
# A/B of a kernel change on training and prefill, one device call: the same
# artifacts compiled here before (ab/*-old) and after (ab/*-new) the change
# (the kernels are embedded in dsv3c, so: compile the -old set, rebuild,
# compile the -new set):
#   B=build/bin/dsv3c; for v in old new; do   # (rebuild between the two)
#     $B bench/configs/v3-train-2layer.json --mode train --dtype f32 --target cuda \
#       --max-batch 4 --max-seq 4096 --quiet -o ab/v3-train-$v
#     $B bench/configs/train-run-400m.json --mode train --target cuda \
#       --max-batch 8 --max-seq 1024 --quiet -o ab/train-run-$v
#     $B bench/configs/v3-infer-3layer.json --target cuda --dtype bf16 --max-batch 128 \
#       --max-seq 2048 --max-tokens 8192 --quiet -o ab/v3-infer-$v
#   done
#   rm -f ab/*/cuda/compute_80.ptx
#   run(command="bash scripts/gpu-train-ab.sh", carry=["ab", ".deps"])
# 1. bf16-check on the bench's training artifact (new kernels): the
#    attention backward and training's bf16 GEMMs (forward with bias and
#    residual, accumulated input gradients, weight gradients, grouped and
#    per-expert forms) against float64.
# 2. Bits: 3 bf16 training steps of the ~0.4B model, old and new kernels,
#    the same data: every step's loss and gradient norm must be identical.
# 3. Times, old and new alternating on this machine (medians of STEPS,
#    default 4, after a warm-up): train 1x4096 and 4x4096 on the bench
#    slice, prefill 4x2048 and decode b128; a site profile of 4x4096 (new).
# PARTS (default 123) picks the parts; ROWS (names, space-separated) part
# 3's rows (PROFILE=0: no site profile). ENV_B=VAR=VALUE (a runtime change's switch): part 3 times the
# new artifacts under ENV_A (default none) against ENV_B instead of old
# against new, and part 2 also trains the new ones under ENV_B and prints
# how far their losses and gradient norms move.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-train-ab
status=0
: > "$OUT/checks.txt"
PARTS=${PARTS:-123}
if [[ $PARTS == *1* ]]; then
for shape in 1000,1024,2048 300,576,640; do
  timeout 200 $RUN bf16-check ab/v3-train-new --seq 200 --shape $shape > "$OUT/bf16-${shape//,/x}.log" 2>&1 ||
    status=1
  grep -vE "^  timing" "$OUT/bf16-${shape//,/x}.log" | sed "s/^/[$shape] /" | tee -a "$OUT/checks.txt"
done
fi
if [[ $PARTS == *2* ]]; then
cat /usr/share/common-licenses/* README.md docs/*.md > /dev/shm/ab-text.txt
$RUN tokenize --text /dev/shm/ab-text.txt --out /dev/shm/ab.tokens > /dev/null 2>&1 || status=1
for v in old new; do
  rm -rf /dev/shm/ab-$v
  timeout 200 env ${ENV_A:-DSV3_DEFAULT=1} $RUN train ab/train-run-$v --init 1 --data /dev/shm/ab.tokens --steps 3 --batch 8 \
    --seq 1024 --lr 1e-3 --warmup 2 --save-dir /dev/shm/ab-$v --metrics "$OUT/metrics-$v.jsonl" \
    --backend cuda --compute bf16 > "$OUT/train-$v.log" 2>&1 || status=1
  rm -rf /dev/shm/ab-$v
done
python3 - "$OUT/metrics-old.jsonl" "$OUT/metrics-new.jsonl" <<'PY' | tee -a "$OUT/checks.txt" || status=1
import json, sys
rows = [[json.loads(l) for l in open(p)] for p in sys.argv[1:]]
keys = ("loss", "grad_norm")
same = len(rows[0]) == len(rows[1]) == 3 and all(
    a.get(k) == b.get(k) for a, b in zip(*rows) for k in keys)
for a, b in zip(*rows):
    print("step", a.get("step"), " ".join(f"{k} {a.get(k)!r} / {b.get(k)!r}" for k in keys))
print("train-run old vs new kernels, loss and grad_norm bitwise:", "PASS" if same else "FAIL")
sys.exit(0 if same else 1)
PY
if [ -n "${ENV_B:-}" ]; then # the new kernels again under ENV_B: how far the runtime's change moves
  rm -rf /dev/shm/ab-b
  timeout 200 env $ENV_B $RUN train ab/train-run-new --init 1 --data /dev/shm/ab.tokens --steps 3 \
    --batch 8 --seq 1024 --lr 1e-3 --warmup 2 --save-dir /dev/shm/ab-b --metrics "$OUT/metrics-b.jsonl" \
    --backend cuda --compute bf16 > "$OUT/train-b.log" 2>&1 || status=1
  rm -rf /dev/shm/ab-b
  python3 - "$OUT/metrics-new.jsonl" "$OUT/metrics-b.jsonl" "$ENV_B" <<'PY' | tee -a "$OUT/checks.txt"
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
for x, y in zip(a, b):
    print(f"step {x['step']} loss {x['loss']:.6f} / {y['loss']:.6f} ({sys.argv[3]}) rel "
          f"{abs(x['loss'] - y['loss']) / abs(x['loss']):.2e}, grad_norm rel "
          f"{abs(x['grad_norm'] - y['grad_norm']) / abs(x['grad_norm']):.2e}")
PY
fi
fi
if [[ $PARTS == *3* ]]; then
t() { # name, artifact, dsv3-run time's arguments
  local name=$1 art=$2; shift 2
  [[ " ${ROWS:-train-1x4096 train-4x4096 prefill-4x2048 decode-b128} " == *" $name "* ]] || return 0
  # Without ENV_B: the old and the new artifacts; with it, the new
  # artifact under ENV_A (default: nothing set) and ENV_B.
  for v in a b a b; do
    local art2=ab/$art-new env=${ENV_A:-DSV3_DEFAULT=1} label=${ENV_A:-new}
    if [ -z "${ENV_B:-}" ]; then
      [ $v = a ] && art2=ab/$art-old label=old || label=new
    elif [ $v = b ]; then
      env=$ENV_B label=$ENV_B
    fi
    r=$(timeout 150 env $env $RUN time $art2 --random-weights 1 --backend cuda "$@" 2>&1 |
      tail -1 | grep -oE "(train_step|decode|prefill) [0-9.]+ ms" | head -1)
    printf '%-16s %-24s %s\n' "$name" "$label" "$r" | tee -a "$OUT/checks.txt"
  done
}
t train-1x4096 v3-train --train --compute bf16 --batch 1 --seq 4096 --steps ${STEPS:-4}
t train-4x4096 v3-train --train --compute bf16 --batch 4 --seq 4096 --steps ${STEPS:-4}
t prefill-4x2048 v3-infer --batch 4 --seq 2048 --steps ${STEPS:-4}
t decode-b128 v3-infer --batch 128 --context 1024 --steps 8
[ "${PROFILE:-1}" = 1 ] && DSV3_PROFILE=site DSV3_PROFILE_ROWS=60 timeout 150 $RUN time ab/v3-train-new --random-weights 1 \
  --backend cuda --train --compute bf16 --batch 4 --seq 4096 --steps 1 > "$OUT/site-4-new.log" 2>&1
fi
finish
