#!/usr/bin/env sh
# Train pix2pix (junyanz/pytorch-CycleGAN-and-pix2pix) with negative data augmentation on facades
# (a dataset of the NDA paper's Table 4): patch the checkout (idempotent), then run upstream's train.py with
# --model pix2pix_nda and upstream's facades recipe (--direction BtoA, U-Net 256, vanilla GAN loss,
# lambda_L1 100, 100 + 100 epochs).
#
#   sh train_nda.sh UPSTREAM_DIR DATAROOT [train.py options]     # e.g. DATAROOT=./datasets/facades
#
# Without --nda the script adds --nda jigsaw --nda_weight 0.75 (w = 1 - lambda with lambda = 0.25,
# the paper's best CIFAR-10 setting; Table 4's own settings are not encoded here).
# Multi-GPU: TORCHRUN="torchrun --nproc_per_node=4" sh train_nda.sh ...
# PYTHON selects the interpreter (default: python).
set -eu
if [ $# -lt 2 ] || [ ! -d "$2" ]; then
    echo "usage: $0 UPSTREAM_DIR DATAROOT [train.py options]" >&2
    exit 2
fi
DATAROOT=$(cd "$2" && pwd)
. "$(dirname "$0")/../_launch.sh"
NDA_USAGE="DATAROOT [train.py options]" nda_prepare pix2pix "$@"
shift 2
case " $* " in
    *" --nda "*|*" --nda="*) ;;
    *) set -- --nda jigsaw --nda_weight 0.75 "$@" ;;
esac
cd "$UPSTREAM"
exec ${TORCHRUN:-"$PYTHON"} train.py --dataroot "$DATAROOT" --name facades_pix2pix_nda --model pix2pix_nda \
    --direction BtoA "$@"
