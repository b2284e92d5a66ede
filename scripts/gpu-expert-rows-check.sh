#!/usr/bin/env bash
# Decode at batch 1, 32 and 128: the routed experts' row kernels
# (expert_rows_split_mma, expert_gated_rows_split_mma: the warps of a group
# split K, DSV3_EXPERT_ROWS_KSPLIT=1/2/4/8 warps a group, or g,d: the gated
# and the down kernel apart) and the absorbed attention's staged kernel
# (DSV3_DECODE_STAGED_GROUPS=2 or 4 groups of 16 heads a block), in one
# device call (~6 min; CHECKS=0: timing only, ~3 min), after compiling
# here gpu-artifacts/{tiny-a-bf16,v3-width,v3-width-bf16}
# (scripts/gpu-prepare.sh) and bench-artifacts/v3-infer (bench/prepare.sh):
#   run(command="bash scripts/gpu-expert-rows-check.sh",
#       carry=["gpu-artifacts", "bench-artifacts", ".deps"])
# 1. Decode at context 1024 on the bench slice, every CONFIGS entry
#    (ks:groups; groups 0: the default rule) in turn at batch 1, 32
#    and 128, then batch 128 again; the entry with the least batch-128 time is
#    "best".
# 2. Against the host (`compare`: every kernel on the same inputs, 1e-4):
#    tiny-a bf16 at the decode's row counts and with every expert GEMM on
#    the row kernels (DSV3_EXPERT_MMA=0: up to ~50 rows an expert, several
#    32-row passes) for every ks; the V3-width slice in bf16 at the best
#    entry; verify of
#    tiny-a bf16 against the float64 oracle. bf16-check of
#    the V3-width slice: each staged tile bitwise against mla_decode_mma
#    (which it holds to float64) and timed.
# 3. A per-kernel profile of batch 128 and 32 at the best entry.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-expert-rows
status=0
IDS=1,5,9,200,31,77,4,300/8,2,100,6,71,250,29,11
MMA=$(python3 -c "import random; random.seed(9); print(','.join(str(random.randrange(4096)) for _ in range(10)))")
CONFIGS=${CONFIGS:-2:0 1:0 2,4:0}
BATCHES=${BATCHES:-1 32}
A="bench-artifacts/v3-infer --random-weights 1 --backend cuda"
: > "$OUT/time.log"
: > "$OUT/checks.txt"
cfg() { # ks:groups -> the environment
  local IFS=:
  set -- $1
  echo DSV3_EXPERT_ROWS_KSPLIT=$1 DSV3_DECODE_STAGED_GROUPS=$2
}
step() { # ks:groups batch
  local s=$(( $2 == 128 ? 8 : $2 == 32 ? 16 : 32 ))
  env $(cfg $1) timeout 90 $RUN time $A --batch $2 --context 1024 --steps $s 2>&1 | tail -1 |
    grep -o "decode [0-9.]* ms" | grep -o "[0-9.]*"
}
for round in 1 2; do
  for c in $CONFIGS; do
    for b in $([ $round = 1 ] && echo $BATCHES) 128; do
      printf 'round %s config %s b%-4s %s ms\n' $round $c $b "$(step $c $b)" |
        tee -a "$OUT/time.log"
    done
  done
done
best=$(python3 - "$OUT/time.log" <<'EOF'
import sys, collections
t = collections.defaultdict(float)
for line in open(sys.argv[1]):
    f = line.split()
    if f[4] == "b128" and len(f) > 5 and f[5] != "ms":
        t[f[3]] += float(f[5])
print(min(t, key=t.get) if t else "2:0")
EOF
)
echo "best (ks:groups): $best" | tee -a "$OUT/time.log"
export $(cfg $best)
if [ "${CHECKS:-1}" != 0 ]; then
  for c in 1:0 2:0 4:0 8:0; do
    for force in "" DSV3_EXPERT_MMA=0; do
      check "$c compare-tiny-a-bf16${force:+-$force}" env $(cfg $c) $force \
        timeout 120 $RUN compare gpu-artifacts/tiny-a-bf16 --weights test/data/fixtures/tiny-a \
        --ids $IDS
    done
  done
  check "verify-tiny-a-bf16" timeout 120 $RUN verify gpu-artifacts/tiny-a-bf16 \
    --weights test/data/fixtures/tiny-a --oracle test/data/fixtures/tiny-a --backend cuda
  [ -d /dev/shm/v3w ] || $RUN init gpu-artifacts/v3-width --seed 7 --out /dev/shm/v3w \
    > "$OUT/init.log" 2>&1 || status=1
  check "$best compare-v3-width-bf16" timeout 300 $RUN compare gpu-artifacts/v3-width-bf16 \
    --weights /dev/shm/v3w --ids "$MMA"
  $RUN bf16-check gpu-artifacts/v3-width-bf16 --seq 64 --context 30 > "$OUT/bf16-check.log" 2>&1 ||
    status=1
  grep -E "staged|timing 128|bf16-check: |FAIL" "$OUT/bf16-check.log" | tee -a "$OUT/checks.txt"
fi
for b in 128 32; do
  DSV3_PROFILE=1 timeout 90 $RUN time $A --batch $b --context 1024 --steps 2 \
    > "$OUT/profile-b$b.log" 2>&1
  echo "-- profile b$b (ks:groups $best)"; sed -n 2,9p "$OUT/profile-b$b.log"
done
finish time.log
