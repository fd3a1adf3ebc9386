#!/usr/bin/env bash
# One call that checks nda-plugins on a CUDA machine and writes everything it measured to one folder.
#
#   benchmarks/gpu_check.sh [OUTDIR]        # OUTDIR defaults to $OUT, else ./gpu_check_out
#
# Needs only what such a machine has without network: torch (with CUDA), pytest, ninja, pillow,
# scipy (numpy), psutil, click, pluggy. This repository's code is imported from a temporary folder
# that maps it as the installed package does (nothing is pip-installed or downloaded).
#
# Stages, each with its own time limit, all within NDA_GPU_CHECK_BUDGET_S seconds (default 460):
#   a. tests/test_cuda.py (devices, dtypes, channels-last, no host sync in the hot path, compile()
#      with Triton)                                             -> test_cuda.log, test_cuda.xml
#   b. benchmarks/bench_transforms.py (with --compiled) and bench_step.py on CUDA
#                                                               -> bench_transforms.txt/.json,
#      (ratios in one run; a copy is a device-to-device copy)      bench_step.txt/.json
#   c. only if NDA_UPSTREAM_STYLEGAN2_ADA names a stylegan2-ada-pytorch checkout: on a private
#      copy of it, `nda patch apply stylegan2-ada`, `nda patch build-ops` (bias_act, upfirdn2d; built
#      in a private TORCH_EXTENSIONS_DIR),
#      a tiny 3-tick training without and with --nda checking that the fused ops are loaded and
#      called (benchmarks/gpu_check_sg2_tick.py), `nda patch revert` and a pristine check; then
#      bench_step's stylegan2_ada rows on upstream's own networks -> sg2_*.log/.json,
#                                                                    bench_step_sg2_upstream.*
#   e. only if lightly and torchvision import (or NDA_GPU_CHECK_WHEELS names a folder of wheels
#      for them, installed with pip --no-index --no-deps into a private folder before stage a):
#      the lightly MoCo adapter's device tests (training steps, exact resume, the CLI) on this
#      device                                                   -> test_lightly_moco.log
#   d. summary.txt (also printed), env.txt.
#
# NDA_GPU_CHECK_STAGES=b (a comma-separated list of a, b, c, e; default all) runs only those stages.
# Without CUDA it says so, writes summary.txt and exits 0. NDA_GPU_CHECK_DRY_RUN=1 runs every
# stage on the CPU instead, with tiny repeats (to test this script where there is no GPU); stage a
# then runs tests/test_cuda.py's checks on the CPU.
# Exit status: 0 when every stage that ran passed (or there is no CUDA), 1 otherwise, 2 for a bad
# NDA_GPU_CHECK_STAGES.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd -P)
OUTDIR=${1:-${OUT:-$REPO/gpu_check_out}}
PY=${PYTHON:-python3}
BUDGET=${NDA_GPU_CHECK_BUDGET_S:-460}
DRY=${NDA_GPU_CHECK_DRY_RUN:-0}
STAGES=${NDA_GPU_CHECK_STAGES:-a,b,c,e}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
SUMMARY=$OUTDIR/summary.txt
: > "$SUMMARY"
FAILED=0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nda-gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

note() { echo "$*" | tee -a "$SUMMARY"; }

