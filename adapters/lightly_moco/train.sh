#!/usr/bin/env bash
# Usage: train.sh NPROC [train.py flags]
#   train.sh 1 --compare --nda jigsaw --steps 400 --out runs/moco    # baseline vs NDA, probes, Fig. 9
#   train.sh 2 --nda jigsaw+stitch --data DIR                        # two processes (gloo on CPU, NCCL on GPU)
set -euo pipefail
NPROC=${1:?number of processes (1 for a single process)}; shift
if ! [[ "$NPROC" =~ ^[1-9][0-9]*$ ]]; then
  echo "train.sh: NPROC must be a positive integer, got '$NPROC'" >&2; exit 2
fi
if [ "$NPROC" -gt 1 ]; then
  exec torchrun --standalone --nproc_per_node="$NPROC" -m nda_plugins.adapters.lightly_moco.train "$@"
fi
exec python -m nda_plugins.adapters.lightly_moco.train "$@"
