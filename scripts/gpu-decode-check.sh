#!/usr/bin/env bash
# Batched decode on the GPU, one device call (after scripts/gpu-prepare.sh
# and bench/prepare.sh here):
#   run(command="bash scripts/gpu-decode-check.sh",
#       carry=["gpu-artifacts", "bench-artifacts", ".deps"])
# 1. Against the host (`compare`, every kernel on the same inputs):
#    - expert_rows_mma / expert_gated_rows_mma (the routed experts at a few
#      rows an expert on tensor cores) at the decode's row counts (default),
#      with every expert GEMM forced onto the row schedules
#      (DSV3_EXPERT_MMA=0: up to ~50 rows an expert, several passes), and
#      the CUDA-core row kernel they replace (DSV3_EXPERT_ROWS_MMA=0);
#    - the absorbed decode (mla_decode_mma, mla_absorb_v(_mma)) and the
#      few-row dense GEMMs (linear_rows_mma) at V3 widths, bf16 and fp32;
#    - verify on the four fixtures (greedy tokens, logits at 1e-4).
# 2. Decode at context 1024 on the 3-layer bench slice, batch 1 / 32 / 128:
#    the new default, the previous expert schedules (DSV3_EXPERT_ROWS=2:
#    128-row TMA tiles from 2 rows an expert; DSV3_EXPERT_ROWS_MMA=0), and a
#    per-kernel profile of batch 128 and 32.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-decode
status=0
IDS=1,5,9,200,31,77,4,300/8,2,100,6,71,250,29,11
LONG=$(python3 -c "import random; random.seed(4); print('/'.join(','.join(str(random.randrange(512)) for _ in range(100)) for _ in range(2)))")
check() { # name, then the command
  local name=$1; shift
  local r
  r=$("$@" 2>&1 | tee "$OUT/$name.log" | tail -1)
  printf '%-34s %s\n' "$name" "$r" | tee -a "$OUT/checks.txt"
  case "$r" in *" passed, 0 failed"*) ;; *) status=1 ;; esac
}
: > "$OUT/checks.txt"
for f in tiny-a tiny-b tiny-d tiny-e; do
  F=test/data/fixtures/$f
  check verify-$f timeout 120 $RUN verify gpu-artifacts/$f --weights $F --oracle $F --backend cuda
done
check verify-tiny-a-bf16 timeout 120 $RUN verify gpu-artifacts/tiny-a-bf16 \
  --weights test/data/fixtures/tiny-a --oracle test/data/fixtures/tiny-a --backend cuda
for force in "" DSV3_EXPERT_MMA=0 DSV3_EXPERT_ROWS_MMA=0; do
  check "compare-tiny-a-bf16${force:+-$force}" env $force timeout 120 $RUN compare \
    gpu-artifacts/tiny-a-bf16 --weights test/data/fixtures/tiny-a --ids $IDS
done
check compare-tiny-a-bf16-long-rows env DSV3_EXPERT_MMA=0 timeout 180 $RUN compare \
  gpu-artifacts/tiny-a-bf16-long --weights test/data/fixtures/tiny-a --ids "$LONG"
$RUN init gpu-artifacts/v3-width --seed 7 --out /dev/shm/v3w > "$OUT/init.log" 2>&1 || status=1
MMA=$(python3 -c "import random; random.seed(9); print(','.join(str(random.randrange(4096)) for _ in range(10)))")
check compare-v3-width-bf16 timeout 300 $RUN compare gpu-artifacts/v3-width-bf16 \
  --weights /dev/shm/v3w --ids "$MMA"
check compare-v3-width timeout 300 $RUN compare gpu-artifacts/v3-width \
  --weights /dev/shm/v3w --ids "$MMA"
A="bench-artifacts/v3-infer --random-weights 1 --backend cuda"
: > "$OUT/time.log"
# ALT=0 (with bench/run.sh in the same call): the default schedules only.
for env in "" $([ "${ALT:-1}" = 1 ] && echo DSV3_EXPERT_ROWS=2 DSV3_EXPERT_ROWS_MMA=0); do
  for b in 1 32 128; do
    [ -n "$env" ] && [ $b = 1 ] && continue
    steps=$(( b == 128 ? 8 : 16 ))
    r=$(env $env timeout 90 build-gpu/bin/dsv3-run time $A --batch $b --context 1024 \
      --steps $steps 2>&1 | tail -1 | grep -o "decode [0-9.]* ms.*" | head -1)
    printf '%-24s b%-4s %s\n' "${env:-default}" "$b" "$r" | tee -a "$OUT/time.log"
  done
done
for b in 128 $([ "${ALT:-1}" = 1 ] && echo 32) 1; do
  DSV3_PROFILE=1 timeout 90 build-gpu/bin/dsv3-run time $A --batch $b --context 1024 --steps 2 \
    > "$OUT/profile-b$b.log" 2>&1
  echo "-- profile b$b"; sed -n 2,16p "$OUT/profile-b$b.log"
done
echo
echo "== $(date -u +%F) $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
cat "$OUT/checks.txt"
cat "$OUT/time.log"
exit $status
