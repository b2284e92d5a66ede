#!/usr/bin/env bash
# Runs on the GPU machine after scripts/gpu-prepare.sh ran here (a second
# device call after scripts/gpu-check.sh: together they exceed one call's
# 10 minutes). Times decode and prefill on the 2-layer DeepSeek-V3-width
# slice, then shows where the time goes per kernel instance (CUDA events
# around every launch: DSV3_PROFILE=1, graphs off; nsys does not run on the
# machines we test on, ncu --clock-control none did in the ninth session:
# docs/benchmarks.md). Prints a table last; logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-time
W=/dev/shm/v3w
[ -d $W ] || $RUN init gpu-artifacts/v3-width --seed 7 --out $W > "$OUT/init.log" 2>&1
: > "$OUT/time.log"
t() { "$@" 2>&1 | tail -1 | tee -a "$OUT/time.log"; }
# The first timings' workloads (short prompts), fp32 and bf16 weights.
t $RUN time gpu-artifacts/v3-width --weights $W --backend cuda --batch 1 --seq 32 --steps 16
t $RUN time gpu-artifacts/v3-width --weights $W --backend cuda --batch 2 --seq 64 --steps 8
t $RUN time gpu-artifacts/v3-width-bf16 --weights $W --backend cuda --batch 1 --seq 32 --steps 16
# Decode at context 1024 (the benchmark's workload, on this 2-layer slice):
# batch 1 with and without CUDA graphs, 32 and 128; a 1x1024 prefill
# through the decode entry.
L=gpu-artifacts/v3-long-bf16
t $RUN time $L --weights $W --backend cuda --batch 1 --context 1024 --steps 32
DSV3_CUDA_GRAPHS=0 $RUN time $L --weights $W --backend cuda --batch 1 --context 1024 --steps 32 2>&1 | tail -1 | sed 's/$/ [graphs off]/' | tee -a "$OUT/time.log"
t $RUN time $L --weights $W --backend cuda --batch 32 --context 1024 --steps 16
t $RUN time $L --weights $W --backend cuda --batch 128 --context 1024 --steps 8
t $RUN time $L --weights $W --backend cuda --batch 1 --seq 1024 --steps 4
for args in "--batch 1 --context 1024 --steps 16" "--batch 32 --context 1024 --steps 8" \
            "--batch 1 --seq 1024 --steps 1"; do
  name=$(echo "$args" | tr -d '-' | tr ' ' '_')
  DSV3_PROFILE=1 $RUN time $L --weights $W --backend cuda $args > "$OUT/profile-$name.log" 2>&1
done
for f in "$OUT"/profile-*.log; do echo "== $(basename "$f" .log)"; sed -n 2,12p "$f"; done
echo
echo "== timings ($(date -u +%F), $(nvidia-smi --query-gpu=name --format=csv,noheader))"
sed 's/^time gpu-artifacts\///; s/ on cuda: [^:]*)://' "$OUT/time.log"
