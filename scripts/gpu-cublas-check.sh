#!/usr/bin/env bash
# cuBLASLt for the plain bf16 GEMMs of many rows (prefill, training), one
# device call (after bench/prepare.sh here):
#   run(command="bash scripts/gpu-cublas-check.sh", carry=["bench-artifacts", ".deps"])
# 1. bf16-check: cublasLtMatmul (plain, + residual, fp32 out) against
#    float64 beside gemm_bf16_tma's forms (bound 2^-12 sum|x w|), at
#    ragged and V3 shapes.
# 2. Each plain GEMM shape of the bench slice's 4 x 2048 prefill timed on
#    both (DSV3_GEMM_TIME: to_bf16 + the GEMM).
# 3. Prefill 4 x 2048 and 1 x 2048, and a training step 1 x 4096 and
#    4 x 4096 (bench-artifacts/v3-train), with cuBLASLt (default) and
#    without (DSV3_CUBLAS=0); a profile of the prefill with it.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-cublas
status=0
A=bench-artifacts/v3-infer
# Where the toolkit's cuBLASLt is (the runtime also looks in the folder
# CMake found the toolkit in); DSV3_CUBLAS=1 below makes a missing one fail.
ls -d /usr/local/cuda*/lib64/libcublasLt.so* /usr/lib/x86_64-linux-gnu/libcublasLt.so* \
  $(python3 -c "import nvidia.cublas, os; print(os.path.dirname(nvidia.cublas.__file__))" 2>/dev/null)/lib/libcublasLt.so* 2>/dev/null | head -5
export DSV3_CUBLAS=${DSV3_CUBLAS:-1}
echo "== bf16-check (against float64)"
for shape in 300,576,512 512,7168,2048 1024,1536,7168; do
  timeout 120 $RUN bf16-check $A --seq 16 --shape $shape > "$OUT/check-$shape.log" 2>&1 || status=1
  grep -E "gemm_bf16|cublasLt|FAIL|rror" "$OUT/check-$shape.log" | sed "s/^ */$shape /"
done
echo "== GEMM shapes of prefill 4x2048 (M,N,K)"
for t in 8192,1536,7168 8192,24576,1536 8192,576,7168 8192,32768,512 8192,7168,16384 \
         8192,7168,18432 8192,7168,2048 16384,7168,16384; do
  DSV3_GEMM_TIME=$t timeout 120 $RUN bf16-check $A --seq 16 --shape 300,576,512 2>&1 |
    grep "timing" | grep -v linear_mma
done
echo "== whole rows"
T="$RUN time $A --random-weights 1 --backend cuda"
for env in DSV3_CUBLAS=1 DSV3_CUBLAS=0; do
  for shape in "--batch 4 --seq 2048 --steps 2" "--batch 1 --seq 2048 --steps 2"; do
    r=$(env $env timeout 120 $T $shape 2>&1 | tail -1 | grep -o "prompt.*prefill [0-9.]* ms")
    printf '%-14s %s\n' "${env}" "$r"
  done
  if [ -d bench-artifacts/v3-train ]; then
    for b in 1 4; do
      r=$(env $env timeout 150 $RUN time bench-artifacts/v3-train --random-weights 1 --backend cuda \
        --train --compute bf16 --batch $b --seq 4096 --steps 2 2>&1 | tail -1 | cut -c1-200)
      printf '%-14s train %sx4096: %s\n' "${env}" "$b" "$r"
    done
  fi
done
DSV3_PROFILE=1 timeout 120 $T --batch 4 --seq 2048 --steps 1 > "$OUT/profile-prefill.log" 2>&1
sed -n 1,14p "$OUT/profile-prefill.log"
exit $status
