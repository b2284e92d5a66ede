#!/usr/bin/env bash
# docs/fp8.md's latent-cache study, on the host (no GPU): train
# bench/configs/cache-study.json on the Vim manual for STEPS steps (~2 s a
# step on one core), then run held-out text (the corpus's last bytes, past
# what training read) through the naive forward and through the decode
# entry with an f32, a bf16 and an FP8 latent cache, and print what each
# cache costs (scripts/kv-cache-study.py).
#   bash scripts/kv-cache-study.sh [WORK_DIR]   (STEPS=400 SEQS=8 LEN=256)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/tmp/kv-cache-study}
STEPS=${STEPS:-400} SEQS=${SEQS:-8} LEN=${LEN:-256}
mkdir -p "$W"
C=bench/configs/cache-study.json
if [ ! -f "$W/run/step-$(printf %06d "$STEPS")/model.safetensors" ]; then
  [ -f "$W/corpus.tokens" ] || {
    cat /usr/share/vim/vim9*/doc/*.txt > "$W/corpus.txt"
    build/bin/dsv3-run tokenize --text "$W/corpus.txt" --out "$W/corpus.tokens"
  }
  build/bin/dsv3c $C --mode train --max-batch 8 --max-seq 128 --quiet -o "$W/train"
  build/bin/dsv3-run train "$W/train" --init 1 --data "$W/corpus.tokens" --steps "$STEPS" \
    --batch 8 --seq 128 --save-dir "$W/run" --save-every 100 --lr 2e-3 --warmup 30 \
    --metrics "$W/metrics.jsonl" --quiet
fi
CKPT="$W/run/step-$(printf %06d "$STEPS")"
# Held-out ids: SEQS sequences of LEN bytes from the end of the corpus.
python3 - "$W/corpus.txt" "$SEQS" "$LEN" > "$W/ids.txt" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
n, L = int(sys.argv[2]), int(sys.argv[3])
tail = data[len(data) - n * L:]
print("/".join(",".join(str(b) for b in tail[i * L:(i + 1) * L]) for i in range(n)))
PY
IDS=$(cat "$W/ids.txt")
for s in f32 bf16 fp8; do
  build/bin/dsv3c $C --kv-cache $s --max-batch "$SEQS" --max-seq "$LEN" --quiet -o "$W/infer-$s"
  build/bin/dsv3-run forward "$W/infer-$s" --weights "$CKPT" --ids "$IDS" --through-cache \
    --out "$W/$s.st" > /dev/null
done
build/bin/dsv3-run forward "$W/infer-f32" --weights "$CKPT" --ids "$IDS" --out "$W/naive.st" > /dev/null
python3 scripts/kv-cache-study.py "$W/ids.txt" "$W/naive.st" "$W/f32.st" "$W/bf16.st" "$W/fp8.st"
