#!/usr/bin/env bash
# The GPU path, checked on a machine with an NVIDIA GPU, from a fresh checkout, in under 8 minutes:
#   bench/gpu_check.sh [OUT]      # OUT: a folder for the figures (default: bench/.cache/gpu-check)
# 1. sets up .venv with the GPU extras (Torch-TensorRT, DALI) next to the pinned torch pair, unless done already;
# 2. runs tests/test_gpu.py (DALI samples PyAV's frames at 25 / 29.97 fps and across batch ends, on the
#    captioner's GPU; TensorRT at every batch size of its profile; the whole path on the GPU);
# 3. prints bench/throughput.py's GPU table: eager vs TensorRT FP16 encoder images/s, DALI + TensorRT sampled
#    frames/s in-process (realistic ResNet-152 and demo models), and the whole `vidcap analyze` process.
# Each step has its own time limit, so one that hangs cannot take the others' time.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench/.cache/gpu-check}"
mkdir -p "$out"
status=0
step() { echo; echo "== $1 ($(date +%T))"; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || { echo "no NVIDIA GPU here"; exit 2; }

step "setup"
if ! .venv/bin/python -c "import torch_tensorrt, nvidia.dali" 2>/dev/null; then
  timeout 180 scripts/setup.sh dev,bench,gpu || { echo "setup failed"; exit 2; }
fi
.venv/bin/python -c "import torch; assert torch.cuda.is_available(), 'torch sees no GPU'; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name())" || exit 2

step "tests/test_gpu.py"
timeout 120 .venv/bin/python -m pytest -q -rs tests/test_gpu.py tests/test_encoders.py -k "gpu or tensorrt or dali" \
  --junitxml="$out/test_gpu.xml" || status=1

step "bench/throughput.py --gpu-table"
timeout 180 .venv/bin/python bench/throughput.py --gpu-table --seconds 60 --repeats 2 --json "$out/throughput-gpu.json" \
  | tee "$out/throughput-gpu.txt" || status=1
echo
echo "figures in $out; exit $status"
exit $status
