#!/usr/bin/env bash
# Copies the ODS-generated dialect and pass references into docs/generated/.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --build build --target dsv3-docs
mkdir -p docs/generated
cp build/docs/Dsv3/Dsv3Dialect.md build/docs/Dsv3/Dsv3KDialect.md \
   build/docs/Dsv3/Dsv3Passes.md docs/generated/
echo "updated docs/generated/"
