#!/usr/bin/env bash
# Regenerate the gRPC stubs from proto/ into vidcap/v1/ (the proto package vidcap.v1 is the Python package).
# tests/test_grpc.py regenerates them into a temporary folder and fails if the committed ones differ.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.}"
python=${PYTHON:-.venv/bin/python}
"$python" -m grpc_tools.protoc -I proto --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" proto/vidcap/v1/vidcap.proto
touch "$out/vidcap/v1/__init__.py"
