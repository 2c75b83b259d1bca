#!/usr/bin/env bash
# The embedded demo: set up .venv (tools/setup_env.sh), then train + evaluate a small RevCol Cascade Mask R-CNN and
# UPerNet on generated shapes (tools/demo.py; extra args go there, e.g. --only seg --iters 100). The summary prints
# the README's range beside each metric; the demo always uses 2 threads (--threads), since the metrics depend on it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tools/setup_env.sh
exec .venv/bin/python tools/demo.py "$@"
