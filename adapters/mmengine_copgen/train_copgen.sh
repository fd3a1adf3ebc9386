#!/usr/bin/env bash
# COP-Gen end to end on mmengine (CPU or one GPU), offline:
#   navigator minimax -> offline (anchor, positive) pairs -> contrastive runs with generated vs
#   augmentation positives at equal budget -> linear probe (results.json, table.txt).
# Usage: train_copgen.sh WORK_DIR [extra flags of `launch all`, e.g. --quick or --generator pkg.mod:make_G]
set -euo pipefail
WORK_DIR=${1:-./nda-runs/copgen}
shift || true
exec python -m nda_plugins.adapters.mmengine_copgen.launch all --work-dir "$WORK_DIR" "$@"
