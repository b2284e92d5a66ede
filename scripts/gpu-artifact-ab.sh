#!/usr/bin/env bash
# An A/B of two builds of the kernels (they live in the artifacts: compile
# the same config before and after a kernel change), in one device call:
#   git stash; ninja -C build; build/bin/dsv3c bench/configs/v3-infer-3layer.json \
#     --target cuda --dtype bf16 --quantize fp8 --max-batch 128 --max-seq 2048 \
#     --max-tokens 8192 --quiet -o ab/old
#   git stash pop; ninja -C build; (the same) -o ab/new
#   rm -f ab/*/cuda/compute_80.ptx; bash scripts/gpu-prebuild.sh
#   run(command="bash scripts/gpu-artifact-ab.sh", carry=["ab", "gpu-bin", ".deps"])
# 0. (FP8 artifacts; GEMM=1 default) B's FP8 GEMMs checked against the
#    host GEMM at the shapes in CHECK (default 1050,2048,256: every last
#    row tile of the plain and grouped GEMMs 64 rows or fewer) on the wide
#    tiles (DSV3_FP8_WIDE=1) and the default; the rest is skipped if one
#    fails. Keep the shapes small: the host reference and the per-element
#    bound are single-threaded (512 x 7168 x 2048 took 150 s a run).
# 1. Logits of 1,024 tokens of A and B bitwise equal (a kernel change that
#    keeps each output's sums and their order must pass; BITWISE=0 reports
#    only).
# 2. Prefill alternating A and B, REPS times (default 3), at each
#    BATCH,SEQ of PREFILL (default 4,2048).
# 3. (FP8 artifacts; GEMM=1 default) the FP8 TMA GEMM timed with each
#    artifact's kernels at the shapes in SHAPES (dsv3-run fp8-gemm,
#    DSV3_FP8_GEMM_TIME; activation quantization included).
# A and B default to ab/old and ab/new; ENV_A / ENV_B: variables set for
# A's / B's runs only (e.g. the same artifact with a runtime knob off);
# RUN_A / RUN_B: a dsv3-run for one side (a change of a kernel's
# parameters needs the runtime that launches it: build the other side's
# with scripts/gpu-prebuild.sh, copy it to e.g. gpu-bin-b/ and carry it).
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-artifact-ab
A=${A:-ab/old} B=${B:-ab/new}
RUN_A=${RUN_A:-$RUN} RUN_B=${RUN_B:-$RUN}
status=0
T0=$(date +%s)
at() { echo "[$(( $(date +%s) - T0 )) s]"; }
# An FP8 artifact (dsv3c --quantize fp8): every artifact's kernels.cu holds
# the FP8 kernels' source, its manifest says whether it runs them.
fp8() { grep -q '"quantization": "fp8"' "$1/manifest.json" 2>/dev/null; }
if [ "${GEMM:-1}" = 1 ] && fp8 "$B"; then
  for shape in ${CHECK:-1050,2048,256}; do
    for wide in 1 X; do
      log="$OUT/fp8-gemm-check-${shape//,/x}-wide$wide.log"
      env ${ENV_B:-X=0} DSV3_FP8_WIDE=$wide timeout ${CHECK_TIMEOUT:-180} $RUN_B fp8-gemm "$B" --backend cuda \
        --shape $shape --seed 3 \
        > "$log" 2>&1 || status=1
      echo "$(at) fp8-gemm $shape ${B} DSV3_FP8_WIDE=$wide: $(grep -c PASS "$log") PASS," \
        "$(grep -c FAIL "$log") FAIL" | tee -a "$OUT/checks.txt"
    done
  done
  # A wrong or hung kernel: nothing after is worth the time.
  [ $status = 0 ] || finish
fi
IDS=$(python3 -c "import random; random.seed(3); print(','.join(str(random.randrange(129280)) for _ in range(1024)))")
forward_ab ab-logits --random-weights 1 --backend cuda --ids "$IDS"
if cmp -s /dev/shm/ab-logits-A.safetensors /dev/shm/ab-logits-B.safetensors; then
  r="bitwise equal"
else
  # How far apart (a change that sums in another order: BITWISE=0): the
  # largest difference over the largest logit, and the argmax agreement.
  r="differ: $(python3 - /dev/shm/ab-logits-A.safetensors /dev/shm/ab-logits-B.safetensors <<'PY'
import json, struct, sys
import numpy as np
def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    name = next(k for k in head if k != "__metadata__")
    t = head[name]
    a, b = t["data_offsets"]
    return np.frombuffer(raw[8 + n + a:8 + n + b], dtype=np.float32).reshape(t["shape"])
x, y = load(sys.argv[1]), load(sys.argv[2])
x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
print(f"max |dlogit| / max |logit| {np.abs(x - y).max() / np.abs(x).max():.2e}, "
      f"argmax {int((x.argmax(1) == y.argmax(1)).sum())} / {x.shape[0]}")
PY
)"
  [ "${BITWISE:-1}" = 1 ] && status=1
fi
echo "$(at) logits of 1024 tokens, $A vs $B: $r" | tee -a "$OUT/checks.txt"
rm -f /dev/shm/ab-logits-*.safetensors
for shape in ${PREFILL:-4,2048}; do
  for rep in $(seq "${REPS:-3}"); do
    for v in A B; do
      env_=ENV_$v run_=RUN_$v
      r=$(env ${!env_:-X=0} timeout 60 ${!run_} time "${!v}" --random-weights 1 --backend cuda --batch ${shape%,*} \
        --seq ${shape#*,} --steps 3 2>&1 | tail -1 | grep -o "prefill [0-9.]* ms")
      echo "$(at) rep $rep ${shape/,/x} ${!v} $r" | tee -a "$OUT/checks.txt"
    done
  done
done
if [ "${GEMM:-1}" = 1 ] && fp8 "$A" && fp8 "$B"; then
  for shape in ${SHAPES:-8192,18432,7168 8192,7168,16384 8192,7168,2048}; do
    for v in A B; do
      env_=ENV_$v run_=RUN_$v
      r=$(env ${!env_:-X=0} DSV3_FP8_GEMM_TIME=$shape timeout 90 ${!run_} fp8-gemm "${!v}" --backend cuda \
        --shape 64,576,7168 --seed 3 2>&1 | grep -E "timing.*(wgmma \+ TMA|cuBLASLt)" |
        grep -oE "[0-9.]+ ms +[0-9.]+ TFLOP/s")
      echo "$(at) fp8_gemm_tma $shape ${!v}: $r" | tee -a "$OUT/checks.txt"
    done
  done
fi
finish
