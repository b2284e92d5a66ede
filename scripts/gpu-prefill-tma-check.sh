#!/usr/bin/env bash
# mla_prefill_tma (the Hopper prefill attention on 128-key tiles fed by TMA)
# against float64, beside mla_prefill_wgmma and mla_prefill_mma, the FP8
# kv_b_proj stored as its operands (DSV3_MLA_KV_FP8), and the prefill they
# speed up, in one device call after these here:
#   C=build/bin/dsv3c
#   $C test/data/configs/v3-width-slice.json --target cuda --dtype bf16 \
#     --max-batch 2 --max-seq 64 -o ab/v3w
#   $C test/data/configs/v3-train-wgmma-check.json --mode train --target cuda \
#     --max-batch 2 --max-seq 256 -o ab/train-wg
#   $C bench/configs/v3-infer-3layer.json --target cuda --dtype bf16 [--quantize fp8] \
#     --max-batch 128 --max-seq 2048 --max-tokens 8192 --quiet -o ab/v3-infer[-fp8]
#   bash scripts/gpu-prebuild.sh
#   run(command="bash scripts/gpu-prefill-tma-check.sh", carry=["ab", "gpu-bin", ".deps"])
# 1. bf16-check's attention (every tensor-core kernel the artifact has)
#    against float64 on the same bf16 operands (2^-8 of the largest |v| a
#    query sees): at V3 widths (128 heads, q/k 128 + 64, v 128) 300 new
#    queries after 100 cached, 130 after none, 64 after 1000, 512 after
#    none (four query blocks, four key tiles), 200 after 333; at q/k 32 + 32, v 64 (the training check's
#    widths: the m64n64 P V) 300 after none and 200 after 37; the kernels
#    timed on one causal sequence of 2048 and of 4096.
# 2. The bench slice's logits (2 x 1024 tokens, bf16 and FP8) with the
#    attention on each kernel: mla_prefill_tma against mla_prefill_wgmma,
#    beside mla_prefill_mma against mla_prefill_wgmma (the difference two
#    correct bf16 kernels make), and greedy tokens.
#    2b. FP8: kv_b_proj stored straight as the attention's keys and values
#    (DSV3_MLA_KV_FP8=1, fp8_gemm_tma_wide<4>) against kv_b_proj's fp32
#    output packed by mla_pack_kv / mla_pack_vt, both on the wide kernel
#    (DSV3_FP8_CUBLAS=0): the logits bitwise equal, through the prefill
#    entry and the decode entry (--through-cache).
# 3. Prefill 4 x 2048 (bf16, FP8) and 1 x 2048 (bf16) with each attention
#    kernel and (FP8) the fused kv_b_proj, alternating, and a per-site
#    profile of the FP8 4 x 2048 prefill with both (REPS rounds, default 1).
# PARTS=attention,logits,kv,time (default: all) picks the sections.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-prefill-tma
# (mla_prefill_tma, the fused kv_b_proj and the TMA store are the defaults
# since this script passed on an H200, 2026-12-05; each setting below says
# what it turns off.)
status=0
: > "$OUT/checks.txt"
PARTS=${PARTS:-attention,logits,kv,time}
on() { case ",$PARTS," in *",$1,"*) return 0 ;; esac; return 1; }
IDS=$(python3 -c "import random; random.seed(3); print('/'.join(','.join(str(random.randrange(129280)) for _ in range(1024)) for _ in range(2)))")
if on attention; then
echo "== 1. attention against float64"
for spec in v3w:300:100:1 v3w:130:0:2 v3w:64:1000:3 v3w:512:0:6 v3w:200:333:7 \
  train-wg:300:0:4 train-wg:200:37:5; do
  IFS=: read -r art seq past seed <<< "$spec"
  timeout 300 $RUN bf16-check ab/$art --seq $seq --context $past --seed $seed \
    > "$OUT/attention-$art-$seq-$past.log" 2>&1 || status=1
  grep -E "mla_prefill_(mma|wgmma|tma) \(bf16\), float64 on bf16|attention:" \
    "$OUT/attention-$art-$seq-$past.log" | sed "s/^ */$art $seq after $past: /" |
    tee -a "$OUT/checks.txt"
done
for n in 2048 4096; do
  DSV3_ATTENTION_TIME=$n timeout 300 $RUN bf16-check ab/v3w --seq 16 > "$OUT/time-$n.log" 2>&1 ||
    status=1
  grep -iE "timing|TFLOP" "$OUT/time-$n.log" | sed "s/^ */causal $n: /" | tee -a "$OUT/checks.txt"
