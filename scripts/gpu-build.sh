#!/usr/bin/env bash
# On the GPU machine (no MLIR there): builds the runtime and dsv3-run into
# build-gpu/ (incremental), with the header-only dependencies that
# scripts/gpu-prepare.sh / bench/prepare.sh copied into .deps/. The log goes
# to $1 (default build-gpu.log); on failure its tail is printed and the
# status is non-zero. Used by every device script.
cd "$(dirname "$0")/.."
LOG=${1:-build-gpu.log}
{ cmake -G Ninja -S . -B build-gpu -DDSV3_BUILD_COMPILER=OFF -DCMAKE_BUILD_TYPE=Release \
    -DDSV3_DEPS_INCLUDE="$PWD/.deps/include" && ninja -C build-gpu dsv3-run; } > "$LOG" 2>&1 ||
  { tail -40 "$LOG"; exit 1; }
