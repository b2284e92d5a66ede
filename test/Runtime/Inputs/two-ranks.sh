#!/usr/bin/env bash
# Starts two dsv3-run processes the way torchrun or srun would (no
# `dsv3-run launch`): MODE torchrun sets RANK / WORLD_SIZE, MODE slurm sets
# SLURM_PROCID / SLURM_NTASKS; both MASTER_ADDR / MASTER_PORT (a free port).
# Usage: two-ranks.sh MODE DSV3-RUN dsv3-run-args...
set -u
mode=$1; exe=$2; shift 2
port=$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
run() {
  if [ "$mode" = torchrun ]; then
    RANK=$1 WORLD_SIZE=2 MASTER_ADDR=$2 MASTER_PORT=$port "$exe" "${@:3}"
  else
    SLURM_PROCID=$1 SLURM_NTASKS=2 SLURM_LOCALID=$1 MASTER_ADDR=$2 MASTER_PORT=$port "$exe" "${@:3}"
  fi
}
run 1 127.0.0.1 "$@" > /dev/null & other=$!
run 0 localhost "$@"; status=$?
wait $other || status=1
exit $status
