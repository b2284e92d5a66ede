#!/usr/bin/env bash
# The kernels on Hopper's warpgroup MMA (the bf16 GEMM gemm_bf16_tma, the
# prefill attention, the training attention's backward), checked and timed
# in one device call. Here first: bash scripts/gpu-hopper-check.sh --prepare
# (gpu-artifacts/: v3-width-bf16, tiny-a, tiny-e, train-tiny-a,
# train-tiny-e, train-v3-wgmma-check, wgmma-4stage-bf16; bench-artifacts/: v3-infer, v3-train),
# then
#   run(command="bash scripts/gpu-hopper-check.sh",
#       carry=["gpu-artifacts", "bench-artifacts/v3-infer", "bench-artifacts/v3-train", ".deps"])
# 0. scripts/wgmma-audit.py on every carried cubin: no kernel whose
#    warpgroup MMAs ptxas serialized (a wait per MMA).
# 1. gemm_bf16_tma (plain, gated, grouped) against float64 on the same
#    bf16 operands at a V3 shape, ragged edges and a short K, timed at
#    o_proj's prefill shape (8192 x 7168 x 16384).
# 2. The prefill attention against float64 at V3 widths with cached
#    positions, and where only four stages fit (q/k 192 + 64, v 128)
#    (scripts/gpu-prefill-check.sh's attention part).
# 3. The training attention and the fixtures (scripts/gpu-grad-wgmma-check.sh
#    without its timings): bf16-check at 4 heads of 32 + 32, v 64 and at
#    the bench slice's widths, verify and compare on the fixtures, 100
#    bf16 steps with the backward on mma.sync and on wgmma, fp32 beside.
# 4. Prefill 4 x 2048 and 1 x 2048 and the training step 4 x 4096 (bf16
#    compute), with the prefill attention on mma.sync
#    (DSV3_PREFILL_WGMMA=0) and on the warpgroup MMA, then a per-site
#    profile of prefill 4 x 2048 and of the training step.
# CHECKS_ONLY=1 stops after 3.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --prepare ]; then # (here, where dsv3c is)
  set -e
  C=build/bin/dsv3c
  rm -rf gpu-artifacts && mkdir -p gpu-artifacts .deps/include bench-artifacts
  $C test/data/configs/v3-width-slice.json --target cuda --dtype bf16 --max-batch 2 \
    --max-seq 64 -o gpu-artifacts/v3-width-bf16
  for f in tiny-a tiny-e; do
    $C test/data/fixtures/$f --target cuda -o gpu-artifacts/$f
    $C test/data/fixtures/$f --mode train --target cuda -o gpu-artifacts/train-$f
  done
  $C test/data/configs/v3-train-wgmma-check.json --mode train --target cuda --max-batch 2 \
    --max-seq 256 -o gpu-artifacts/train-v3-wgmma-check
  $C test/data/configs/v3-wgmma-4stage-check.json --target cuda --dtype bf16 --max-batch 2 \
    --max-seq 512 -o gpu-artifacts/wgmma-4stage-bf16
  $C bench/configs/v3-infer-3layer.json --target cuda --dtype bf16 --max-batch 128 \
    --max-seq 2048 --max-tokens 8192 --quiet -o bench-artifacts/v3-infer
  $C bench/configs/v3-train-2layer.json --mode train --dtype f32 --target cuda \
    --max-batch 4 --max-seq 4096 --quiet -o bench-artifacts/v3-train
  cp -r /usr/include/fmt /usr/include/nlohmann .deps/include/
  du -sh gpu-artifacts bench-artifacts/v3-infer bench-artifacts/v3-train .deps
  exit 0
fi
source scripts/gpu-env.sh /tmp/gpu-hopper
export OUT
status=0
echo "== 0. warpgroup MMAs pipelined (scripts/wgmma-audit.py)"
python3 scripts/wgmma-audit.py gpu-artifacts/*/cuda/sm_90a.cubin bench-artifacts/*/cuda/sm_90a.cubin \
  > "$OUT/wgmma-audit.txt" || status=1
echo "$(grep -c pipelined "$OUT/wgmma-audit.txt") kernels pipelined, serialized:"
grep SERIALIZED "$OUT/wgmma-audit.txt"
echo "== 1. gemm_bf16_tma against float64"
for shape in 300,1536,7168 200,200,520 700,1536,1024; do
  t=; [ $shape = 300,1536,7168 ] && t=DSV3_GEMM_TIME=8192,7168,16384
  env $t timeout 60 $RUN bf16-check gpu-artifacts/v3-width-bf16 --seq 16 --shape $shape 2>&1 |
    grep -E "gemm_bf16|FAIL|rror" | grep -v linear_mma || status=1
done
echo "== 2. prefill attention against float64 (V3 widths, cached positions)"
PARTS=attention bash scripts/gpu-prefill-check.sh || status=1
echo "== 3. training attention, fixtures, 100-step curves"
CHECKS_ONLY=1 bash scripts/gpu-grad-wgmma-check.sh || status=1
[ "${CHECKS_ONLY:-0}" = 1 ] && exit $status
echo "== 4. prefill and training step, prefill attention on mma.sync (DSV3_PREFILL_WGMMA=0) and wgmma"
for wg in 0 1; do
  for shape in "--batch 4 --seq 2048" "--batch 1 --seq 2048"; do
    r=$(DSV3_PREFILL_WGMMA=$wg timeout 120 $RUN time bench-artifacts/v3-infer --random-weights 1 \
      --backend cuda $shape --steps 2 2>&1 | tail -1 | grep -o "prefill [0-9.]* ms")
    echo "DSV3_PREFILL_WGMMA=$wg $shape: $r"
  done
  r=$(DSV3_PREFILL_WGMMA=$wg timeout 150 $RUN time bench-artifacts/v3-train --random-weights 1 \
    --backend cuda --train --compute bf16 --batch 4 --seq 4096 --steps 2 2>&1 | tail -1 |
    grep -o "train_step [0-9.]* ms")
  echo "DSV3_PREFILL_WGMMA=$wg train 4x4096: $r"
done
DSV3_PROFILE=site timeout 120 $RUN time bench-artifacts/v3-infer --random-weights 1 --backend cuda \
  --batch 4 --seq 2048 --steps 1 > "$OUT/profile-prefill.log" 2>&1
sed -n 1,24p "$OUT/profile-prefill.log"
DSV3_PROFILE=site timeout 150 $RUN time bench-artifacts/v3-train --random-weights 1 --backend cuda \
  --train --compute bf16 --batch 4 --seq 4096 --steps 1 > "$OUT/profile-train.log" 2>&1
sed -n 1,30p "$OUT/profile-train.log"
exit $status
