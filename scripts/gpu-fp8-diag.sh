set -uo pipefail
OUT=${OUT:-/tmp/d}; mkdir -p $OUT
[ -x build-gpu/bin/dsv3-run ] || bash scripts/gpu-build.sh "$OUT/build.log" || exit 1
RUN=build-gpu/bin/dsv3-run
IDS=1,5,9,200,31,77,4,300/8,2,100,6,71,250,29,11
$RUN compare gpu-artifacts/tiny-a-fp8-bf16 --weights test/data/fixtures/tiny-a --ids $IDS > $OUT/c-a-bf16.log 2>&1
$RUN init gpu-artifacts/tiny-wide-fp8 --seed 3 --out /dev/shm/tw > /dev/null 2>&1
$RUN compare gpu-artifacts/tiny-wide-fp8 --weights /dev/shm/tw --ids $IDS > $OUT/c-w.log 2>&1
$RUN compare gpu-artifacts/tiny-wide-fp8 --weights /dev/shm/tw --ids 1,5,9,200,31 > $OUT/c-w-few.log 2>&1
$RUN compare gpu-artifacts/tiny-wide-fp8-bf16 --weights /dev/shm/tw --ids 1,5,9,200,31 > $OUT/c-wb-few.log 2>&1
for f in c-a-bf16 c-w c-w-few c-wb-few; do echo "== $f"; grep -E "^  (forward|loss|decode)" $OUT/$f.log | grep -v "forward:\|decode:" ; grep -E "forward: (latent|linear|gated|norm|expert)" $OUT/$f.log; grep -o "first divergence in [a-z]*: launch [0-9]* ([a-z_]*)" $OUT/$f.log; done
echo "== timing"
t() { local art=$1 name=$2; shift 2; $RUN time bench-artifacts/$art --random-weights 1 --backend cuda "$@" > "$OUT/time-$art-$name.log" 2>&1; printf '%-13s %-15s %s\n' "$art" "$name" "$(tail -1 "$OUT/time-$art-$name.log")"; }
for art in v3-infer-fp8 v3-infer; do
  t $art decode-b1 --batch 1 --context 1024 --steps 16
  t $art decode-b32 --batch 32 --context 1024 --steps 8
  t $art prefill-4x2048 --batch 4 --seq 2048 --steps 1
done
DSV3_PROFILE=1 $RUN time bench-artifacts/v3-infer-fp8 --random-weights 1 --backend cuda --batch 4 --seq 2048 --steps 1 > "$OUT/profile-fp8-prefill.log" 2>&1
echo "-- profile fp8 prefill 4x2048"; sed -n 2,12p "$OUT/profile-fp8-prefill.log"
