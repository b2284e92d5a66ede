#!/usr/bin/env bash
# Several builds of the kernels (artifacts of one config compiled from
# different kernel sources; see gpu-artifact-ab.sh for two) in one device
# call: each one's logits of 1,024 tokens against the first's (bitwise, or
# "differ"), then prefill at each BATCH,SEQ of SHAPES (default "4,2048
# 1,2048") alternating over the artifacts, REPS rounds (default 3), then a
# per-launch-site profile (DSV3_PROFILE=site, PROFILE_ROWS rows, default
# 30) of the artifacts in PROFILE at PROFILE_SHAPE (default 1,2048).
#   ARTS="ab/old ab/new" PROFILE="ab/old ab/new" bash scripts/gpu-prefill-variants.sh
#   run(..., carry=["ab", "gpu-bin", ".deps"])
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-prefill-variants
status=0
T0=$(date +%s)
at() { echo "[$(( $(date +%s) - T0 )) s]"; }
read -r -a arts <<< "${ARTS:-ab/old ab/new}"
IDS=$(python3 -c "import random; random.seed(3); print(','.join(str(random.randrange(129280)) for _ in range(1024)))")
for i in "${!arts[@]}"; do
  DSV3_CUBLAS_TUNE=0 timeout 120 $RUN forward "${arts[$i]}" --random-weights 1 --backend cuda \
    --ids "$IDS" --out /dev/shm/pv-logits-$i.safetensors > "$OUT/forward-$i.log" 2>&1 ||
    { status=1; tail -3 "$OUT/forward-$i.log"; }
  [ "$i" = 0 ] && continue
  cmp -s /dev/shm/pv-logits-0.safetensors /dev/shm/pv-logits-$i.safetensors && r="bitwise equal" || r=differ
  echo "$(at) logits of 1024 tokens, ${arts[$i]} vs ${arts[0]}: $r" | tee -a "$OUT/checks.txt"
done
rm -f /dev/shm/pv-logits-*.safetensors
for shape in ${SHAPES:-4,2048 1,2048}; do
  for rep in $(seq "${REPS:-3}"); do
    line="$(at) ${shape/,/x} rep $rep:"
    for a in "${arts[@]}"; do
      r=$(timeout 60 $RUN time "$a" --random-weights 1 --backend cuda --batch ${shape%,*} \
        --seq ${shape#*,} --steps 3 2>&1 | tail -1 | grep -oE "prefill [0-9.]+ ms" | grep -oE "[0-9.]+")
      line="$line $a ${r:-?}"
    done
    echo "$line" | tee -a "$OUT/checks.txt"
  done
done
ps=${PROFILE_SHAPE:-1,2048}
for a in ${PROFILE:-}; do
  DSV3_PROFILE=site DSV3_PROFILE_ROWS=${PROFILE_ROWS:-30} timeout 90 $RUN time "$a" \
    --random-weights 1 --backend cuda --batch ${ps%,*} --seq ${ps#*,} --steps 3 \
    > "$OUT/profile-${a//\//-}.txt" 2>&1 || status=1
  echo "== profile of $a (${ps/,/x})"; tail -${PROFILE_TAIL:-34} "$OUT/profile-${a//\//-}.txt"
done
finish
