# Sourced by the adapters' launch scripts (not run on its own). After
#     . "$(dirname "$0")/../_launch.sh"
#     nda_prepare SERIES "$@"; shift
# the checkout given as the first argument is patched with SERIES (idempotent: an applied series
# is left as is) and these are set: UPSTREAM (the folder given), ROOT (the checkout's root for the
# series, e.g. DiffAugment's subfolder) and PYTHON (the interpreter: $PYTHON, default python).
# A missing or non-folder first argument prints the usage line and exits 2.
nda_prepare() {
    nda_series=$1
    shift
    if [ $# -lt 1 ] || [ ! -d "$1" ]; then
        echo "usage: $0 UPSTREAM_DIR ${NDA_USAGE:-[train.py options]}" >&2
        exit 2
    fi
    UPSTREAM=$1
    PYTHON=${PYTHON:-python}
    "$PYTHON" -c 'import sys; from nda_plugins.cli import main; sys.argv[0] = "nda"; main()' \
        patch apply "$nda_series" "$UPSTREAM"
    ROOT=$("$PYTHON" -c 'import sys; from nda_plugins import _patching; print(_patching.status(sys.argv[1], sys.argv[2])["root"])' \
        "$UPSTREAM" "$nda_series")
}
