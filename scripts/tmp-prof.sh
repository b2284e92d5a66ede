set -uo pipefail
[ -x build-gpu/bin/dsv3-run ] || bash scripts/gpu-build.sh /tmp/build.log >/dev/null 2>&1 || { tail -20 /tmp/build.log; exit 1; }
RUN=build-gpu/bin/dsv3-run
IDS=1,5,9,200,31,77,4,300/8,2,100,6,71,250,29,11
for f in tiny-a tiny-a-bf16; do
  printf '%-12s compare %s\n' $f "$(timeout 120 $RUN compare gpu-artifacts/$f --weights test/data/fixtures/tiny-a --ids $IDS 2>&1 | tail -1)"
done
for f in tiny-a tiny-a-bf16 tiny-a-fp8; do
  echo "-- verify $f"
  timeout 120 $RUN verify gpu-artifacts/$f --weights test/data/fixtures/tiny-a --oracle test/data/fixtures/tiny-a --backend cuda 2>&1 | grep -E "FAIL|fast kernels|passed" | cut -c1-400
done
for a in v3-infer v3-infer-fp8; do
  for b in 1 32 128; do
    timeout 60 $RUN time bench-artifacts/$a --random-weights 1 --backend cuda --batch $b --context 1024 --steps 16 2>&1 | tail -1 | grep -o "batch.*decode [0-9.]* ms" | sed "s/^/$a /"
  done
done
DSV3_PROFILE=1 timeout 60 $RUN time bench-artifacts/v3-infer --random-weights 1 --backend cuda --batch 32 --context 1024 --steps 4 2>&1 | sed -n 1,8p | cut -c1-100
