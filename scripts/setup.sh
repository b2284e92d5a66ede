#!/usr/bin/env bash
# Installs what dsv3 needs to build and test on Debian 12 (bookworm).
# Idempotent: when every package is present it only runs dpkg-query (~0.1 s).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache python3
  llvm-22-dev libmlir-22-dev mlir-22-tools llvm-22-tools  # MLIR/LLVM 22, lit, FileCheck
  libfmt-dev nlohmann-json3-dev                           # runtime-safe deps
  clang                                                   # libFuzzer targets (scripts/fuzz.sh)
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
