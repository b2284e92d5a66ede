#!/usr/bin/env bash
# The whole lit suite on an ASan + UBSan build (build-asan/, a separate
# build directory). LLVM/MLIR's libraries are not instrumented: their inline
# allocator code poisons memory that their compiled code never unpoisons,
# so user poisoning is off; leaks are not checked (MLIR's globals).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f build-asan/build.ninja ]; then
  cmake -G Ninja -S . -B build-asan -DCMAKE_BUILD_TYPE=Release -DDSV3_SANITIZE=ON > /dev/null
fi
cmake --build build-asan
export ASAN_OPTIONS=detect_leaks=0:allow_user_poisoning=0:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1
/usr/lib/llvm-22/bin/lit -s build-asan/test
