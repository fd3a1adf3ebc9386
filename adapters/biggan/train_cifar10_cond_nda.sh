#!/usr/bin/env sh
# BigGAN (ajbrock/BigGAN-PyTorch) on CIFAR-10, class-conditional, with NDA as in the NDA paper
# (Sinha et al. 2021, section 5): batch 64, 4 D steps per G step, lr 2e-4 for D and G, jigsaw
# negatives with w = 0.75 (the paper's lambda = 0.25). Patches the checkout first (idempotent).
#
#   sh train_cifar10_nda.sh UPSTREAM_DIR --data_root DATA [more train.py options, which win]
#
# Upstream's C10 dataset reads (or downloads) CIFAR-10 under DATA/cifar. PYTHON selects the
# interpreter (default: python). A negative keeps its source image's label (D is conditional).
set -eu
. "$(dirname "$0")/../_launch.sh"
nda_prepare biggan "$@"
shift
cd "$UPSTREAM"
exec "$PYTHON" train.py \
    --dataset C10 --shuffle --batch_size 64 --num_D_steps 4 --G_lr 2e-4 --D_lr 2e-4 \
    --num_G_accumulations 1 --num_D_accumulations 1 --num_epochs 500 \
    --G_attn 0 --D_attn 0 --G_init N02 --D_init N02 --G_ortho 0.0 \
    --ema --use_ema --ema_start 1000 --test_every 5000 --save_every 2000 \
    --num_best_copies 5 --num_save_copies 2 --seed 0 \
    --nda jigsaw --nda_weight 0.75 --nda_mode weighted \
    --experiment_name cifar10_cond_nda_jigsaw_w0.75 "$@"
