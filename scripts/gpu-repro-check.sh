#!/usr/bin/env bash
# Is bf16 training on the GPU reproducible run to run? (Not yet run.) On the
# H200 (2026-12-02, docs/gpu-validation.md) two 300-step runs of the real
# run's model from the same initialisation and data had the same first
# loss and gradient norm, the same second loss, and a different second
# gradient norm (21.50404 against 21.50440): the backward of step 2 on.
# Suspect: cuBLASLt's algorithm for each shape is the fastest of its
# heuristic's picks, timed when first met (CublasLt.cpp, fastestAlgo), so
# two runs may sum a GEMM in different orders; DSV3_CUBLAS_TUNE=0 takes the
# heuristic's first pick. This runs 6 steps twice each way and compares the
# losses, gradient norms and checkpoints bit for bit. Here first:
#   build/bin/dsv3c bench/configs/train-run-400m.json --mode train --target cuda \
#     --max-batch 8 --max-seq 1024 --quiet -o bench-artifacts/train-run
#   cat /usr/share/vim/vim9*/doc/*.txt > bench-artifacts/corpus.txt
# then run(command="bash scripts/gpu-repro-check.sh", carry=["bench-artifacts", ".deps"]).
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-repro
status=0
$RUN tokenize --text bench-artifacts/corpus.txt --out /dev/shm/corpus.tokens > /dev/null || exit 1
for run in 1:a 1:b 0:a 0:b; do
  IFS=: read -r tune tag <<< "$run"
  rm -rf /dev/shm/repro-$tune-$tag
  DSV3_CUBLAS_TUNE=$tune timeout 150 $RUN train bench-artifacts/train-run --init 1 \
    --data /dev/shm/corpus.tokens --steps 6 --batch 8 --seq 1024 --lr 1e-3 --warmup 100 \
    --backend cuda --compute bf16 --save-dir /dev/shm/repro-$tune-$tag \
    --metrics "$OUT/curve-$tune-$tag.jsonl" > "$OUT/train-$tune-$tag.log" 2>&1 || status=1
done
for tune in 1 0; do
  python3 - "$OUT/curve-$tune-a.jsonl" "$OUT/curve-$tune-b.jsonl" "$tune" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
same = [x["loss"] == y["loss"] and x["grad_norm"] == y["grad_norm"] for x, y in zip(a, b)]
print("DSV3_CUBLAS_TUNE=%s: steps with equal loss and gradient norm: %s" % (
    sys.argv[3], " ".join("%d:%s" % (i + 1, "=" if s else "x") for i, s in enumerate(same))))
PY
  if diff -rq /dev/shm/repro-$tune-a /dev/shm/repro-$tune-b > /dev/null; then
    echo "DSV3_CUBLAS_TUNE=$tune: checkpoints after 6 steps bitwise equal"
  else
    echo "DSV3_CUBLAS_TUNE=$tune: checkpoints after 6 steps differ"
  fi
done
exit $status
