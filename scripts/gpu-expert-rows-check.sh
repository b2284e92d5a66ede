#!/usr/bin/env bash
# Decode at batch 32 and 128: the routed experts' row kernels
# (expert_rows_split_mma, expert_gated_rows_split_mma: the warps of a group
# split K, DSV3_EXPERT_ROWS_KSPLIT=1/2/4/8 warps a group) and the absorbed
# attention's staged kernel (DSV3_DECODE_STAGED_GROUPS=2 or 4 groups of 16
# heads a block), in one device call (~6 min), after compiling
# here gpu-artifacts/{tiny-a-bf16,v3-width,v3-width-bf16}
# (scripts/gpu-prepare.sh) and bench-artifacts/v3-infer (bench/prepare.sh):
#   run(command="bash scripts/gpu-expert-rows-check.sh",
#       carry=["gpu-artifacts", "bench-artifacts", ".deps"])
# 1. Decode at context 1024 on the bench slice, every CONFIGS entry
#    (ks:groups) in turn at batch 32 and 128, then batch 128 again; the
#    entry with the least batch-128 time is "best".
# 2. Against the host (`compare`: every kernel on the same inputs, 1e-4):
#    tiny-a bf16 at the decode's row counts and with every expert GEMM on
#    the row kernels (DSV3_EXPERT_MMA=0: up to ~50 rows an expert, several
#    32-row passes) for every ks; the V3-width slice in bf16 at the best
#    ks; verify of tiny-a bf16 against the float64 oracle. bf16-check of
#    the V3-width slice: each staged tile bitwise against mla_decode_mma
#    (which it holds to float64) and timed.
# 3. A per-kernel profile of batch 128 and 32 at the best entry.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-expert-rows
status=0
IDS=1,5,9,200,31,77,4,300/8,2,100,6,71,250,29,11
MMA=$(python3 -c "import random; random.seed(9); print(','.join(str(random.randrange(4096)) for _ in range(10)))")
CONFIGS=${CONFIGS:-1:2 2:2 2:4 4:4 8:4}
A="bench-artifacts/v3-infer --random-weights 1 --backend cuda"
: > "$OUT/time.log"
: > "$OUT/checks.txt"
step() { # ks groups batch
  local s=$(( $3 == 128 ? 8 : 16 ))
  DSV3_EXPERT_ROWS_KSPLIT=$1 DSV3_DECODE_STAGED_GROUPS=$2 timeout 90 $RUN time $A --batch $3 \
    --context 1024 --steps $s 2>&1 | tail -1 | grep -o "decode [0-9.]* ms" | grep -o "[0-9.]*"
}
for round in 1 2; do
  for c in $CONFIGS; do
    for b in $([ $round = 1 ] && echo 32) 128; do
      printf 'round %s ks %s groups %s b%-4s %s ms\n' $round ${c%:*} ${c#*:} $b \
        "$(step ${c%:*} ${c#*:} $b)" | tee -a "$OUT/time.log"
    done
  done
done
best=$(python3 - "$OUT/time.log" <<'EOF'
import sys, collections
t = collections.defaultdict(float)
for line in open(sys.argv[1]):
    f = line.split()
    if f[6] == "b128" and len(f) > 7 and f[7] != "ms":
        t[f[3] + ":" + f[5]] += float(f[7])
print(min(t, key=t.get) if t else "2:4")
EOF
)
echo "best (ks:groups): $best" | tee -a "$OUT/time.log"
for ks in 1 2 4 8; do
  for force in "" DSV3_EXPERT_MMA=0; do
    check "ks$ks compare-tiny-a-bf16${force:+-$force}" env DSV3_EXPERT_ROWS_KSPLIT=$ks $force \
      timeout 120 $RUN compare gpu-artifacts/tiny-a-bf16 --weights test/data/fixtures/tiny-a \
      --ids $IDS
  done
done
export DSV3_EXPERT_ROWS_KSPLIT=${best%:*} DSV3_DECODE_STAGED_GROUPS=${best#*:}
check "verify-tiny-a-bf16" timeout 120 $RUN verify gpu-artifacts/tiny-a-bf16 \
  --weights test/data/fixtures/tiny-a --oracle test/data/fixtures/tiny-a --backend cuda
[ -d /dev/shm/v3w ] || $RUN init gpu-artifacts/v3-width --seed 7 --out /dev/shm/v3w \
  > "$OUT/init.log" 2>&1 || status=1
check "ks${best%:*} compare-v3-width-bf16" timeout 300 $RUN compare gpu-artifacts/v3-width-bf16 \
  --weights /dev/shm/v3w --ids "$MMA"
$RUN bf16-check gpu-artifacts/v3-width-bf16 --seq 64 --context 30 > "$OUT/bf16-check.log" 2>&1 ||
  status=1
grep -E "staged|timing 128|bf16-check: |FAIL" "$OUT/bf16-check.log" | tee -a "$OUT/checks.txt"
for b in 128 32; do
  DSV3_PROFILE=1 timeout 90 $RUN time $A --batch $b --context 1024 --steps 2 \
    > "$OUT/profile-b$b.log" 2>&1
  echo "-- profile b$b (ks:groups $best)"; sed -n 2,9p "$OUT/profile-b$b.log"
done
echo
echo "== $(date -u +%F) $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
cat "$OUT/checks.txt"
cat "$OUT/time.log"
exit $status
