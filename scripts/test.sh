#!/usr/bin/env bash
# All tests: set up, build, run the lit suite; the last line is
# "N passed, N failed[, N skipped]".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh

RESULTS=build/test-results.json
rm -f "$RESULTS"
status=0
/usr/lib/llvm-22/bin/lit -sv --output "$RESULTS" build/test || status=$?
python3 scripts/summarize-lit.py "$RESULTS" || status=1
exit $status
