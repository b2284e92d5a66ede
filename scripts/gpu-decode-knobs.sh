#!/usr/bin/env bash
# The decode knobs tuned on H200s, timed again on the GPU at hand (the
# targets are an H100's: 3.35 TB/s where the H200 has 4.8, so the best
# split of work may differ), with the GPU's memory ceilings and a per-site
# profile of batch 1, in one device call after bench/prepare.sh here:
#   run(command="bash scripts/gpu-decode-knobs.sh",
#       carry=["bench-artifacts/v3-infer", "gpu-bin", ".deps"])
# Each line: the knob setting, then decode b1 / b32 / b128 at context 1024
# (the bench's rows). SETTINGS: `;`-separated env assignments ("" is the
# defaults, timed first); the defaults are timed again last, so that drift
# over the call shows.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-decode-knobs
status=0
OUT=$OUT/hbm bash bench/hbm-ceiling.sh > "$OUT/hbm.txt" 2>&1 || status=1
A=bench-artifacts/v3-infer
SETTINGS=${SETTINGS:-";DSV3_EXPERT_ROWS_KSPLIT=1;DSV3_EXPERT_ROWS_KSPLIT=4;DSV3_EXPERT_ROWS_KSPLIT=2,4;DSV3_DECODE_STAGED_GROUPS=2;DSV3_ABSORB_CUBLAS=0;DSV3_CUBLAS_ROWS=256"}
: > "$OUT/checks.txt"
IFS=';' read -ra list <<< "$SETTINGS"
list+=("") # read drops a trailing empty field: the closing defaults row
for setting in "${list[@]}"; do
  line=$(printf '%-34s' "${setting:-defaults}")
  for spec in "1 16" "32 8" "128 4"; do
    set -- $spec
    r=$(env $setting X=0 timeout 120 $RUN time $A --random-weights 1 --backend cuda --batch $1 \
      --context 1024 --steps $2 2>&1 | tail -1 | grep -oE "decode [0-9.]+ ms" | grep -oE "[0-9.]+")
    line="$line b$1 ${r:-FAIL}"
    [ -n "$r" ] || status=1
  done
  echo "$line" | tee -a "$OUT/checks.txt"
done
DSV3_PROFILE=site timeout 120 $RUN time $A --random-weights 1 --backend cuda --batch 1 \
  --context 1024 --steps 8 > "$OUT/profile-b1.log" 2>&1
DSV3_PROFILE=1 timeout 120 $RUN time $A --random-weights 1 --backend cuda --batch 32 \
  --context 1024 --steps 4 > "$OUT/profile-b32.log" 2>&1
echo "== b1 (per site)"; sed -n 1,30p "$OUT/profile-b1.log" | cut -c1-150
echo "== b32"; sed -n 1,16p "$OUT/profile-b32.log" | cut -c1-150
echo "== memory ceilings"; tail -12 "$OUT/hbm.txt"
finish
