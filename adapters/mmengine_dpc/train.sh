#!/usr/bin/env bash
# Usage: train.sh CONFIG NPROC [extra args]   e.g. train.sh dpc_nda_moving_shapes 2 --work-dir runs/nda
set -euo pipefail
CONFIG=${1:?config name or path}; NPROC=${2:-1}; shift 2 || shift $#
if [ "$NPROC" -gt 1 ]; then
  exec torchrun --nproc_per_node="$NPROC" -m nda_plugins.adapters.mmengine_dpc.train "$CONFIG" --launcher pytorch "$@"
fi
exec python -m nda_plugins.adapters.mmengine_dpc.train "$CONFIG" "$@"
