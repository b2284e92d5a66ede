#!/usr/bin/env bash
# All tests: set up, build, print the host conformance tables of the four
# oracle fixtures, run the lit suite under ASan + UBSan and the fuzz targets
# (bounded), then the lit suite; the last line is
# "N passed, N failed, N skipped".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh

echo "== conformance (host fp32) against the float64 Hugging Face fixtures"
for f in tiny-a tiny-b tiny-d tiny-e; do
  F=test/data/fixtures/$f
  rm -rf "build/conformance/$f"
  build/bin/dsv3c "$F" --mode train -o "build/conformance/$f"
  build/bin/dsv3-run verify "build/conformance/$f" --weights "$F" --oracle "$F" || true
done
echo

status=0
echo "== sanitizers: the lit suite built with ASan + UBSan (build-asan/)"
bash scripts/sanitize.sh || status=1
echo
echo "== fuzzing: each parser's libFuzzer target, a fixed number of runs from seed 1 (build-fuzz/)"
bash scripts/fuzz.sh ci || status=1
echo

RESULTS=build/test-results.json
rm -f "$RESULTS"
/usr/lib/llvm-22/bin/lit -sv --output "$RESULTS" build/test || status=$?
python3 scripts/summarize-lit.py "$RESULTS" || status=1
exit $status
