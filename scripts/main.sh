#!/usr/bin/env bash
# The main job: set up, build, and compile the tiny default model, printing
# its parameter counts, the pipeline's stages and the final IR.
# (Later issues extend this same command to generation and a training step.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh

OUT=build/tiny
rm -rf "$OUT"
echo "== dsv3c tiny: parameter counts"
build/bin/dsv3c tiny --stats
echo
echo "== dsv3c tiny --mode infer: IR after every stage in $OUT/ir"
build/bin/dsv3c tiny --mode infer --dump-ir-dir "$OUT/ir" -o "$OUT"
ls -1 "$OUT/ir"
echo
echo "== final IR ($OUT/model.mlir)"
cat "$OUT/model.mlir"
echo
echo "== dsv3c tiny --mode train"
build/bin/dsv3c tiny --mode train -o "$OUT/train"
echo "wrote $OUT/train/model.mlir ($(wc -l < "$OUT/train/model.mlir") lines)"
