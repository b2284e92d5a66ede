#!/usr/bin/env bash
# On the GPU machine (no MLIR there): builds the runtime and dsv3-run into
# build-gpu/ (incremental), with the header-only dependencies that
# scripts/gpu-prepare.sh / bench/prepare.sh copied into .deps/. The log goes
# to $1 (default build-gpu.log); on failure its tail is printed and the
# status is non-zero. Used by every device script.
# A carried gpu-bin/dsv3-run (scripts/gpu-prebuild.sh, built here) is
# installed as build-gpu/bin/dsv3-run instead, in a fresh build-gpu/ (so a
# later call that builds there starts over rather than trusting it), when
# it was built from these runtime sources (gpu-bin/SOURCES: `gpu-build.sh
# --hash`) and runs on this machine; otherwise the build goes on as above.
cd "$(dirname "$0")/.."
if [ "${1:-}" = --hash ]; then # the sources dsv3-run is built from
  find CMakeLists.txt runtime tools/CMakeLists.txt tools/dsv3-run \
    codegen/kernels/dsv3_kernel_layout.h -type f | LC_ALL=C sort | xargs sha256sum |
    sha256sum | cut -c1-16
  exit 0
fi
LOG=${1:-build-gpu.log}
if [ -x gpu-bin/dsv3-run ]; then
  if [ "$(cat gpu-bin/SOURCES 2>/dev/null)" != "$(bash scripts/gpu-build.sh --hash)" ]; then
    echo "gpu-build: the carried gpu-bin/dsv3-run was built from other runtime sources; building" | tee "$LOG"
  elif gpu-bin/dsv3-run --help > /dev/null 2>&1; then
    rm -rf build-gpu && mkdir -p build-gpu/bin && cp gpu-bin/dsv3-run build-gpu/bin/dsv3-run
    echo "gpu-build: the carried gpu-bin/dsv3-run ($(head -1 gpu-bin/REVISION 2>/dev/null))" > "$LOG"
    exit 0
  else
    echo "gpu-build: the carried gpu-bin/dsv3-run does not run here; building" | tee "$LOG"
  fi
fi
{ cmake -G Ninja -S . -B build-gpu -DDSV3_BUILD_COMPILER=OFF -DCMAKE_BUILD_TYPE=Release \
    -DDSV3_DEPS_INCLUDE="$PWD/.deps/include" && ninja -C build-gpu dsv3-run; } >> "$LOG" 2>&1 ||
  { tail -40 "$LOG"; exit 1; }
