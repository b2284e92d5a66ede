#!/usr/bin/env bash
# docs/training.md's real run, in one device call (after bench/prepare.sh
# here: it compiles bench-artifacts/train-run and copies the corpus):
#   run(command="bash scripts/train-run.sh", carry=["bench-artifacts", ".deps"])
# A ~0.45B-parameter DeepSeek-V3-shaped model (bench/configs/train-run-400m.json)
# trained on the GPU for BUDGET seconds on the Vim manual (9.5 MB of English,
# byte-level tokens): a calibration run sets the step count, the run is
# killed at ~55% of its time and resumed from its last checkpoint. The
# metrics come back in $OUT (plots: dsv3-run plot, here).
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/train-run
A=bench-artifacts/train-run
BUDGET=${BUDGET:-240}
COMPUTE=${COMPUTE:-bf16} # dsv3-run train --compute: bf16 over fp32 master weights, or fp32
B=8 S=1024
$RUN tokenize --text bench-artifacts/corpus.txt --out /dev/shm/corpus.tokens | tee "$OUT/run.log"
T0=$(date +%s)
$RUN train $A --init 1 --data /dev/shm/corpus.tokens --steps 12 --batch $B --seq $S \
  --lr 1e-3 --warmup 4 --save-dir /dev/shm/cal --backend cuda --compute $COMPUTE --quiet \
  --metrics "$OUT/calibration.jsonl" > "$OUT/calibration.log" 2>&1 || { tail "$OUT/calibration.log"; exit 1; }
TOKS=$(python3 -c "import json,statistics; r=[json.loads(l) for l in open('$OUT/calibration.jsonl')][4:]; print(int(statistics.median(x['tokens_per_s'] for x in r)))")
STEPS=$(( BUDGET * TOKS / (B * S) ))
EVERY=$(( STEPS / 4 ))
echo "calibration: $TOKS tokens/s -> $STEPS steps of $B x $S in ${BUDGET} s, a checkpoint every $EVERY ($(( $(date +%s) - T0 )) s)" | tee -a "$OUT/run.log"
COMMON="--data /dev/shm/corpus.tokens --steps $STEPS --batch $B --seq $S --lr 1e-3 --warmup 100 --save-dir /dev/shm/run --save-every $EVERY --metrics $OUT/metrics.jsonl --backend cuda --compute $COMPUTE"
cp -r /dev/shm/cal/init /dev/shm/init
T1=$(date +%s)
timeout --signal=KILL $(( BUDGET * 55 / 100 )) $RUN train $A --weights /dev/shm/init $COMMON > "$OUT/part1.log" 2>&1
echo "part 1 killed after $(( $(date +%s) - T1 )) s at step $(tail -1 "$OUT/metrics.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["step"])')" | tee -a "$OUT/run.log"
LAST=$(ls -d /dev/shm/run/step-* | sort | tail -1)
echo "resuming from $LAST" | tee -a "$OUT/run.log"
$RUN train $A --resume "$LAST" $COMMON > "$OUT/part2.log" 2>&1 || { tail "$OUT/part2.log"; exit 1; }
echo "done in $(( $(date +%s) - T1 )) s of training" | tee -a "$OUT/run.log"
tail -3 "$OUT/part2.log" | tee -a "$OUT/run.log"
nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tee -a "$OUT/run.log"
