#!/usr/bin/env bash
# Run here (where MLIR is): compiles the artifacts the GPU check needs with
# --target cuda into gpu-artifacts/ and copies the header-only dependencies
# into .deps/, both ignored by git and carried to the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf gpu-artifacts && mkdir -p gpu-artifacts .deps/include
for f in tiny-a tiny-b tiny-d tiny-e; do
  build/bin/dsv3c test/data/fixtures/$f --target cuda -o gpu-artifacts/$f
done
build/bin/dsv3c test/data/configs/v3-width-slice.json --target cuda --max-batch 2 \
  --max-seq 64 -o gpu-artifacts/v3-width
build/bin/dsv3c test/data/configs/v3-width-slice.json --target cuda --dtype bf16 \
  --max-batch 2 --max-seq 64 -o gpu-artifacts/v3-width-bf16
build/bin/dsv3c test/data/fixtures/tiny-a --target cuda --dtype bf16 -o gpu-artifacts/tiny-a-bf16
# Long sequences of a tiny model (the host compares them quickly): the
# tensor-core prefill over several query and key tiles.
build/bin/dsv3c test/data/fixtures/tiny-a --target cuda --dtype bf16 --max-batch 2 \
  --max-seq 256 -o gpu-artifacts/tiny-a-bf16-long
# Decode timing at context 1024 for batches up to 128 (the plan's arena is
# sized for 128 x 1056 tokens: ~42 GB of fp32 activations on the GPU).
build/bin/dsv3c test/data/configs/v3-width-slice.json --target cuda --dtype bf16 \
  --max-batch 128 --max-seq 1056 -o gpu-artifacts/v3-long-bf16
# Training artifacts (scripts/gpu-train-check.sh): the fixtures and a
# DeepSeek-V3-shaped model the host trains quickly.
for f in tiny-a tiny-b tiny-d tiny-e; do
  build/bin/dsv3c test/data/fixtures/$f --mode train --target cuda -o gpu-artifacts/train-$f
done
build/bin/dsv3c test/data/configs/v3-train-check.json --mode train --target cuda \
  --max-batch 2 --max-seq 48 -o gpu-artifacts/train-v3-check
# The NCCL path (scripts/gpu-parallel-check.sh): world size 1 and 2, and
# an expert placement with redundant copies.
for n in 1 2; do
  build/bin/dsv3c test/data/fixtures/tiny-a --ep $n --target cuda -o gpu-artifacts/ep$n-tiny-a
  build/bin/dsv3c test/data/fixtures/tiny-a --ep $n --mode train --target cuda \
    -o gpu-artifacts/ep$n-train-tiny-a
done
build/bin/dsv3c test/data/fixtures/tiny-a --ep 2 --target cuda \
  --ep-placement test/Runtime/Inputs/placement-redundant.json -o gpu-artifacts/ep2-placed-tiny-a
# FP8 (scripts/gpu-fp8-check.sh)
build/bin/dsv3c test/data/fixtures/tiny-a --target cuda --quantize fp8 -o gpu-artifacts/tiny-a-fp8
build/bin/dsv3c test/data/configs/v3-width-slice.json --target cuda --dtype bf16 --quantize fp8 \
  --max-batch 2 --max-seq 64 -o gpu-artifacts/v3-width-fp8
cp -r /usr/include/fmt /usr/include/nlohmann .deps/include/
du -sh gpu-artifacts .deps
