#!/usr/bin/env bash
# Is bf16 training on the GPU reproducible run to run? (Not yet run.) On the
# H200 (2026-12-02, docs/gpu-validation.md) two 300-step runs of the real
# run's model from the same initialisation and data had the same first
# loss and gradient norm, the same second loss, and a different second
# gradient norm (21.50404 against 21.50440): the backward of step 2 on.
# Suspect: cuBLASLt's algorithm for each shape is the fastest of its
# heuristic's picks, timed when first met (CublasLt.cpp, fastestAlgo), so
# two runs may sum a GEMM in different orders; DSV3_CUBLAS_TUNE=0 takes the
# heuristic's first pick. The other suspect is the CUDA graph (the first
# step runs launch by launch, the later ones replay): DSV3_CUDA_GRAPHS=0.
# This runs 6 steps twice each way and compares the losses, gradient norms
# and checkpoints bit for bit. Here first:
#   build/bin/dsv3c bench/configs/train-run-400m.json --mode train --target cuda \
#     --max-batch 8 --max-seq 1024 --quiet -o bench-artifacts/train-run
#   cat /usr/share/vim/vim9*/doc/*.txt > bench-artifacts/corpus.txt
# then run(command="bash scripts/gpu-repro-check.sh", carry=["bench-artifacts", ".deps"]).
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-repro
status=0
$RUN tokenize --text bench-artifacts/corpus.txt --out /dev/shm/corpus.tokens > /dev/null || exit 1
# Each way: DSV3_CUBLAS_TUNE and DSV3_CUDA_GRAPHS.
for way in 1:1 0:1 1:0; do
  IFS=: read -r tune graphs <<< "$way"
  for tag in a b; do
    rm -rf /dev/shm/repro-$way-$tag
    DSV3_CUBLAS_TUNE=$tune DSV3_CUDA_GRAPHS=$graphs timeout 150 $RUN train \
      bench-artifacts/train-run --init 1 --data /dev/shm/corpus.tokens --steps 6 --batch 8 \
      --seq 1024 --lr 1e-3 --warmup 100 --backend cuda --compute bf16 \
      --save-dir /dev/shm/repro-$way-$tag --metrics "$OUT/curve-$tune-$graphs-$tag.jsonl" \
      > "$OUT/train-$tune-$graphs-$tag.log" 2>&1 || status=1
  done
  python3 - "$OUT/curve-$tune-$graphs-a.jsonl" "$OUT/curve-$tune-$graphs-b.jsonl" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
same = [x["loss"] == y["loss"] and x["grad_norm"] == y["grad_norm"] for x, y in zip(a, b)]
print("  steps with equal loss and gradient norm: " +
      " ".join("%d:%s" % (i + 1, "=" if s else "x") for i, s in enumerate(same)))
PY
  if diff -rq /dev/shm/repro-$way-a /dev/shm/repro-$way-b > /dev/null; then
    echo "DSV3_CUBLAS_TUNE=$tune DSV3_CUDA_GRAPHS=$graphs: checkpoints after 6 steps bitwise equal"
  else
    echo "DSV3_CUBLAS_TUNE=$tune DSV3_CUDA_GRAPHS=$graphs: checkpoints after 6 steps differ"
  fi
done
exit $status
