#!/usr/bin/env bash
# The main job: set up, build, compile the tiny default model, initialise
# random weights, generate tokens and run training steps, on the GPU when
# there is one (an NVIDIA driver), on the host backend otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh

OUT=build/tiny
rm -rf "$OUT"
echo "== dsv3c tiny: parameter counts and memory plan"
build/bin/dsv3c tiny --stats
echo
echo "== dsv3c tiny -o $OUT (IR after every stage in $OUT/ir)"
build/bin/dsv3c tiny --dump-ir-dir "$OUT/ir" -o "$OUT/artifact"
ls -1 "$OUT/ir" "$OUT/artifact"
echo
echo "== one MoE layer of the compiled program ($OUT/artifact/model.mlir, excerpt)"
grep -m 12 -E 'dsv3k.launch "(moe_|expert_|swiglu|latent_attention")' "$OUT/artifact/model.mlir" | cut -c1-160
# The GPU when there is one (an NVIDIA driver), the host backend otherwise.
BACKEND=host
if command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi > /dev/null 2>&1; then
  BACKEND=cuda
fi
echo
echo "== random weights and generation on the $BACKEND backend"
build/bin/dsv3c tiny --target cuda -o "$OUT/artifact-cuda" 2> /dev/null || BACKEND=host
ART="$OUT/artifact"
[ "$BACKEND" = cuda ] && ART="$OUT/artifact-cuda"
build/bin/dsv3-run init "$ART" --seed 0 --out "$OUT/weights"
build/bin/dsv3-run generate "$ART" --weights "$OUT/weights" --backend "$BACKEND" \
  --prompt-ids 1,2,3,4,5,6,7,8/9,10,11 --max-new 16
build/bin/dsv3-run generate "$ART" --weights "$OUT/weights" --backend "$BACKEND" \
  --prompt-ids 1,2,3,4,5,6,7,8 --max-new 16 --temperature 0.8 --top-p 0.95 --seed 1
echo "-- text in, text out (a byte-level BPE tokenizer.json; random weights: random text)"
build/bin/dsv3-run generate "$ART" --weights "$OUT/weights" --backend "$BACKEND" \
  --tokenizer test/Tokenizer/Inputs/tiny --prompt "DeepSeek-V3 is" --max-new 12
echo
echo "== training steps of the tiny model on a text Debian ships (bytes as tokens), $BACKEND backend"
TARGET=()
[ "$BACKEND" = cuda ] && TARGET=(--target cuda)
build/bin/dsv3c tiny --mode train "${TARGET[@]}" -o "$OUT/train"
build/bin/dsv3-run tokenize --text /usr/share/common-licenses/GPL-3 --out "$OUT/gpl.tokens"
build/bin/dsv3-run train "$OUT/train" --init 0 --data "$OUT/gpl.tokens" --steps 20 \
  --batch 8 --seq 64 --lr 3e-3 --warmup 5 --save-dir "$OUT/ckpt" --metrics "$OUT/metrics.jsonl" \
  --backend "$BACKEND"
echo
echo "== conformance of a fixture model (host fp32 vs the float64 HF oracle)"
F=test/data/fixtures/tiny-a
build/bin/dsv3c "$F" --mode train -o "$OUT/tiny-a"
build/bin/dsv3-run verify "$OUT/tiny-a" --weights "$F" --oracle "$F"
