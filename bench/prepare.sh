#!/usr/bin/env bash
# Run here (where MLIR is), before bench/run.sh on the GPU machine: compiles
# the benchmark slice with --target cuda into bench-artifacts/ and copies the
# runtime's header-only dependencies into .deps/ (both ignored by git, both
# carried to the GPU machine).
#
# One artifact serves every inference row: bf16 weights, decode caches for
# up to 128 sequences of 2048 tokens, and a budget of 8192 tokens a call
# (prefill 4 x 2048; the activations are planned for 8192 rows, not
# 128 x 2048).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf bench-artifacts && mkdir -p bench-artifacts .deps/include
build/bin/dsv3c bench/configs/v3-infer-3layer.json --target cuda --dtype bf16 \
  --max-batch 128 --max-seq 2048 --max-tokens 8192 --quiet -o bench-artifacts/v3-infer
# Expert parallelism over 2 GPUs (issue 12's first step; bench/ep-run.sh):
# the same slice with its 256 experts split over 2 ranks, the received rows
# planned for twice a rank's own.
build/bin/dsv3c bench/configs/v3-infer-3layer.json --target cuda --dtype bf16 --quantize fp8 \
  --max-batch 128 --max-seq 2048 --max-tokens 8192 --quiet -o bench-artifacts/v3-infer-fp8
build/bin/dsv3c bench/configs/v3-infer-3layer.json --target cuda --dtype bf16 \
  --max-batch 128 --max-seq 2048 --max-tokens 8192 --ep 2 --ep-capacity 2 --quiet \
  -o bench-artifacts/v3-infer-ep2
# The training rows (fwd+bwd of 1 x 4096 and 4 x 4096 tokens on the 2-layer
# slice, 64 experts): fp32 weights and AdamW state (GPU training keeps fp32
# master weights; the GEMMs run on tensor cores at fp32 accuracy).
build/bin/dsv3c bench/configs/v3-train-2layer.json --mode train --dtype f32 --target cuda \
  --max-batch 4 --max-seq 4096 --quiet -o bench-artifacts/v3-train
# docs/training.md's real run (scripts/train-run.sh): the ~0.45B model and
# its corpus, the Vim manual (9.5 MB of English; byte-level tokens).
build/bin/dsv3c bench/configs/train-run-400m.json --mode train --target cuda \
  --max-batch 8 --max-seq 1024 --quiet -o bench-artifacts/train-run
cat /usr/share/vim/vim9*/doc/*.txt > bench-artifacts/corpus.txt
cp -r /usr/include/fmt /usr/include/nlohmann .deps/include/
du -sh bench-artifacts .deps
