#!/usr/bin/env bash
# Runs on the GPU machine after scripts/gpu-prepare.sh ran here: where the
# time of a decode step and of a prefill goes, per kernel instance (CUDA
# events around every launch: DSV3_PROFILE=1, graphs off), on the 2-layer
# DeepSeek-V3-width slice in bf16. nsys/ncu are not usable on the machines
# we test on (see docs/gpu-validation.md). Logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-profile}
mkdir -p "$OUT"
if [ ! -x build-gpu/bin/dsv3-run ]; then
  { cmake -G Ninja -S . -B build-gpu -DDSV3_BUILD_COMPILER=OFF -DCMAKE_BUILD_TYPE=Release \
      -DDSV3_DEPS_INCLUDE="$PWD/.deps/include" && ninja -C build-gpu dsv3-run; } \
    > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
fi
RUN=build-gpu/bin/dsv3-run
[ -d /dev/shm/v3w ] || $RUN init gpu-artifacts/v3-width --seed 7 --out /dev/shm/v3w > "$OUT/init.log" 2>&1
L=gpu-artifacts/v3-long-bf16
for args in "--batch 1 --context 1024 --steps 16" "--batch 32 --context 1024 --steps 8" \
            "--batch 128 --context 1024 --steps 4" "--batch 1 --seq 1024 --steps 1"; do
  name=$(echo "$args" | tr -d '-' | tr ' ' '_')
  DSV3_PROFILE=1 $RUN time $L --weights /dev/shm/v3w --backend cuda $args > "$OUT/profile-$name.log" 2>&1
  echo "== $args"; head -14 "$OUT/profile-$name.log"
done
