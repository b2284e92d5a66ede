#!/usr/bin/env bash
# Batched decode on the GPU, one device call (after scripts/gpu-prepare.sh
# and bench/prepare.sh here):
#   run(command="bash scripts/gpu-decode-check.sh",
#       carry=["gpu-artifacts", "bench-artifacts", ".deps"])
# or, before the benchmark in the same call (~2 min):
#   PARTS=fp8 bash scripts/gpu-decode-check.sh; ROWS=infer bash bench/run.sh
# 1. Against the host (`compare`, every kernel on the same inputs):
#    - expert_rows_mma / expert_gated_rows_mma (the routed experts at a few
#      rows an expert on tensor cores) at the decode's row counts (default),
#      with every expert GEMM forced onto the row schedules
#      (DSV3_EXPERT_MMA=0: up to ~50 rows an expert, several passes), and
#      the CUDA-core row kernel they replace (DSV3_EXPERT_ROWS_MMA=0);
#    - the absorbed decode (mla_decode_mma, mla_absorb_v(_mma)) and the
#      few-row dense GEMMs (linear_rows_mma) at V3 widths, bf16 and fp32;
#    - verify on the four fixtures (greedy tokens, logits at 1e-4).
#    - FP8: fp8_gemm_rows_mma (the routed experts' FP8 GEMMs at a few rows
#      an expert on e4m3 tensor cores; DSV3_FP8_ROWS_MMA=0 turns it off) forced
#      onto every expert GEMM of tiny-a (DSV3_FP8_MMA=5; informational past
#      the first launch: a last-bit difference upstream flips activation
#      codes downstream), and by `fp8-gemm` against the host GEMM on the
#      same operands at V3 widths.
#    PARTS=bf16,fp8,fp8time,fewrow,time (default: all) picks the sections
#    (fp8time: FP8 decode b1/b32/b128 with and without fp8_gemm_rows_mma;
#    fewrow: DSV3_FEW_ROW_KERNELS=1 checked against the host and timed).
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
: > "$OUT/checks.txt"
PARTS=${PARTS:-bf16,fp8,fp8time,fewrow,time}
on() { case ",$PARTS," in *",$1,"*) return 0 ;; esac; return 1; }
# V3-width weights for the bf16 compares (6 GB in /dev/shm, ~1 min).
if on bf16 || on fewrow; then
  [ -d /dev/shm/v3w ] || $RUN init gpu-artifacts/v3-width --seed 7 --out /dev/shm/v3w \
    > "$OUT/init.log" 2>&1 || status=1
fi
MMA=$(python3 -c "import random; random.seed(9); print(','.join(str(random.randrange(4096)) for _ in range(10)))")
if on fp8; then
  check compare-tiny-a-fp8-rows-mma env DSV3_FP8_MMA=5 timeout 120 $RUN compare \
    gpu-artifacts/tiny-a-fp8 --weights test/data/fixtures/tiny-a --ids "$IDS"
  # Every FP8 schedule, fp8_gemm_rows_mma ("rows on tensor cores") among
  # them, against the host on the same operands, grouped over 4 experts at
  # 1-2 and ~75 rows an expert (passes of 32), K over many scale blocks.
  for shape in 6,2048,7168 300,7168,2048; do
    timeout 120 $RUN fp8-gemm gpu-artifacts/tiny-a-fp8 --backend cuda --shape $shape --seed 3 \
      > "$OUT/fp8-gemm-$shape.log" 2>&1 || status=1
    grep -E "grouped|plain" "$OUT/fp8-gemm-$shape.log" | sed "s/^ */fp8-gemm $shape /" |
      tee -a "$OUT/checks.txt"
  done
fi
on bf16 && for f in tiny-a tiny-b tiny-d tiny-e; do
  F=test/data/fixtures/$f
  check verify-$f timeout 120 $RUN verify gpu-artifacts/$f --weights $F --oracle $F --backend cuda
