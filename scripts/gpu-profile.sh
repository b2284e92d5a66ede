#!/usr/bin/env bash
# Where a bench workload's time goes, per kernel and launch site
# (DSV3_PROFILE=site: CUDA events around every launch after the warm-up
# runs, graphs off), one device call after `bash bench/prepare.sh` here:
#   run(command="bash scripts/gpu-profile.sh",
#       carry=["bench-artifacts", ".deps"])
# WORKLOADS: `artifact:dsv3-run time arguments` separated by `;`
# (default: the bf16 and FP8 prefill 4 x 2048). TOP: rows shown of each.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-profile
WORKLOADS=${WORKLOADS:-"v3-infer:--batch 4 --seq 2048 --steps 1;v3-infer-fp8:--batch 4 --seq 2048 --steps 1"}
TOP=${TOP:-45}
status=0
IFS=';' read -ra list <<< "$WORKLOADS"
for w in "${list[@]}"; do
  art=${w%%:*} args=${w#*:}
  name=$(echo "$art $args" | tr -d '-' | tr ' ' '_')
  echo "== $art $args"
  DSV3_PROFILE=site timeout 300 $RUN time bench-artifacts/$art --random-weights 1 \
    --backend cuda $args > "$OUT/profile-$name.log" 2>&1 || status=1
  sed -n "1,${TOP}p" "$OUT/profile-$name.log"
  tail -1 "$OUT/profile-$name.log"
done
exit $status
