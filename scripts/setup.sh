#!/usr/bin/env bash
# Set up vidcap in ./.venv: the pinned torch pair first (from this machine's disk where it lies there), then
# vidcap itself in editable mode with the extras named as arguments (default: dev).
#   scripts/setup.sh            # runtime + test tools
#   scripts/setup.sh dev,ui     # more extras
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
# torch 2.14.1 + torchvision 0.29.1 are the pair this project is tested with; pinning them here keeps pip from
# resolving a different (multi-GB) build through a dependency's looser range.
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  pip install torch==2.14.1 torchvision==0.29.1
fi
pip install -e ".[${extras}]"
if ! command -v java >/dev/null 2>&1; then
  echo "note: java not found: METEOR (and later TorchServe) need a Java runtime (apt-get install default-jre-headless)" >&2
fi
