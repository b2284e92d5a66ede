#!/usr/bin/env bash
# Configures (once) and builds dsv3 into ./build (Release with assertions).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${DSV3_BUILD_DIR:-build}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -G Ninja -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release
fi
# Two cores on the CI machine; ninja's default (cores + 2) is fine.
cmake --build "$BUILD_DIR"