done
fi
if on logits; then
echo "== 2. whole-slice logits on each kernel"
for art in v3-infer v3-infer-fp8; do
  for k in tma wgmma mma; do
    case $k in tma) e="DSV3_PREFILL_TMA=1" ;; wgmma) e="DSV3_PREFILL_TMA=0" ;; mma) e="DSV3_PREFILL_WGMMA=0" ;; esac
    env $e DSV3_CUBLAS_TUNE=0 timeout 180 $RUN forward ab/$art --random-weights 1 --backend cuda \
      --ids "$IDS" --out /dev/shm/$art-$k.safetensors > "$OUT/forward-$art-$k.log" 2>&1 ||
      { status=1; tail -3 "$OUT/forward-$art-$k.log"; }
  done
  for k in tma mma; do
    r=$(python3 scripts/logits-diff.py /dev/shm/$art-wgmma.safetensors /dev/shm/$art-$k.safetensors 2>&1)
    printf '%-14s %-6s vs wgmma: %s\n' $art $k "$r" | tee -a "$OUT/checks.txt"
  done
  rm -f /dev/shm/$art-*.safetensors
done
fi
if on kv; then
echo "== 2b. FP8 kv_b_proj stored as the attention's keys and values (DSV3_MLA_KV_FP8)"
# Against the unfused path on the same GEMM kernel (DSV3_FP8_CUBLAS=0: the
# plain wide kernel, whose sums fp8_gemm_tma_wide<4> repeats): bitwise.
for via in "" "--through-cache"; do
  for kv in 0 1; do
    DSV3_MLA_KV_FP8=$kv DSV3_FP8_CUBLAS=0 DSV3_CUBLAS_TUNE=0 timeout 180 $RUN forward \
      ab/v3-infer-fp8 --random-weights 1 --backend cuda $via --ids "$IDS" \
      --out /dev/shm/kv-$kv.safetensors > "$OUT/forward-kv$kv$via.log" 2>&1 ||
      { status=1; tail -3 "$OUT/forward-kv$kv$via.log"; }
  done
  if cmp -s /dev/shm/kv-0.safetensors /dev/shm/kv-1.safetensors; then r="bitwise equal: PASS"
  else r="differ: FAIL ($(python3 scripts/logits-diff.py /dev/shm/kv-0.safetensors /dev/shm/kv-1.safetensors 2>&1 | head -1))"; status=1; fi
  echo "v3-infer-fp8 ${via:-prefill entry} DSV3_MLA_KV_FP8 0 vs 1: $r" | tee -a "$OUT/checks.txt"
  rm -f /dev/shm/kv-*.safetensors
done
fi
on time || finish
echo "== 3. prefill"
# Each setting: the attention on mla_prefill_wgmma (base) or mla_prefill_tma
# (tma), FP8 kv_b_proj stored as its operands (kv).
for rep in $(seq ${REPS:-1}); do
  for cfg in base tma tma+kv; do
    e="DSV3_PREFILL_TMA=0"
    case $cfg in *tma*) e="DSV3_PREFILL_TMA=1" ;; esac
    case $cfg in *kv*) e="$e DSV3_MLA_KV_FP8=1" ;; *) e="$e DSV3_MLA_KV_FP8=0" ;; esac
    for spec in "v3-infer:--batch 4 --seq 2048" "v3-infer-fp8:--batch 4 --seq 2048" \
      "v3-infer:--batch 1 --seq 2048"; do
      art=${spec%%:*} shape=${spec#*:}
      case $cfg in *kv*) [ $art = v3-infer ] && continue ;; esac
      r=$(env $e timeout 120 $RUN time ab/$art --random-weights 1 --backend cuda \
        $shape --steps 2 2>&1 | tail -1 | grep -o "prompt.*prefill [0-9.]* ms")
      printf '%-7s %-13s %s\n' $cfg $art "$r" | tee -a "$OUT/checks.txt"
    done
  done
done
DSV3_PREFILL_TMA=1 DSV3_MLA_KV_FP8=1 DSV3_PROFILE=site timeout 120 $RUN time ab/v3-infer-fp8 \
  --random-weights 1 --backend cuda --batch 4 --seq 2048 --steps 1 \
  > "$OUT/profile-fp8-prefill.log" 2>&1
sed -n 1,45p "$OUT/profile-fp8-prefill.log"
finish
