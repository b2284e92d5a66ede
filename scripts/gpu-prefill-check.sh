#!/usr/bin/env bash
# The prefill attention on Hopper's warpgroup MMA (mla_pack_vt +
# mla_prefill_wgmma; DSV3_PREFILL_WGMMA=0 turns it off) and cuBLASLt's
# algorithms timed per shape (DSV3_CUBLAS_TUNE=0 turns it off), one device
# call, after these here:
#   dsv3c test/data/configs/v3-width-slice.json --target cuda --dtype bf16 \
#     --max-batch 2 --max-seq 64 -o gpu-artifacts/v3-width-bf16
#   dsv3c test/data/configs/v3-width-slice.json --target cuda --max-batch 2 \
#     --max-seq 64 -o gpu-artifacts/v3-width
#   dsv3c test/data/fixtures/tiny-a --target cuda --dtype bf16 -o gpu-artifacts/tiny-a-bf16
#   dsv3c test/data/configs/v3-wgmma-4stage-check.json --target cuda --dtype bf16 \
#     --max-batch 2 --max-seq 512 -o gpu-artifacts/wgmma-4stage-bf16
#   bash bench/prepare.sh
#   run(command="bash scripts/gpu-prefill-check.sh",
#       carry=["gpu-artifacts", "bench-artifacts", ".deps"])
# 1. bf16-check's attention at V3 widths (128 heads, q/k 128 + 64, v 128)
#    against float64 on the same bf16 operands (2^-8 max|v|), both
#    tensor-core kernels: 300 new queries after 100 cached (three query
#    blocks, the last partial, keys past the diagonal), 130 after none (a
#    block of 2 queries), 64 after 1000 (one block, 17 key tiles); the
#    timing of one 2048-token sequence, causal. Then at q/k 192 + 64, v 128
#    (test/data/configs/v3-wgmma-4stage-check.json, gpu-artifacts/
#    wgmma-4stage-bf16: mla_prefill_wgmma's four-stage form), 300 after
#    100 and 70 after none.
# 2. The few-row decode kernels (default) against the host at V3 widths.
# 3. cuBLASLt alone at the prefill's q_a_proj shape (8192 x 1536 x 7168),
#    each shape's tuning (DSV3_CUBLAS_TUNE=log), prefill 4 x 2048 and
#    1 x 2048 (bf16, FP8) and a training step 4 x 4096 with and without
#    the tuning and each attention kernel, and a profile of the bf16 4 x
#    2048 prefill per launch site (DSV3_PROFILE=site).
# PARTS=attention,fewrow,time (default: all) picks the sections.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-prefill
status=0
: > "$OUT/checks.txt"
PARTS=${PARTS:-attention,fewrow,time}
on() { case ",$PARTS," in *",$1,"*) return 0 ;; esac; return 1; }
on attention && echo "== attention against float64"
on attention && for spec in v3-width-bf16:300:100:1 v3-width-bf16:130:0:2 v3-width-bf16:64:1000:3 \
  wgmma-4stage-bf16:300:100:4 wgmma-4stage-bf16:70:0:5; do
  # (wgmma-4stage-bf16: q/k 192 + 64, v 128, where mla_prefill_wgmma runs
  # four stages; gpu-artifacts/ without it: an older --prepare, skipped.)
  IFS=: read -r art seq past seed <<< "$spec"
  [ -d gpu-artifacts/$art ] || { echo "gpu-artifacts/$art missing: skipped"; continue; }
  env $([ $seq = 300 ] && [ $art = v3-width-bf16 ] && echo DSV3_ATTENTION_TIME=2048) timeout 300 \
    $RUN bf16-check gpu-artifacts/$art --seq $seq --context $past --seed $seed \
    > "$OUT/attention-$art-$seq-$past.log" 2>&1 || status=1
  grep -E "mla_prefill|attention:|timing" "$OUT/attention-$art-$seq-$past.log" |
    sed "s/^ */$art $seq after $past: /" | tee -a "$OUT/checks.txt"
done
if on fewrow; then
echo "== few-row decode kernels against the host"
MMA=$(python3 -c "import random; random.seed(9); print(','.join(str(random.randrange(4096)) for _ in range(10)))")
IDS=1,5,9,200,31,77,4,300/8,2,100,6,71,250,29,11
$RUN init gpu-artifacts/v3-width --seed 7 --out /dev/shm/v3w > "$OUT/init.log" 2>&1 || status=1
for art in "tiny-a-bf16 --weights test/data/fixtures/tiny-a --ids $IDS" \
  "v3-width-bf16 --weights /dev/shm/v3w --ids $MMA"; do
  r=$(timeout 300 $RUN compare gpu-artifacts/$art 2>&1 | tee "$OUT/compare.log" | tail -1)
  printf 'compare %-16s %s\n' "${art%% *}" "$r" | tee -a "$OUT/checks.txt"
  case "$r" in *" passed, 0 failed"*) ;; *) status=1 ;; esac
done
fi
on time || { cat "$OUT/checks.txt"; exit $status; }
echo "== timings"
DSV3_GEMM_TIME=8192,1536,7168 timeout 300 $RUN bf16-check gpu-artifacts/v3-width-bf16 --seq 16 \
  > "$OUT/gemm-q-a.log" 2>&1 || status=1
grep -E "timing|ms" "$OUT/gemm-q-a.log" | tee -a "$OUT/checks.txt"
DSV3_CUBLAS_TUNE=log timeout 120 $RUN time bench-artifacts/v3-infer --random-weights 1 \
  --backend cuda --batch 4 --seq 2048 --steps 1 2>&1 | grep "^cuBLASLt" | sort -u |
  tee -a "$OUT/checks.txt"
for env in "DSV3_PREFILL_WGMMA=0 DSV3_CUBLAS_TUNE=0" DSV3_PREFILL_WGMMA=0 DSV3_PREFILL_WGMMA=1; do
  for art in v3-infer v3-infer-fp8; do
    for shape in "--batch 4 --seq 2048" "--batch 1 --seq 2048"; do
      [ $art = v3-infer-fp8 ] && [ "$shape" = "--batch 1 --seq 2048" ] && continue
      r=$(env $env timeout 120 $RUN time bench-artifacts/$art --random-weights 1 --backend cuda \
        $shape --steps 2 2>&1 | tail -1 | grep -o "prompt.*prefill [0-9.]* ms")
      printf '%-40s %-13s %s\n' "$env" "$art" "$r" | tee -a "$OUT/checks.txt"
    done
  done
  r=$(env $env timeout 150 $RUN time bench-artifacts/v3-train --random-weights 1 --backend cuda \
    --train --compute bf16 --batch 4 --seq 4096 --steps 2 2>&1 | tail -1 |
    grep -o "train_step [0-9.]* ms")
  printf '%-40s %-13s %s\n' "$env" "train 4x4096" "$r" | tee -a "$OUT/checks.txt"
done
DSV3_PROFILE=site timeout 120 $RUN time bench-artifacts/v3-infer --random-weights 1 --backend cuda \
  --batch 4 --seq 2048 --steps 1 > "$OUT/profile-prefill.log" 2>&1
sed -n 1,40p "$OUT/profile-prefill.log"
echo
cat "$OUT/checks.txt"
exit $status
