#!/usr/bin/env sh
# Train DiffAugment-StyleGAN2 (data-efficient-gans/DiffAugment-stylegan2-pytorch) with negative data augmentation, from one command:
# patch the checkout (idempotent: an applied series is left as is), then run its train.py.
#
#   sh train_nda.sh UPSTREAM_DIR --outdir=runs --data=data.zip --gpus=1 [--nda=jigsaw] [--nda-weight=0.75] [--anda ...]
#
# Without --nda the script adds --nda=jigsaw --nda-weight=0.75 (the NDA paper's best CIFAR-10
# setting, lambda = 0.25). PYTHON selects the interpreter (default: python).
set -eu
. "$(dirname "$0")/../_launch.sh"
nda_prepare data-efficient-gans "$@"
shift
case " $* " in
    *" --nda="*|*" --nda "*) ;;
    *) set -- --nda=jigsaw --nda-weight=0.75 "$@" ;;
esac
exec "$PYTHON" "$ROOT/train.py" "$@"
