#!/usr/bin/env bash
# Where a training step of the bench slice goes: per site and per kernel,
# 1x4096 and 4x4096, one step each (DSV3_PROFILE). Here first:
#   build/bin/dsv3c bench/configs/v3-train-2layer.json --mode train --dtype f32 --target cuda \
#     --max-batch 4 --max-seq 4096 --quiet -o bench-artifacts/v3-train
#   run(command="bash scripts/gpu-train-profile.sh", carry=["bench-artifacts", ".deps"])
cd "$(dirname "$0")/.."
set -uo pipefail
source scripts/gpu-env.sh /tmp/train-prof
A="bench-artifacts/v3-train --random-weights 1 --backend cuda --train --compute bf16"
for b in 1 4; do
  DSV3_PROFILE=site DSV3_PROFILE_ROWS=90 timeout 200 $RUN time $A --batch $b --seq 4096 --steps 1 > $OUT/site-$b.log 2>&1
  DSV3_PROFILE=1 DSV3_PROFILE_ROWS=40 timeout 200 $RUN time $A --batch $b --seq 4096 --steps 1 > $OUT/kern-$b.log 2>&1
done
for f in $OUT/site-*.log $OUT/kern-*.log; do echo "-- $f"; sed -n 1,45p $f; tail -1 $f; done
