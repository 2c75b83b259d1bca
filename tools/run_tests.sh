#!/usr/bin/env bash
# The test suite: creates/reuses .venv (tools/setup_env.sh), then runs pytest. Extra args go to pytest.
# MMREVCOL_SLOW=1 also runs the tests marked slow (full-size RevCol-L/XL builds, longer trainings).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tools/setup_env.sh
marker=(-m "not slow")
[[ "${MMREVCOL_SLOW:-0}" == 1 ]] && marker=()
exec .venv/bin/python -m pytest "${marker[@]}" "$@"
