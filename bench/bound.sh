#!/usr/bin/env bash
# The floor of the prefill and training rows with PyTorch's library kernels
# (bench/bound.py), in one device call (no build; ~2 min):
#   run(command="bash bench/bound.sh")
# Tables to stdout and $OUT/bound-*.log, totals to $OUT/bound.jsonl.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/bound}
mkdir -p "$OUT"
status=0
run() {
  local name=$1; shift
  timeout "${BOUND_TIMEOUT:-240}" python3 bench/bound.py --json "$OUT/bound.jsonl" "$@" \
    > "$OUT/bound-$name.log" 2>&1 || { status=1; tail -5 "$OUT/bound-$name.log"; }
}
run prefill --config bench/configs/v3-infer-3layer.json --prefill 4,2048
run prefill-fp8 --config bench/configs/v3-infer-3layer.json --prefill 4,2048 --fp8
run train --config bench/configs/v3-train-2layer.json --train 4,4096
for f in prefill prefill-fp8 train; do grep -v '^  (' "$OUT/bound-$f.log"; done
exit $status
