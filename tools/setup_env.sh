#!/usr/bin/env bash
# Create or reuse the project environment in .venv/ at the repository root.
#
# Idempotent: a stamp file records the hash of this script and requirements.txt; when it matches, the
# environment is reused in about a second. mmcv 2.1.0 has no wheels on PyPI, so it is compiled from its sdist
# (≈12 min on 2 cores) and the wheel is cached OUTSIDE the repo, keyed by Python, torch (incl. CUDA tag) and the
# CUDA architectures it was built for: an mmcv extension built against another torch is ABI-incompatible.
#
# Environment variables:
#   MMREVCOL_CACHE   wheel cache folder (default: ${XDG_CACHE_HOME:-~/.cache}/mmrevcol)
#   PYTHON           interpreter used to create the venv (default: python3.11, else python3)
#   MAX_JOBS         parallel compile jobs for mmcv (default: number of cores)
#   FORCE_CUDA, TORCH_CUDA_ARCH_LIST   build mmcv's CUDA ops (automatic when a GPU is visible)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
CACHE="${MMREVCOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmrevcol}"
STAMP="$VENV/.mmrevcol-env"
MMCV_VERSION=2.1.0
# torch 2.14.1 + torchvision 0.29.1: the newest pair pip serves here with a torchvision that imports (mmpretrain
# needs torchvision.ops); torch 2.14 headers need C++20, hence the patched mmcv build below.
TORCH_SPEC="torch==2.14.1 torchvision==0.29.1"

log() { printf '[setup_env] %s\n' "$*" >&2; }

want_hash=$(cat "$ROOT/tools/setup_env.sh" "$ROOT/requirements.txt" "$ROOT/setup.py" | sha256sum | cut -c1-16)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want_hash" ]]; then
  exit 0
fi

start=$(date +%s)
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
pip_i() { "$VPY" -m pip install --disable-pip-version-check -q "$@"; }

# setuptools<81: mmcv's setup.py and mmengine's `mmdet::` base-config lookup import pkg_resources.
"$VPY" -c "import torch, torchvision" 2>/dev/null || { log "installing $TORCH_SPEC"; pip_i $TORCH_SPEC; }
# After torch (which pulls a newer setuptools): torch accepts >=77.0.3, pkg_resources is gone from 81.
pip_i "setuptools>=77.0.3,<81" wheel ninja

# ---- mmcv with compiled ops, from the wheel cache when it matches this torch -------------------------------
if ! "$VPY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" 2>/dev/null; then
  build_cuda=0
  if [[ "${FORCE_CUDA:-0}" == 1 ]] || "$VPY" -c "import torch,sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    build_cuda=1
    export FORCE_CUDA=1
    : "${TORCH_CUDA_ARCH_LIST:=$("$VPY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")}"
    export TORCH_CUDA_ARCH_LIST
  fi
  key=$("$VPY" -c "import sys, torch; print(f'py{sys.version_info[0]}{sys.version_info[1]}-torch{torch.__version__}')")
  if [[ $build_cuda == 1 ]]; then key="$key-cuda${TORCH_CUDA_ARCH_LIST// /_}"; else key="$key-cpuops"; fi
  wheel_dir="$CACHE/mmcv-$MMCV_VERSION/$key"
  if ! ls "$wheel_dir"/mmcv-*.whl >/dev/null 2>&1; then
    log "building mmcv $MMCV_VERSION with ops for $key (about 12 min on 2 cores); cache: $wheel_dir"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$VPY" -m pip download --disable-pip-version-check -q --no-deps --no-build-isolation --no-binary=:all: \
      "mmcv==$MMCV_VERSION" -d "$work"
    tar -xzf "$work"/mmcv-$MMCV_VERSION.tar.gz -C "$work"
    # torch >= 2.14 headers require C++20; mmcv 2.1.0 hard-codes C++14/17 (fix proposed upstream, mmcv PR #3340).
    sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g; s#/std:c\+\+1[47]#/std:c++20#g' "$work/mmcv-$MMCV_VERSION/setup.py"
    mkdir -p "$wheel_dir"
    (cd "$work/mmcv-$MMCV_VERSION" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
      "$VPY" -m pip wheel --disable-pip-version-check -q --no-deps --no-build-isolation --no-cache-dir \
      -w "$wheel_dir.tmp" .)
    mv "$wheel_dir.tmp"/mmcv-*.whl "$wheel_dir"/ && rmdir "$wheel_dir.tmp"
  else
    log "reusing cached mmcv wheel from $wheel_dir"
  fi
  pip_i --no-deps --force-reinstall "$wheel_dir"/mmcv-*.whl
fi

# ---- the rest of the stack (pinned in requirements.txt) and this package ---------------------------------
pip_i -r "$ROOT/requirements.txt"
pip_i --no-deps --no-build-isolation -e "$ROOT"
"$VPY" -c "import mmcv.ops, mmdet, mmseg, mmpretrain, mmrevcol; from mmcv.ops import RoIAlign, nms, MultiScaleDeformableAttention" \
  || { log "the environment does not import; see the errors above"; exit 1; }
echo "$want_hash" >"$STAMP"
log "environment ready in $(( $(date +%s) - start )) s"
