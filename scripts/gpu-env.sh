# Sourced by every device script, from the repository root, with the
# script's default log folder: sets $OUT (unless the caller did) and
# creates it, keeps NCCL off NVLink multicast (the device machines need it
# off), builds the runtime into build-gpu/ (incremental: a warm machine may
# hold a build of older sources; or installs a carried gpu-bin/dsv3-run,
# scripts/gpu-build.sh) and sets $RUN.
#   source scripts/gpu-env.sh /tmp/gpu-check
OUT=${OUT:-$1}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0
# NVRTC and the CUDA libraries for a dsv3-run built on another machine
# (scripts/gpu-prebuild.sh: its run path names that machine's layout).
[ -d /usr/local/cuda/lib64 ] && export LD_LIBRARY_PATH=/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
bash scripts/gpu-build.sh "$OUT/build.log" || exit 1
RUN=build-gpu/bin/dsv3-run
# check NAME COMMAND...: runs a conformance command (its log in
# $OUT/NAME.log), adds its last line to $OUT/checks.txt and sets status=1
# unless that line says "N passed, 0 failed".
check() {
  local name=$1; shift
  local r
  r=$("$@" 2>&1 | tee "$OUT/${name// /_}.log" | tail -1)
  printf '%-44s %s\n' "$name" "$r" | tee -a "$OUT/checks.txt"
  case "$r" in *" passed, 0 failed"*) ;; *) status=1 ;; esac
}
# finish [FILE...]: the summary every device script prints last (the date,
# the GPU, $OUT/checks.txt, then each FILE of $OUT), and its exit status.
finish() {
  echo
  echo "== $(date -u +%F) $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
  local f
  for f in checks.txt "$@"; do cat "$OUT/$f"; done
  exit $status
}
# forward_ab TAG ARGS...: `dsv3-run forward` of artifacts $A and $B (each
# side's RUN_A / RUN_B and ENV_A / ENV_B) with ARGS, the logits into
# /dev/shm/TAG-A.safetensors and -B; cuBLASLt's first-pick algorithms, so
# that both sides choose alike. A failed run sets status=1 and shows its
# log's tail ($OUT/TAG-forward-A.log, -B).
forward_ab() {
  local tag=$1 v env_ run_
  shift
  for v in A B; do
    env_=ENV_$v run_=RUN_$v
    env ${!env_:-X=0} DSV3_CUBLAS_TUNE=0 timeout 180 ${!run_} forward "${!v}" "$@" \
      --out /dev/shm/$tag-$v.safetensors > "$OUT/$tag-forward-$v.log" 2>&1 ||
      { status=1; tail -3 "$OUT/$tag-forward-$v.log"; }
  done
}
