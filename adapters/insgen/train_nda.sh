#!/usr/bin/env sh
# Train InsGen (genforce/insgen) with negative data augmentation, from one command:
# patch the checkout (idempotent: an applied series is left as is), then run its train.py.
#
#   sh train_nda.sh UPSTREAM_DIR --outdir=runs --data=data.zip --gpus=1 [--nda=jigsaw] [--nda-weight=0.75] [--anda ...]
#
# Without --nda the script adds --nda=jigsaw --nda-weight=0.75 (the NDA paper's best CIFAR-10
# setting, lambda = 0.25). PYTHON selects the interpreter (default: python).
set -eu
if [ $# -lt 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 UPSTREAM_DIR [train.py options]" >&2
    exit 2
fi
UPSTREAM=$1
shift
PYTHON=${PYTHON:-python}
"$PYTHON" -c 'import sys; from nda_plugins.cli import main; sys.argv[0] = "nda"; main()' patch apply insgen "$UPSTREAM"
ROOT=$("$PYTHON" -c 'import sys; from nda_plugins import _patching; print(_patching.status(sys.argv[1], "insgen")["root"])' "$UPSTREAM")
case " $* " in
    *" --nda="*|*" --nda "*) ;;
    *) set -- --nda=jigsaw --nda-weight=0.75 "$@" ;;
esac
exec "$PYTHON" "$ROOT/train.py" "$@"
