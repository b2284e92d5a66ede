#!/usr/bin/env bash
# Training with bf16 compute (issue 7, `dsv3-run train/time --compute bf16`):
# the attention forward and backward and the GEMMs on bf16 tensor cores, in
# one device call. Here first: scripts/gpu-prepare.sh (train-tiny-a, train-tiny-e,
# train-v3-check are the ones used) and bench/prepare.sh (v3-train); then
#   run(command="bash scripts/gpu-train-attention-check.sh",
#       carry=["gpu-artifacts", "bench-artifacts", ".deps"])
# 1. dsv3-run bf16-check on training artifacts: the backward kernels
#    (mla_grad_q_mma, mla_grad_kv_mma after mla_prefill_mma) and the fp32
#    ones against float64 on 2 sequences, at tiny-a's widths, at
#    v3-train-check's (48 + 32, 40: widths padded to 16) and at the bench
#    slice's (128 heads, 128 + 64, 128), which is also timed at 4096 tokens;
#    and training's GEMMs with bf16 compute (forward, input and weight
#    gradients, grouped over experts) at three shapes, one timed.
# 2. The fp32 path unchanged: compare train-tiny-a (kernel by kernel).
# 3. 200 steps of tiny-e on the GPU in fp32 and in bf16 compute, same data
#    and schedule: the loss curves side by side.
# 4. The bench slice's training step in bf16 compute, 1 x 4096 and 4 x 4096,
#    and a profile of 1 x 4096.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-train-attention
FINAL=$OUT
OUT=$(mktemp -d) # logs, packed into $FINAL/logs.tgz at the end
trap 'tar -C "$OUT" -czf "$FINAL/logs.tgz" .' EXIT
A=gpu-artifacts
status=0
echo "== bf16-check (training artifacts)"
for a in $A/train-tiny-a:64:300,1540,1000 $A/train-v3-check:96:200,200,520 \
         bench-artifacts/v3-train:256:64,7168,2048; do
  IFS=: read -r art T shape <<< "$a"
  t=; [ "$art" = bench-artifacts/v3-train ] &&
    t="DSV3_ATTENTION_TIME=4096 DSV3_GEMM_TIME=8192,7168,16384"
  env $t timeout 300 $RUN bf16-check "$art" --seq "$T" --shape "$shape" \
    > "$OUT/bf16-check-$(basename "$art").log" 2>&1 || status=1
  sed -n '/training attention/,$p' "$OUT/bf16-check-$(basename "$art").log"
done
echo "== compare train-tiny-a (fp32)"
IDS=1,5,9,200,31,77,4,300/8,2,100,6,71,250,29,11
timeout 120 $RUN compare $A/train-tiny-a --weights test/data/fixtures/tiny-a --ids $IDS \
  > "$OUT/compare-train-tiny-a.log" 2>&1 || status=1
tail -1 "$OUT/compare-train-tiny-a.log"
echo "== 200 steps of tiny-e, fp32 and bf16 compute"
$RUN tokenize --text /usr/share/common-licenses/GPL-3 --out /dev/shm/gpl.tokens > /dev/null 2>&1 ||
  python3 -c "open('/dev/shm/gpl.tokens','wb').write(b''.join(int(b).to_bytes(4,'little') for b in open('README.md','rb').read()*4))"
for c in fp32 bf16; do
  timeout 300 $RUN train $A/train-tiny-e --init 1 --data /dev/shm/gpl.tokens --steps 200 \
    --batch 4 --seq 64 --lr 2e-3 --warmup 10 --backend cuda --compute $c \
    --save-dir /dev/shm/t-$c --metrics "$OUT/curve-$c.jsonl" > "$OUT/train-$c.log" 2>&1 || status=1
done
# Windows of 10 steps (single steps are noisy in both): the bf16 curve's
# mean within 2% of the fp32 curve's at every window.
python3 test/Training/Inputs/compare_curves.py "$OUT/curve-fp32.jsonl" "$OUT/curve-bf16.jsonl" \
  10 0.02 || status=1
echo "== bench slice, train_step with bf16 compute"
T="$RUN time bench-artifacts/v3-train --train --random-weights 1 --backend cuda --compute bf16"
timeout 200 $T --batch 1 --seq 4096 --steps 1 2>&1 | tail -1
timeout 250 $T --batch 4 --seq 4096 --steps 1 2>&1 | tail -1
DSV3_PROFILE=1 timeout 200 $T --batch 1 --seq 4096 --steps 1 > "$OUT/profile-train-bf16.log" 2>&1
sed -n 2,16p "$OUT/profile-train-bf16.log"
if [ -d bench-artifacts/v3-infer ]; then
  echo "== bench slice inference (the bf16 GEMMs' conversion now covers every element)"
  I="$RUN time bench-artifacts/v3-infer --random-weights 1 --backend cuda"
  timeout 100 $I --batch 4 --seq 2048 --steps 2 2>&1 | tail -1
  timeout 100 $I --batch 32 --context 1024 --steps 16 2>&1 | tail -1
fi
exit $status
