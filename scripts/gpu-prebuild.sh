#!/usr/bin/env bash
# Here (no GPU): builds the CUDA runtime's dsv3-run as the GPU machine would
# (no compiler, fmt header-only from .deps/include; it links only the C++
# runtime and NVRTC) into gpu-bin/, which a device call carries so that
# scripts/gpu-build.sh installs it instead of building there (a cold
# machine's build took ~3 of a call's minutes):
#   bash scripts/gpu-prepare.sh   # or bench/prepare.sh: fills .deps/include
#   bash scripts/gpu-prebuild.sh
#   run(command="bash scripts/gpu-check.sh", carry=["gpu-bin", ...])
# A binary of other runtime sources than the call's is not used (gpu-build.sh
# compares the sources' hash and builds instead).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .deps/include/fmt ] || { echo "gpu-prebuild: .deps/include/fmt is missing (run scripts/gpu-prepare.sh)"; exit 1; }
launcher=()
command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -G Ninja -S . -B build-gpu-prebuilt -DDSV3_BUILD_COMPILER=OFF -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_DISABLE_FIND_PACKAGE_fmt=TRUE -DDSV3_DEPS_INCLUDE="$PWD/.deps/include" "${launcher[@]}" > /dev/null
ninja -C build-gpu-prebuilt dsv3-run
mkdir -p gpu-bin
cp build-gpu-prebuilt/bin/dsv3-run gpu-bin/dsv3-run
bash scripts/gpu-build.sh --hash > gpu-bin/SOURCES
git rev-parse HEAD > gpu-bin/REVISION
echo "gpu-bin/dsv3-run built from $(head -1 gpu-bin/REVISION), runtime sources $(cat gpu-bin/SOURCES)"
