#!/usr/bin/env bash
# The GPU's measured memory ceilings (bench/hbm_ceiling.cu), one device
# call or part of one:
#   run(command="bash bench/hbm-ceiling.sh")
# Builds the program with nvcc and prints its table; ~30 s on an H200.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/hbm-ceiling}
mkdir -p "$OUT"
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
"$NVCC" -O3 -arch=sm_90a -std=c++17 -o "$OUT/hbm_ceiling" bench/hbm_ceiling.cu
echo "== $(date -u +%F) $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
"$OUT/hbm_ceiling" | tee "$OUT/hbm-ceiling.txt"