done
on bf16 && check verify-tiny-a-bf16 timeout 120 $RUN verify gpu-artifacts/tiny-a-bf16 \
  --weights test/data/fixtures/tiny-a --oracle test/data/fixtures/tiny-a --backend cuda
on bf16 && for force in "" DSV3_EXPERT_MMA=0 DSV3_EXPERT_ROWS_MMA=0; do
  check "compare-tiny-a-bf16${force:+-$force}" env $force timeout 120 $RUN compare \
    gpu-artifacts/tiny-a-bf16 --weights test/data/fixtures/tiny-a --ids $IDS
done
on bf16 && check compare-tiny-a-bf16-long-rows env DSV3_EXPERT_MMA=0 timeout 180 $RUN compare \
  gpu-artifacts/tiny-a-bf16-long --weights test/data/fixtures/tiny-a --ids "$LONG"
on bf16 && check compare-v3-width-bf16 timeout 300 $RUN compare gpu-artifacts/v3-width-bf16 \
  --weights /dev/shm/v3w --ids "$MMA"
on bf16 && check compare-v3-width timeout 300 $RUN compare gpu-artifacts/v3-width \
  --weights /dev/shm/v3w --ids "$MMA"
# The few-row kernels (DSV3_FEW_ROW_KERNELS=1: rms_norm_rows, bit-identical
# to rms_norm; mla_absorb_q_rows at up to 4 rows, bf16 weights): every
# launch against the host (the ragged decode steps run 2 rows a step), at
# V3 widths when the bf16 part made the weights, then decode b1 / b32 with
# and without them.
if on fewrow; then
  check compare-tiny-a-bf16-fewrow env DSV3_FEW_ROW_KERNELS=1 timeout 120 $RUN compare \
    gpu-artifacts/tiny-a-bf16 --weights test/data/fixtures/tiny-a --ids $IDS
  check verify-tiny-a-bf16-fewrow env DSV3_FEW_ROW_KERNELS=1 timeout 120 $RUN verify \
    gpu-artifacts/tiny-a-bf16 --weights test/data/fixtures/tiny-a --oracle test/data/fixtures/tiny-a \
    --backend cuda
  [ -d /dev/shm/v3w ] && check compare-v3-width-bf16-fewrow env DSV3_FEW_ROW_KERNELS=1 \
    timeout 300 $RUN compare gpu-artifacts/v3-width-bf16 --weights /dev/shm/v3w --ids "$MMA"
  for env in DSV3_FEW_ROW_KERNELS=0 DSV3_FEW_ROW_KERNELS=1; do
    for b in 1 32; do
      r=$(env $env timeout 90 $RUN time bench-artifacts/v3-infer --random-weights 1 --backend cuda \
        --batch $b --context 1024 --steps 32 2>&1 | tail -1 | grep -o "decode [0-9.]* ms.*" | head -1)
      printf '%-24s b%-4s %s\n' "$env" "$b" "$r" | tee -a "$OUT/checks.txt"
    done
  done
fi
# FP8 decode at context 1024 on the bench slice's FP8 artifact: the
# routed experts on fp8_gemm_rows_mma (default) and fp8_gemm_skinny.
if on fp8time && [ -d bench-artifacts/v3-infer-fp8 ]; then
  for env in "" DSV3_FP8_ROWS_MMA=0; do
    for b in 1 32 128; do
      steps=$(( b == 128 ? 8 : 16 ))
      r=$(env $env timeout 120 $RUN time bench-artifacts/v3-infer-fp8 --random-weights 1 \
        --backend cuda --batch $b --context 1024 --steps $steps 2>&1 | tail -1 |
        grep -o "decode [0-9.]* ms.*" | head -1)
      printf 'FP8 %-20s b%-4s %s\n' "${env:-default}" "$b" "$r" | tee -a "$OUT/checks.txt"
    done
  done
fi
on time || { cat "$OUT/checks.txt"; exit $status; }
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
finish time.log
