#!/usr/bin/env bash
# The benchmark, in one device call (after bench/prepare.sh ran here):
#   run(command="bash bench/run.sh", carry=["bench-artifacts", ".deps"])
# Builds the runtime, times dsv3 on the 3-layer DeepSeek-V3-width slice
# (bf16 random weights made on the GPU), shows where dsv3's time goes
# (DSV3_PROFILE=1: CUDA events around every launch), then times Hugging Face
# transformers' DeepseekV3 on the same config and GPU (eager, grouped_mm,
# torch.compile) and prints one table last. Logs and results.jsonl go to $OUT.
# ROWS=infer|train|all picks the rows; DEADLINE=S (default 560, training
# 540) is when, in seconds from the start, the PyTorch rows must be done.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/bench
T0=$(date +%s)
CFG=bench/configs/v3-infer-3layer.json
A=bench-artifacts/v3-infer
R=$OUT/results.jsonl
: > "$R"
RUN="build-gpu/bin/dsv3-run time $A --random-weights 1 --backend cuda"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
TCFG=bench/configs/v3-train-2layer.json
# ROWS=infer | train | all (default): the inference rows, the training rows.
ROWS=${ROWS:-all}
d() {
  local name=$1; shift
  $RUN "$@" > "$OUT/dsv3-$name.log" 2>&1
  tail -1 "$OUT/dsv3-$name.log"
  python3 bench/report.py parse-dsv3 "$OUT/dsv3-$name.log" >> "$R"
}
if [ "$ROWS" != infer ]; then
  echo "== dsv3 training ($(( $(date +%s) - T0 )) s)"
  # bf16 compute over fp32 master weights and AdamW state (issue 7).
  RUN="build-gpu/bin/dsv3-run time bench-artifacts/v3-train --random-weights 1 --backend cuda --train --compute bf16"
  d train-1x4096 --batch 1 --seq 4096 --steps 2
  d train-4x4096 --batch 4 --seq 4096 --steps 2
  DSV3_PROFILE=1 $RUN --batch 1 --seq 4096 --steps 1 > "$OUT/profile-train-1x4096.log" 2>&1
  echo "-- train 1x4096"; sed -n 2,12p "$OUT/profile-train-1x4096.log"
  echo "== PyTorch training ($(( $(date +%s) - T0 )) s)"
  python3 bench/torch_bench.py --config $TCFG --modes eager,compile --decode-batches "" \
    --prefill "" --train 1x4096,4x4096 --out "$R" --deadline $(( ${DEADLINE:-540} - ($(date +%s) - T0) )) \
    > "$OUT/torch-train.log" 2>&1 || tail -20 "$OUT/torch-train.log"
  grep '^{' "$OUT/torch-train.log" | cut -c1-160
  RUN="build-gpu/bin/dsv3-run time $A --random-weights 1 --backend cuda"
fi
if [ "$ROWS" != train ]; then
echo "== dsv3 ($(( $(date +%s) - T0 )) s)"
d decode-b1 --batch 1 --context 1024 --steps 32
d decode-b32 --batch 32 --context 1024 --steps 16
d decode-b128 --batch 128 --context 1024 --steps 8
d prefill-1x2048 --batch 1 --seq 2048 --steps 1
d prefill-4x2048 --batch 4 --seq 2048 --steps 1
if [ -d bench-artifacts/v3-infer-fp8 ]; then # dsv3c --quantize fp8 (bench/prepare.sh)
  echo "== dsv3 FP8 ($(( $(date +%s) - T0 )) s)"
  f() {
    local name=$1; shift
    build-gpu/bin/dsv3-run time bench-artifacts/v3-infer-fp8 --random-weights 1 --backend cuda \
      "$@" > "$OUT/dsv3-fp8-$name.log" 2>&1
    tail -1 "$OUT/dsv3-fp8-$name.log"
    python3 bench/report.py parse-dsv3 --fp8 "$OUT/dsv3-fp8-$name.log" >> "$R"
  }
  f decode-b1 --batch 1 --context 1024 --steps 32
  f decode-b32 --batch 32 --context 1024 --steps 16
  f decode-b128 --batch 128 --context 1024 --steps 8
  f prefill-4x2048 --batch 4 --seq 2048 --steps 1
fi
echo "== where dsv3's time goes ($(( $(date +%s) - T0 )) s)"
for args in "--batch 1 --context 1024 --steps 8" "--batch 128 --context 1024 --steps 2" \
            "--batch 4 --seq 2048 --steps 1"; do
  name=$(echo "$args" | tr -d '-' | tr ' ' '_')
  DSV3_PROFILE=1 $RUN $args > "$OUT/profile-$name.log" 2>&1
  echo "-- $name"; sed -n 2,9p "$OUT/profile-$name.log"
done
echo "== PyTorch ($(( $(date +%s) - T0 )) s)"
# The PyTorch rows get what is left of the call's 10 minutes (compilation
# takes most of it); rows past the deadline are reported as skipped.
LEFT=$(( ${DEADLINE:-560} - ($(date +%s) - T0) ))
python3 bench/torch_bench.py --config $CFG --out "$R" --deadline $LEFT \
  > "$OUT/torch.log" 2>&1 || tail -20 "$OUT/torch.log"
grep '^{' "$OUT/torch.log" | cut -c1-160
fi
echo
echo "== benchmark ($(date -u +%F), $GPU, $(( $(date +%s) - T0 )) s)"
python3 bench/report.py table "$R" --config $CFG --train-config $TCFG --gpu "$GPU" | tee "$OUT/table.md"
# Few files come back from a device call: every log in one archive.
(cd "$OUT" && tar czf logs.tgz --exclude=logs.tgz -- * && find . -maxdepth 1 -name '*.log' -delete)
