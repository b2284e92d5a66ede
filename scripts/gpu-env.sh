# Sourced by every device script, from the repository root, with the
# script's default log folder: sets $OUT (unless the caller did) and
# creates it, keeps NCCL off NVLink multicast (the device machines need it
# off), builds the runtime into build-gpu/ (incremental: a warm machine may
# hold a build of older sources) and sets $RUN.
#   source scripts/gpu-env.sh /tmp/gpu-check
OUT=${OUT:-$1}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0
bash scripts/gpu-build.sh "$OUT/build.log" || exit 1
RUN=build-gpu/bin/dsv3-run