# -- this repository as the package `nda_plugins` (adapters/ and patches/ inside it, as installed) --
mkdir -p "$WORK/site/nda_plugins"
for entry in "$REPO"/nda_plugins/*; do ln -s "$entry" "$WORK/site/nda_plugins/"; done
ln -s "$REPO/adapters" "$WORK/site/nda_plugins/adapters"
ln -s "$REPO/patches" "$WORK/site/nda_plugins/patches"
export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
# Python >= 3.11: the working directory (this repository) is not put first on sys.path, where its
# nda_plugins/ (without adapters/ and patches/ inside) would shadow the mapped package above.
export PYTHONSAFEPATH=1
export PYTHONUNBUFFERED=1
mkdir -p "$WORK/bin"  # an `nda` command for this repository's code (`timeout` needs a real command)
printf '#!/bin/sh\nexec "%s" -c "import sys; sys.argv[0] = \\"nda\\"; from nda_plugins.cli import main; main()" "$@"\n' \
  "$PY" > "$WORK/bin/nda"
chmod +x "$WORK/bin/nda"
export PATH="$WORK/bin:$PATH"

# -- what machine is this -------------------------------------------------------------------------
"$PY" - > "$OUTDIR/env.txt" 2>&1 <<'EOF'
import os, platform, torch, nda_plugins, nda_plugins.adapters.stylegan2_ada as adapter
print("python", platform.python_version(), "| torch", torch.__version__, "| CUDA build", torch.version.cuda)
print("nda_plugins from", os.path.dirname(os.path.realpath(nda_plugins.__file__)))
print("nda_plugins.adapters from", os.path.dirname(os.path.dirname(os.path.realpath(adapter.__file__))))
print("cuda available", torch.cuda.is_available())
for i in range(torch.cuda.device_count()):
    print(f"cuda:{i}", torch.cuda.get_device_name(i), torch.cuda.get_device_capability(i))
try:
    import triton
    print("triton", triton.__version__)
except ImportError:
    print("triton missing")
EOF
command -v nvidia-smi > /dev/null && nvidia-smi -L >> "$OUTDIR/env.txt" 2>&1
note "gpu_check: $(head -1 "$OUTDIR/env.txt")"
if ! grep -qx "nda_plugins from $REPO/nda_plugins" "$OUTDIR/env.txt" \
   || ! grep -qx "nda_plugins.adapters from $REPO/adapters" "$OUTDIR/env.txt"; then
  note "FAILED: could not import nda_plugins from this repository (see env.txt; Python >= 3.11 is needed"
  note "        where nda-plugins is not installed, for PYTHONSAFEPATH)"
  exit 1
fi

for s in ${STAGES//,/ }; do
  case $s in a|b|c|e) ;; *)
    note "NDA_GPU_CHECK_STAGES must be a comma-separated list of the stages a, b, c, e (default: all); got '$STAGES'"
    exit 2;;
  esac
done
want() { case ",$STAGES," in *",$1,"*) return 0;; esac; note "[$1] not selected (NDA_GPU_CHECK_STAGES=$STAGES)"; return 1; }

CUDA=$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)
if [ "$CUDA" != 1 ] && [ "$DRY" != 1 ]; then
  note "CUDA is not available here (torch.cuda.is_available() is False): nothing to check."
  note "Run this on a CUDA machine, or set NDA_GPU_CHECK_DRY_RUN=1 to run every stage on the CPU."
  echo "wrote $OUTDIR"
  exit 0
fi
DEV=cuda; REPEATS=(); STEP_ARGS=(); STEP_CASES=()
if [ "$CUDA" != 1 ]; then
  DEV=cpu; REPEATS=(--repeats 2); STEP_ARGS=(--repeats 2 --warmup 1); STEP_CASES=(--cases pix2pix,stylegan2_ada)
  note "DRY RUN on the CPU (NDA_GPU_CHECK_DRY_RUN=1): checks the plumbing, not CUDA"
fi
note "device $DEV, budget ${BUDGET}s"

# stage NAME CAP LOGFILE CMD...: run CMD (cwd: the repo) with a limit of min(CAP, time left).
stage() {
  local name=$1 cap=$2 log=$3; shift 3
  local left=$((BUDGET - SECONDS - 5))
  local limit=$((cap < left ? cap : left))
  if [ "$limit" -lt 15 ]; then
    note "[$name] skipped: no time left in the ${BUDGET}s budget"
    FAILED=1
    return 1
  fi
  local start=$SECONDS
  timeout --kill-after=10 "$limit" "$@" > "$log" 2>&1
  local rc=$?
  local took=$((SECONDS - start))
  if [ $rc -eq 0 ]; then
    note "[$name] ok (${took}s): $(grep -v '^\s*$' "$log" | tail -1 | cut -c1-160)"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    note "[$name] TIMED OUT after ${limit}s (see $(basename "$log"))"; FAILED=1
  else
    note "[$name] FAILED rc=$rc (${took}s): $(grep -v '^\s*$' "$log" | tail -1 | cut -c1-160)"; FAILED=1
  fi
  return $rc
}

cd "$REPO" || exit 1

# -- wheels (a bare GPU machine may lack lightly, mmengine and what they import) ------------------
WHEELS=${NDA_GPU_CHECK_WHEELS:-}
if [ -n "$WHEELS" ]; then
  if stage "wheels from $WHEELS" 60 "$OUTDIR/wheels.log" \
       "$PY" -m pip install -q --no-index --no-deps --target "$WORK/extra" "$WHEELS"/*.whl; then
    export PYTHONPATH="$PYTHONPATH:$WORK/extra"
  fi
fi

# -- a. the suite's CUDA tests --------------------------------------------------------------------
# (the dry run runs them on the CPU: NDA_TEST_DEVICE=cpu, see the test file's docstring)
want a && stage "a. tests/test_cuda.py" 170 "$OUTDIR/test_cuda.log" \
  env NDA_TEST_DEVICE="$DEV" "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py --junitxml="$OUTDIR/test_cuda.xml"

# -- b. the benchmarks ----------------------------------------------------------------------------
# On CUDA also the compiled column (Triton; a few seconds of compiling per transform and shape):
# eager, a call is 3 to 14 small ops (benchmarks/count_ops.py), bound by launch latency on a GPU.
if want b; then
  COMPILED=(); BT_CAP=90
  [ "$DEV" = cuda ] && { COMPILED=(--compiled); BT_CAP=200; }
  stage "b. bench_transforms" "$BT_CAP" "$OUTDIR/bench_transforms.txt" \
    "$PY" benchmarks/bench_transforms.py --device "$DEV" "${REPEATS[@]}" "${COMPILED[@]}" --markdown --out "$OUTDIR/bench_transforms.json"
  # bench_step's stylegan2_ada rows without upstream here (its networks come in stage c); its
  # biggan and pix2pix rows on upstream's networks where NDA_UPSTREAM_BIGGAN / _PIX2PIX are set.
  stage "b. bench_step" 150 "$OUTDIR/bench_step.txt" \
    env -u NDA_UPSTREAM_STYLEGAN2_ADA "$PY" benchmarks/bench_step.py --device "$DEV" "${STEP_ARGS[@]}" \
    "${STEP_CASES[@]}" --out "$OUTDIR/bench_step.json"

  # Where the extra time of the stand-in's NDA step goes on this device (torch.profiler; the script
  # imports bench_step from its own folder, so sys.path[0] must be benchmarks/: no PYTHONSAFEPATH).
  if [ "$DEV" = cuda ]; then
    stage "b. profile_step stylegan2_ada replace" 60 "$OUTDIR/profile_step_sg2_replace.txt" \
      env -u NDA_UPSTREAM_STYLEGAN2_ADA -u PYTHONSAFEPATH "$PY" benchmarks/profile_step.py stylegan2_ada replace \
      --device cuda --steps 20 --rows 25 --attribute
  fi
fi  # want b

# -- c. StyleGAN2-ADA with our patch series and the fused ops -------------------------------------
SRC=${NDA_UPSTREAM_STYLEGAN2_ADA:-}
if ! want c; then
  :
elif [ -z "$SRC" ]; then
  note "[c. stylegan2-ada] skipped: NDA_UPSTREAM_STYLEGAN2_ADA is not set (a stylegan2-ada-pytorch checkout)"
elif [ ! -f "$SRC/training/loss.py" ]; then
  note "[c. stylegan2-ada] FAILED: NDA_UPSTREAM_STYLEGAN2_ADA=$SRC has no training/loss.py"; FAILED=1
else
  CO=$WORK/stylegan2-ada-pytorch  # a private copy: the caller's checkout is never modified
  if git -C "$SRC" rev-parse --git-dir > /dev/null 2>&1; then
    git clone -q "$SRC" "$CO"
  else
    cp -a "$SRC" "$CO"
  fi
  if ! "$PY" -c 'import requests' 2> /dev/null; then
    # upstream's dnnlib imports requests only to download URLs, which nothing here does
    mkdir -p "$WORK/stub/requests"
    echo '"""Stand-in for requests (gpu_check.sh): dnnlib.util imports it; nothing here downloads."""' \
      > "$WORK/stub/requests/__init__.py"
    export PYTHONPATH="$PYTHONPATH:$WORK/stub"
    note "[c. stylegan2-ada] requests is missing: a stand-in module lets upstream's dnnlib import"
  fi
  # A private build folder for the fused ops: the caller's ~/.cache/torch_extensions stays as it
  # was, and a lock file left there by another run (older PyTorch waits for as long as one exists;
  # newer PyTorch leaves an empty one behind after every build) cannot stall this one.
  export TORCH_EXTENSIONS_DIR=$WORK/torch_extensions
  if stage "c. nda patch apply" 30 "$OUTDIR/sg2_apply.log" nda patch apply stylegan2-ada "$CO"; then
    stage "c. nda patch build-ops" 200 "$OUTDIR/sg2_build_ops.log" nda patch build-ops "$CO"
    for mode in plain nda; do
      # nothing builds between stages: a lock left by a build that timed out or failed is stale
      find "$TORCH_EXTENSIONS_DIR" -name lock -type f -delete 2> /dev/null
      flag=(); [ $mode = nda ] && flag=(--nda)
      [ "$DEV" = cpu ] && flag+=(--dry-run)
      (cd "$CO" && stage "c. fused-op tick ($mode)" 120 "$OUTDIR/sg2_tick_$mode.log" \
        "$PY" "$REPO/benchmarks/gpu_check_sg2_tick.py" "$WORK/tick_$mode" "${flag[@]}")
      [ $? -ne 0 ] && FAILED=1
      tail -1 "$OUTDIR/sg2_tick_$mode.log" > "$OUTDIR/sg2_tick_$mode.json"
      cp "$WORK/tick_$mode"/train_*.log "$OUTDIR/" 2> /dev/null
    done
    # upstream's networks while the series is applied (its compatibility fixes are needed to import)
    stage "c. bench_step on upstream's networks" 90 "$OUTDIR/bench_step_sg2_upstream.txt" \
      env NDA_UPSTREAM_STYLEGAN2_ADA="$CO" "$PY" benchmarks/bench_step.py --device "$DEV" --cases stylegan2_ada \
      "${STEP_ARGS[@]}" --out "$OUTDIR/bench_step_sg2_upstream.json"
    stage "c. nda patch revert" 30 "$OUTDIR/sg2_revert.log" nda patch revert stylegan2-ada "$CO"
    nda patch status "$CO" > "$OUTDIR/sg2_status.log" 2>&1
    dirty=$(git -C "$CO" status --porcelain --untracked-files=no 2> /dev/null)
    if grep -qi "pristine" "$OUTDIR/sg2_status.log" && [ -z "$dirty" ]; then
      note "[c. pristine after revert] ok: $(tail -1 "$OUTDIR/sg2_status.log")"
    else
      note "[c. pristine after revert] FAILED: $(tail -1 "$OUTDIR/sg2_status.log") ${dirty:+(git: $dirty)}"; FAILED=1
    fi
  fi
fi

# -- e. the lightly MoCo adapter on this device ----------------------------------------------------
if ! want e; then
  :
elif "$PY" -c 'import lightly, torchvision' > /dev/null 2>&1; then
  stage "e. lightly MoCo on $DEV" 90 "$OUTDIR/test_lightly_moco.log" \
    "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_adapters_lightly_moco.py -k "$DEV"
else
  note "[e. lightly MoCo] skipped: lightly or torchvision does not import here (NDA_GPU_CHECK_WHEELS=<folder of wheels>)"
fi

# -- d. summary -----------------------------------------------------------------------------------
{
  echo
  for f in bench_transforms.txt bench_step.txt bench_step_sg2_upstream.txt; do
    [ -s "$OUTDIR/$f" ] && { echo "== $f"; grep -E '^(\||\*\*|device)' "$OUTDIR/$f"; echo; }
  done
  for f in sg2_tick_plain.json sg2_tick_nda.json; do
    [ -s "$OUTDIR/$f" ] && { echo "== $f"; cat "$OUTDIR/$f"; }
  done
} >> "$SUMMARY"
echo "---- summary ($OUTDIR/summary.txt) ----"
cat "$SUMMARY"
echo "gpu_check: $([ $FAILED = 0 ] && echo 'all stages passed' || echo 'SOME STAGES FAILED') in ${SECONDS}s; wrote $OUTDIR"
exit $FAILED
